"""What sensor sources yield, and the packetizer that cuts event streams into fixed-period packets.

A source (live camera, file, simulator) yields lists of items on *device* time (microseconds):
:class:`EventsItem`, :class:`FrameItem`, :class:`ImuItem`, :class:`TriggerItem`. The driver nodes map device
time to ROS time (:mod:`ros2_evmicro.core.clock`) and publish. :class:`Packetizer` turns event chunks of any
size into packets that cover ``period_us`` of device time each (10 ms by default: rclpy's per-message cost
favours packets of about that size), on a grid aligned to the first event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ros2_evmicro.core.events import EVENT_DTYPE, concat_events, empty_events

__all__ = ["EventsItem", "FrameItem", "ImuItem", "Packetizer", "Source", "SourceError", "TriggerItem"]


class SourceError(RuntimeError):
    """A source cannot be opened or read (no camera, unplugged, corrupt file...)."""


@dataclass
class EventsItem:
    events: np.ndarray  # EVENT_DTYPE, device time


@dataclass
class FrameItem:
    t_us: int
    image: np.ndarray  # (H, W) mono8 or (H, W, 3) bgr8
    encoding: str = "mono8"
    exposure_us: int = 0


@dataclass
class ImuItem:
    t_us: int
    accel: np.ndarray  # (3,) m/s^2
    gyro: np.ndarray  # (3,) rad/s
    temperature_c: float = float("nan")


@dataclass
class TriggerItem:
    t_us: int
    channel: int = 0
    value: int = 1


@dataclass
class SourceInfo:
    width: int
    height: int
    serial: str = ""
    live: bool = False
    meta: dict = field(default_factory=dict)


class Source(Protocol):
    """A sensor source. ``read`` returns the next items (possibly empty), or None at the end of a file."""

    info: SourceInfo

    def read(self, timeout_s: float = 0.05) -> list | None: ...

    def close(self) -> None: ...


class Packetizer:
    """Cut event chunks into packets of ``period_us`` device time (grid aligned to the first event)."""

    def __init__(self, period_us: int = 10_000):
        if period_us <= 0:
            raise ValueError(f"packet period must be positive, got {period_us} us")
        self.period_us = int(period_us)
        self.t0: int | None = None
        self._pending: list[np.ndarray] = []
        self._pending_end: int | None = None  # exclusive end of the open packet

    def push(self, events: np.ndarray) -> list[np.ndarray]:
        """Add events (sorted by t, device time); returns the packets that are complete."""
        if events.dtype != EVENT_DTYPE:
            raise ValueError(f"events must be EVENT_DTYPE, got {events.dtype}")
        if len(events) == 0:
            return []
        t = events["t"]
        if self.t0 is None:
            self.t0 = int(t[0])
            self._pending_end = self.t0 + self.period_us
        out: list[np.ndarray] = []
        end = int(self._pending_end if self._pending_end is not None else self.t0 + self.period_us)
        last = int(t[-1])
        start = 0
        while last >= end:
            cut = int(np.searchsorted(t, end, side="left"))
            if cut > start or self._pending:
                self._pending.append(events[start:cut])
                pkt = concat_events(self._pending)
                if len(pkt):
                    out.append(pkt)
                self._pending = []
            start = cut
            # skip empty periods in one step
            nxt = int(t[start]) if start < len(t) else last
            steps = max(1, (nxt - end) // self.period_us + 1)
            end += steps * self.period_us
        self._pending_end = end
        if start < len(events):
            self._pending.append(events[start:])
        return out

    def flush(self) -> np.ndarray:
        """Return the open packet (possibly empty) and start a new one."""
        pkt = concat_events(self._pending) if self._pending else empty_events(0)
        self._pending = []
        return pkt

    @property
    def pending(self) -> int:
        return sum(len(p) for p in self._pending)

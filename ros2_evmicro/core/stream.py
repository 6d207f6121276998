"""What sensor sources yield, and the packetizer that cuts event streams into fixed-period packets.

A source (live camera, file, simulator) yields lists of items on *device* time (microseconds):
:class:`EventsItem`, :class:`FrameItem`, :class:`ImuItem`, :class:`TriggerItem`. The driver nodes map device
time to ROS time (:mod:`ros2_evmicro.core.clock`) and publish. :class:`Packetizer` turns event chunks of any
size into packets that cover ``period_us`` of device time each (10 ms by default: rclpy's per-message cost
favours packets of about that size), on a grid aligned to the first event.
"""

from __future__ import annotations

from collections.abc import Callable
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
    """Cut event chunks into packets of ``period_us`` device time (grid aligned to the first event).

    ``cuts`` (optional) adds a second set of boundaries: ``cuts(t)`` returns the first extra cut strictly after
    device time ``t``, and the period grid starts again at each of them. The drivers use it to end a packet on
    each window boundary of the slicer (mapped to device time) and follow it with a watermark
    (:meth:`push_marked`): a 33 ms window then goes out as packets of 10, 10, 10 and 3 ms.
    """

    def __init__(self, period_us: int = 10_000, cuts: Callable[[int], int] | None = None):
        if period_us <= 0:
            raise ValueError(f"packet period must be positive, got {period_us} us")
        self.period_us = int(period_us)
        self.cuts = cuts
        self.t0: int | None = None
        self._pending: list[np.ndarray] = []
        self._pending_end: int | None = None  # exclusive end of the open packet on the period grid
        self._cut: int | None = None  # the next extra cut

    def push(self, events: np.ndarray) -> list[np.ndarray]:
        """Add events (sorted by t, device time); returns the packets that are complete."""
        return [pkt for pkt, _ in self.push_marked(events) if len(pkt)]

    def push_marked(self, events: np.ndarray) -> list[tuple[np.ndarray, int | None]]:
        """:meth:`push` that also reports the extra cuts: ``(packet, cut)`` pairs, where ``cut`` is the extra
        cut that ended the packet (every event before it is in this or an earlier packet; the packet may then
        be empty) or None for a period boundary. A gap in the stream yields one pair for the first extra cut
        in it and then skips to the cut before the next event, so a long pause costs one watermark."""
        if events.dtype != EVENT_DTYPE:
            raise ValueError(f"events must be EVENT_DTYPE, got {events.dtype}")
        if len(events) == 0:
            return []
        t = events["t"]
        if self.t0 is None:
            self.t0 = int(t[0])
            self._pending_end = self.t0 + self.period_us
            if self.cuts is not None:
                self._cut = self._next_cut(self.t0)
        out: list[tuple[np.ndarray, int | None]] = []
        last = int(t[-1])
        start = 0
        while True:
            end_p = int(self._pending_end)  # type: ignore[arg-type]
            extra = self._cut is not None and self._cut <= end_p
            end = int(self._cut) if extra else end_p  # type: ignore[arg-type]
            if last < end:
                break
            cut = int(np.searchsorted(t, end, side="left"))
            if cut > start or self._pending:
                self._pending.append(events[start:cut])
                pkt = concat_events(self._pending)
                self._pending = []
            else:
                pkt = events[start:start]
            start = cut
            nxt = int(t[start])  # there is an event at or after ``end``
            if extra:
                out.append((pkt, end))
                after = self._next_cut(end)
                if after <= nxt:  # a gap: one watermark at the last cut before the next event
                    while (following := self._next_cut(after)) <= nxt:
                        after = following
                    out.append((events[start:start], after))
                    end = after
                    after = self._next_cut(after)
                self._cut = after
                end_p = end  # the period grid starts again at the (last) cut: a window's packets are laid out alike
            elif len(pkt):
                out.append((pkt, None))
            # next period boundary after the next event (empty periods in one step)
            self._pending_end = end_p + max(1, (nxt - end_p) // self.period_us + 1) * self.period_us
        if start < len(events):
            self._pending.append(events[start:])
        return out

    def _next_cut(self, t_us: int) -> int:
        if self.cuts is None:
            raise ValueError("internal: no extra cuts configured")
        nxt = int(self.cuts(int(t_us)))
        if nxt <= t_us:
            raise ValueError(f"cuts({t_us}) returned {nxt}: the next cut must lie after the time it is asked for")
        return nxt

    def flush(self) -> np.ndarray:
        """Return the open packet (possibly empty) and start a new one."""
        pkt = concat_events(self._pending) if self._pending else empty_events(0)
        self._pending = []
        return pkt

    @property
    def pending(self) -> int:
        return sum(len(p) for p in self._pending)

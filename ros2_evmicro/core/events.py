"""Event arrays: the one event dtype of the project, packets with a sensor size, and validation.

Every array of events that the code passes around is a structured numpy array of :data:`EVENT_DTYPE`:

======  ========  ==========================================================
field   type      meaning
======  ========  ==========================================================
``x``   uint16    column, 0 <= x < width
``y``   uint16    row, 0 <= y < height
``p``   int8      polarity, 0 = OFF (darker), 1 = ON (brighter)
``t``   int64     sensor time in microseconds (unwrapped, monotonic per packet)
======  ========  ==========================================================

The layout is aligned (16 bytes: x@0, y@2, p@4, t@8) so that numba kernels read it without
unaligned loads, and so that the first 5 bytes coincide with the PointCloud2 wire layout of the
interface contract (see :mod:`ros2_evmicro.core.wire`).

This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "EventError",
    "EventPacket",
    "SensorSize",
    "concat_events",
    "empty_events",
    "make_events",
    "validate_events",
]

EVENT_DTYPE = np.dtype(
    {
        "names": ["x", "y", "p", "t"],
        "formats": ["<u2", "<u2", "i1", "<i8"],
        "offsets": [0, 2, 4, 8],
        "itemsize": 16,
    }
)
"""The project's event dtype (x, y uint16; p int8; t int64 microseconds), 16 bytes aligned."""


class EventError(ValueError):
    """An event array or packet is malformed (dtype, coordinates, polarity or time order)."""


@dataclass(frozen=True)
class SensorSize:
    """Sensor geometry in pixels."""

    width: int
    height: int

    def __post_init__(self) -> None:
        if not (0 < int(self.width) <= 65535 and 0 < int(self.height) <= 65535):
            raise EventError(f"sensor size must be within 1..65535 pixels, got {self.width}x{self.height}")

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), numpy order."""
        return (int(self.height), int(self.width))

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


DAVIS346 = SensorSize(346, 260)
EVK4 = SensorSize(1280, 720)
VGA = SensorSize(640, 480)


def empty_events(n: int = 0) -> np.ndarray:
    """A zero-filled event array of length ``n``."""
    return np.zeros(int(n), dtype=EVENT_DTYPE)


def make_events(x, y, p, t) -> np.ndarray:
    """Build an event array from four equally long 1-D sequences (copied and cast)."""
    x = np.asarray(x)
    n = x.shape[0] if x.ndim else 1
    ev = np.zeros(n, dtype=EVENT_DTYPE)  # zeroed padding: same values give the same bytes
    try:
        ev["x"] = x
        ev["y"] = y
        ev["p"] = p
        ev["t"] = t
    except ValueError as err:
        raise EventError(f"x, y, p and t must be 1-D and of equal length {n}: {err}") from None
    return ev


def concat_events(chunks) -> np.ndarray:
    """Concatenate event arrays; an empty list gives an empty array of the same dtype."""
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return empty_events(0)
    if len(chunks) == 1:
        return chunks[0]
    # np.concatenate would return a packed dtype (numpy drops the alignment padding): fill a new array instead
    out = np.empty(sum(len(c) for c in chunks), dtype=EVENT_DTYPE)
    i = 0
    for c in chunks:
        out[i : i + len(c)] = c
        i += len(c)
    return out


def validate_events(
    events: np.ndarray,
    width: int | None = None,
    height: int | None = None,
    *,
    time_tolerance_us: int = 0,
    t_min: int | None = None,
) -> np.ndarray:
    """Check an event array and return it unchanged, or raise :class:`EventError` with the reason.

    Checks: dtype is :data:`EVENT_DTYPE` (same names, types and offsets); 1-D; when ``width`` and
    ``height`` are given, every coordinate is inside the sensor; polarity is 0 or 1; time never
    goes backwards by more than ``time_tolerance_us`` (sensors and USB transfers reorder events by a
    few microseconds); and, when ``t_min`` is given, no event is older than ``t_min -
    time_tolerance_us`` (the end of the previous packet).
    """
    if not isinstance(events, np.ndarray):
        raise EventError(f"events must be a numpy array of EVENT_DTYPE, got {type(events).__name__}")
    if events.dtype != EVENT_DTYPE:
        raise EventError(
            f"events have dtype {events.dtype}, expected {EVENT_DTYPE} "
            "(use ros2_evmicro.core.events.make_events to convert)"
        )
    if events.ndim != 1:
        raise EventError(f"events must be 1-D, got shape {events.shape}")
    n = events.shape[0]
    if n == 0:
        return events
    if width is not None and height is not None:
        xmax = int(events["x"].max())
        ymax = int(events["y"].max())
        if xmax >= width or ymax >= height:
            bad = int(np.flatnonzero((events["x"] >= width) | (events["y"] >= height))[0])
            raise EventError(
                f"event {bad} at (x={int(events['x'][bad])}, y={int(events['y'][bad])}) is outside "
                f"the {width}x{height} sensor"
            )
    p = events["p"]
    if int(p.min()) < 0 or int(p.max()) > 1:
        bad = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise EventError(f"event {bad} has polarity {int(p[bad])}, expected 0 (OFF) or 1 (ON)")
    t = events["t"]
    if n > 1:
        # running maximum catches a late event anywhere, not only between neighbours
        back = np.maximum.accumulate(t) - t
        worst = int(back.max())
        if worst > time_tolerance_us:
            bad = int(np.argmax(back))
            raise EventError(
                f"time goes backwards by {worst} us at event {bad} (t={int(t[bad])}), more than the "
                f"tolerance of {time_tolerance_us} us"
            )
    if t_min is not None and int(t[0] if n == 1 else t.min()) < t_min - time_tolerance_us:
        raise EventError(
            f"packet starts at t={int(t.min())} us, before the end of the previous packet "
            f"({t_min} us) by more than {time_tolerance_us} us"
        )
    return events


@dataclass
class EventPacket:
    """A batch of events from one sensor, with the sensor size and the sensor time span.

    ``t_start``/``t_end`` bound the span the packet covers (``t_end`` exclusive): a packet with
    no events still tells that nothing happened in that span, which the slicer needs to emit
    empty windows.
    """

    events: np.ndarray
    width: int
    height: int
    t_start: int | None = None
    t_end: int | None = None
    frame_id: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        SensorSize(self.width, self.height)
        n = len(self.events)
        if self.t_start is None:
            self.t_start = int(self.events["t"][0]) if n else 0
        if self.t_end is None:
            self.t_end = int(self.events["t"][-1]) + 1 if n else int(self.t_start)
        if self.t_end < self.t_start:
            raise EventError(f"packet ends (t_end={self.t_end}) before it starts (t_start={self.t_start})")

    @property
    def sensor_size(self) -> SensorSize:
        return SensorSize(self.width, self.height)

    def __len__(self) -> int:
        return len(self.events)

    def validate(self, time_tolerance_us: int = 0) -> EventPacket:
        validate_events(self.events, self.width, self.height, time_tolerance_us=time_tolerance_us)
        return self

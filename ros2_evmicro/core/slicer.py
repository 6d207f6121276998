"""Event frames of Eq. 1 of the paper: per-pixel ON/OFF counts over fixed windows of sensor time.

For a window ``[t_s, t_s + T)`` the frame has two channels,

    F[0, y, x] = #{ events e : x_e = x, y_e = y, p_e = 0 (OFF), t_s <= t_e < t_s + T }
    F[1, y, x] = #{ events e : x_e = x, y_e = y, p_e = 1 (ON),  t_s <= t_e < t_s + T }

so an event at exactly ``t_s + T`` belongs to the NEXT window. ``T`` is ``window_us`` (33,000 us by
default, the paper's 33 ms).

Two entry points:

* :func:`count_frame` - the pure function: one array of events -> one ``(2, H, W)`` count frame.
* :class:`Slicer` - the streaming form a node uses: packets of any size go in, closed windows
  come out as :class:`Frame` objects, with a late-event tolerance for sensors and transports that
  reorder events by a few microseconds or deliver packets slightly out of order.

Window alignment: windows lie on the grid ``origin + k * window_us``. With ``t0`` given, ``origin =
t0``; otherwise ``origin`` is the first event's time (or the first packet's ``t_start`` when that
packet is empty) floored to a multiple of ``window_us`` on the absolute sensor clock, so that two
consumers of one stream (or two cameras on one clock) cut the same windows whatever packet they
start from.

Counts saturate at the dtype's maximum (65,535 for the default uint16) instead of wrapping.

This module imports numpy and numba only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numba
import numpy as np

from ros2_evmicro.core.events import EVENT_DTYPE, EventError, EventPacket, SensorSize
from ros2_evmicro.core.wire import WIRE_DTYPE

__all__ = [
    "DEFAULT_LATE_TOLERANCE_US",
    "DEFAULT_WINDOW_US",
    "Frame",
    "Slicer",
    "SlicerError",
    "SlicerStats",
    "count_frame",
    "slice_events",
]

DEFAULT_WINDOW_US = 33_000
"""The paper's window: 33 ms, in microseconds."""

DEFAULT_LATE_TOLERANCE_US = 2_000
"""How long (us of sensor time) a window stays open after its end for late events."""


class SlicerError(EventError):
    """Bad slicer parameters or input (sensor size, window, dtype of the output buffer)."""


# ---------------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _count_kernel(ev, out, maxv):  # pragma: no cover - compiled
    """Add every event's polarity count into ``out`` (2, H, W); skip and count invalid events.

    Reads the records of the structured array directly: faster than three strided field views.
    """
    h = out.shape[1]
    w = out.shape[2]
    bad = 0
    for i in range(ev.shape[0]):
        e = ev[i]
        xi = e.x
        yi = e.y
        pi = e.p
        if xi >= w or yi >= h or pi < 0 or pi > 1:
            bad += 1
            continue
        v = out[pi, yi, xi]
        if v < maxv:
            out[pi, yi, xi] = v + 1
    return bad


@numba.njit(cache=True, nogil=True)
def _first_invalid(ev, w, h):  # pragma: no cover - compiled
    """Index of the first event outside the sensor or with a polarity other than 0/1, or -1."""
    for i in range(ev.shape[0]):
        e = ev[i]
        if e.x >= w or e.y >= h or e.p < 0 or e.p > 1:
            return i
    return -1


@numba.njit(cache=True, nogil=True)
def _scatter_kernel(
    ev, toff, start, origin, window, tol, k_closed, wm, bufs, slot_k, n_ev, n_late, maxv, stop_wm, region
):  # pragma: no cover - compiled
    """Count events ``start..`` into the open windows held in ``bufs`` (slots named by ``slot_k``).

    Event ``i`` belongs to window ``k = floor((t - origin) / window)``. It is dropped as too late
    when that window is already closed (``k < k_closed``) or when the running watermark ``wm`` (the
    largest time seen so far) has passed the window's end plus the tolerance; it is merged late (and
    counted in ``n_late``) when the watermark has passed the window's end but not the tolerance.
    When an event needs a window that has no slot, the kernel stops and returns its index and
    window so that the caller can open one and resume.

    ``ev`` is any record array with fields ``x``, ``y``, ``p`` and ``t`` (EVENT_DTYPE, or the
    WIRE_DTYPE view of a message buffer); an event's time is ``t + toff`` (numba compiles one
    version per layout).

    ``region`` (x0, y0, x1, y1; end exclusive) bounds the pixels written: an event outside it counts in its
    window's ``n_ev`` and in the watermark like any other, but adds nothing to ``bufs``.

    The kernel also stops right after the event that brings the watermark to ``stop_wm`` (the moment
    the oldest open window may close), so that the caller can hand that window out before the rest
    of the packet is counted.

    Returns ``(next_index, needed_k, wm, n_dropped, n_invalid, reason)``: ``reason`` 0 when every
    event is done (``next_index == len(ev)``), 1 when window ``needed_k`` needs a slot, 2 when the
    watermark reached ``stop_wm``.
    """
    n = ev.shape[0]
    h = bufs.shape[2]
    w = bufs.shape[3]
    # one unsigned compare per axis: x - x0 wraps to a huge value when x < x0
    rx0 = np.int64(region[0])
    ry0 = np.int64(region[1])
    rw = np.uint64(region[2] - region[0])
    rh = np.uint64(region[3] - region[1])
    full = rx0 == 0 and ry0 == 0 and rw == np.uint64(w) and rh == np.uint64(h)  # loop-invariant: no check
    nslots = slot_k.shape[0]
    dropped = 0
    invalid = 0
    cur_k = np.int64(-(2**62))
    cur_slot = -1
    ws = np.int64(0)
    we = np.int64(0)
    i = start
    while i < n:
        e = ev[i]
        ti = e.t + toff
        xi = e.x
        yi = e.y
        pi = e.p
        if xi >= w or yi >= h or pi < 0 or pi > 1:
            invalid += 1
            i += 1
            continue
        if ti < ws or ti >= we:
            # floor division (numba follows Python semantics for negative numerators)
            cur_k = (ti - origin) // window
            ws = origin + cur_k * window
            we = ws + window
            cur_slot = -1
            if cur_k >= k_closed:
                for s in range(nslots):
                    if slot_k[s] == cur_k:
                        cur_slot = s
                        break
        if cur_k < k_closed or wm >= we + tol:
            dropped += 1
            i += 1
            continue
        if cur_slot < 0:
            return i, cur_k, wm, dropped, invalid, 1
        if wm >= we:
            # late but within the tolerance: merge this one event
            n_late[cur_slot] += 1
            n_ev[cur_slot] += 1
            if full or (np.uint64(np.int64(xi) - rx0) < rw and np.uint64(np.int64(yi) - ry0) < rh):
                v = bufs[cur_slot, pi, yi, xi]
                if v < maxv:
                    bufs[cur_slot, pi, yi, xi] = v + 1
            i += 1
            continue
        # fast path: the run of events inside [ws, we), none late since wm < we throughout;
        # counters are kept in registers (no store-to-load chain through n_ev)
        cnt = 0
        b = bufs[cur_slot]
        while i < n:
            e = ev[i]
            ti = e.t + toff
            if ti < ws or ti >= we:
                break
            xi = e.x
            yi = e.y
            pi = e.p
            if xi >= w or yi >= h or pi < 0 or pi > 1:
                invalid += 1
                i += 1
                continue
            cnt += 1
            if full or (np.uint64(np.int64(xi) - rx0) < rw and np.uint64(np.int64(yi) - ry0) < rh):
                v = b[pi, yi, xi]
                if v < maxv:
                    b[pi, yi, xi] = v + 1
            i += 1
            if ti > wm:
                wm = ti
                if wm >= stop_wm:
                    break
        n_ev[cur_slot] += cnt
        if wm >= stop_wm and i < n:
            return i, cur_k, wm, dropped, invalid, 2
    return n, cur_k, wm, dropped, invalid, 0


# ---------------------------------------------------------------------------------------------
# pure function
# ---------------------------------------------------------------------------------------------


def _fields(events) -> tuple[np.ndarray, int | None, int | None]:
    if isinstance(events, EventPacket):
        return events.events, events.width, events.height
    return events, None, None


_FIELDS = {name: spec[0] for name, spec in (EVENT_DTYPE.fields or {}).items()}


def _check_events(events, wire_ok: bool = False) -> np.ndarray:
    """The events as a 1-D EVENT_DTYPE array (or, with ``wire_ok``, a WIRE_DTYPE array as it is).

    A structured array with the same fields and types but another layout (``np.concatenate`` of
    EVENT_DTYPE arrays gives a packed 13-byte copy) is converted (one copy).
    """
    if wire_ok and isinstance(events, np.ndarray) and events.dtype == WIRE_DTYPE and events.ndim == 1:
        return events
    if (
        isinstance(events, np.ndarray)
        and events.ndim == 1
        and events.dtype != EVENT_DTYPE
        and events.dtype.names is not None
        and set(events.dtype.names) == set(_FIELDS)
        and all(events.dtype.fields[k][0] == v for k, v in _FIELDS.items())
    ):
        events = events.astype(EVENT_DTYPE)
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        what = events.dtype if isinstance(events, np.ndarray) else type(events).__name__
        raise SlicerError(f"events must be a 1-D numpy array of EVENT_DTYPE (ros2_evmicro.core.events), got {what}")
    return events


def _max_value(dtype: np.dtype):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return dtype.type(np.iinfo(dtype).max)
    if np.issubdtype(dtype, np.floating):
        return dtype.type(np.finfo(dtype).max)
    raise SlicerError(f"count dtype must be an integer or float type, got {dtype}")


def count_frame(
    events: np.ndarray | EventPacket,
    width: int | None = None,
    height: int | None = None,
    out: np.ndarray | None = None,
    dtype=np.uint16,
) -> np.ndarray:
    """Per-pixel OFF/ON counts of ``events``: a ``(2, height, width)`` array (Eq. 1 of the paper).

    Channel 0 counts OFF events (``p == 0``), channel 1 ON events (``p == 1``). All events given
    are counted whatever their time (cut the window first, e.g. with :func:`slice_events`).

    Args:
        events: array of :data:`~ros2_evmicro.core.events.EVENT_DTYPE` or an ``EventPacket`` (whose
            sensor size is used when ``width``/``height`` are not given).
        width, height: sensor size in pixels.
        out: optional ``(2, height, width)`` C-contiguous array to ADD into (not cleared), which
            also fixes the dtype; lets a caller reuse one buffer per window.
        dtype: dtype of the new frame when ``out`` is None (uint16 default; counts saturate at the
            dtype's maximum instead of wrapping).

    Raises:
        SlicerError: wrong dtype/shape of ``events`` or ``out``, or a bad sensor size.
        EventError: an event lies outside the sensor or has a polarity other than 0/1 (the valid
            events are still counted into ``out``).
    """
    events, pw, ph = _fields(events)
    width = pw if width is None else width
    height = ph if height is None else height
    if width is None or height is None:
        raise SlicerError("count_frame needs width and height (or an EventPacket that carries them)")
    try:
        size = SensorSize(int(width), int(height))
    except EventError as err:
        raise SlicerError(str(err)) from None
    events = _check_events(events)
    shape = (2, size.height, size.width)
    if out is None:
        out = np.zeros(shape, dtype=dtype)
    elif not isinstance(out, np.ndarray) or out.shape != shape or not out.flags.c_contiguous:
        got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        raise SlicerError(f"out must be a C-contiguous array of shape {shape}, got {got}")
    maxv = _max_value(out.dtype)
    if len(events) == 0:
        return out
    bad = _count_kernel(events, out, maxv)
    if bad:
        i = int(_first_invalid(events, size.width, size.height))
        raise EventError(
            f"{bad} event(s) outside the {size} sensor or with polarity not in {{0, 1}}; first is "
            f"event {i} (x={int(events['x'][i])}, y={int(events['y'][i])}, p={int(events['p'][i])})"
        )
    return out


def slice_events(events: np.ndarray, t_start_us: int, t_end_us: int) -> np.ndarray:
    """The events with ``t_start_us <= t < t_end_us`` of a time-sorted array (a view, by searchsorted)."""
    events = _check_events(events)
    t = events["t"]
    i0, i1 = np.searchsorted(t, [t_start_us, t_end_us], side="left")
    return events[i0:i1]


# ---------------------------------------------------------------------------------------------
# streaming slicer
# ---------------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One closed window: ``counts[0]`` = OFF, ``counts[1]`` = ON, times in sensor microseconds."""

    t_start_us: int
    t_end_us: int  # exclusive: t_start_us + window_us
    counts: np.ndarray  # (2, H, W)
    n_events: int = 0
    n_late_merged: int = 0  # events that arrived after the window's end but within the tolerance

    @property
    def window_us(self) -> int:
        return self.t_end_us - self.t_start_us


@dataclass
class SlicerStats:
    """Running totals for diagnostics."""

    windows: int = 0  # frames emitted
    empty_windows: int = 0  # frames emitted with no event
    windows_skipped: int = 0  # empty windows not emitted because of a time jump (max_empty_windows)
    events_in: int = 0  # events pushed
    events_counted: int = 0  # events counted into some window
    n_dropped_late: int = 0  # events older than a closed window, dropped
    n_late_merged: int = 0  # events merged after their window's end, within the tolerance
    n_invalid: int = 0  # events outside the sensor or with bad polarity, dropped
    packets: int = 0
    windows_shed: int = 0  # windows dropped whole by shed() (no frame)
    events_shed: int = 0  # events of shed windows, not counted
    last_events_per_window: int = 0
    events_per_window_max: int = 0

    @property
    def events_per_window_mean(self) -> float:
        """Mean events per emitted window (over all windows so far)."""
        return self.events_counted / self.windows if self.windows else 0.0

    def as_dict(self) -> dict:
        """Plain dict for a DiagnosticStatus (key -> value)."""
        return {
            "windows": self.windows,
            "empty_windows": self.empty_windows,
            "windows_skipped": self.windows_skipped,
            "events_in": self.events_in,
            "events_counted": self.events_counted,
            "dropped_late": self.n_dropped_late,
            "late_merged": self.n_late_merged,
            "invalid": self.n_invalid,
            "packets": self.packets,
            "windows_shed": self.windows_shed,
            "events_shed": self.events_shed,
            "events_per_window_last": self.last_events_per_window,
            "events_per_window_mean": round(self.events_per_window_mean, 1),
            "events_per_window_max": self.events_per_window_max,
        }


class Slicer:
    """Streaming cutter of events into fixed windows of sensor time, emitting count frames.

    ``push`` takes packets of any size (an event array or an ``EventPacket``); a packet may
    straddle any number of windows. A window ``[s, e)`` closes, and its :class:`Frame` is returned,
    once the watermark (the largest sensor time seen: latest event, or ``t_end - 1`` of an
    ``EventPacket``) reaches ``e + late_tolerance_us``; until then late or out-of-order events for
    it are still merged (and counted in ``Frame.n_late_merged``). Events for an already closed
    window are dropped and counted in ``stats.n_dropped_late``. The decision is made per event
    against the running watermark, so the frames do not depend on how the stream was cut into
    packets. Windows with no event are emitted as zero frames of the same shape and dtype; after
    a jump of more than ``max_empty_windows`` empty windows the rest are skipped (and counted).
    ``flush()`` closes every window up to the watermark.

    Args:
        width, height: sensor size in pixels.
        window_us: window length in microseconds (33,000 = the paper's 33 ms).
        late_tolerance_us: how long after its end a window waits for late events (us).
        t0: start of the first window (us); None aligns to the first event floored to the grid.
        dtype: count dtype (uint16 default; saturating).
        on_invalid: 'raise' (EventError before anything is counted) or 'drop' (count in stats).
        max_empty_windows: most empty frames emitted for one gap in time.
        frame_views: hand out each full window's counts as a read-only VIEW of the slicer's buffer
            instead of a copy (saves a full-frame copy per window, 3.7 MB at 1280x720). The view is
            valid until the next ``push``/``flush``/``reset`` call; a consumer that crops or converts
            the frame at once (the slicer node) uses this, one that keeps frames must not.
    """

    def __init__(
        self,
        width: int,
        height: int,
        window_us: int = DEFAULT_WINDOW_US,
        late_tolerance_us: int = DEFAULT_LATE_TOLERANCE_US,
        t0: int | None = None,
        *,
        dtype=np.uint16,
        on_invalid: str = "raise",
        max_empty_windows: int = 300,
        frame_views: bool = False,
    ) -> None:
        try:
            self.size = SensorSize(int(width), int(height))
        except EventError as err:
            raise SlicerError(str(err)) from None
        if int(window_us) != window_us or window_us <= 0:
            raise SlicerError(f"window_us must be a positive integer number of microseconds, got {window_us}")
        if int(late_tolerance_us) != late_tolerance_us or late_tolerance_us < 0:
            raise SlicerError(f"late_tolerance_us must be an integer >= 0, got {late_tolerance_us}")
        if on_invalid not in ("raise", "drop"):
            raise SlicerError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
        if int(max_empty_windows) < 0:
            raise SlicerError(f"max_empty_windows must be >= 0, got {max_empty_windows}")
        self.window_us = int(window_us)
        self.late_tolerance_us = int(late_tolerance_us)
        self.dtype = np.dtype(dtype)
        self._maxv = _max_value(self.dtype)
        self.on_invalid = on_invalid
        self.max_empty_windows = int(max_empty_windows)
        self.frame_views = bool(frame_views)
        self._zeros: np.ndarray | None = None  # the shared read-only empty frame (frame_views)
        self._t0 = None if t0 is None else int(t0)
        self._region = np.array([0, 0, self.size.width, self.size.height], dtype=np.int64)
        self.stats = SlicerStats()
        # one extra window of slack beyond what the tolerance keeps open
        nslots = 2 + -(-self.late_tolerance_us // self.window_us)
        self._bufs = np.zeros((nslots, 2, self.size.height, self.size.width), dtype=self.dtype)
        self._reset_stream()

    # -- state -------------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self._origin: int | None = self._t0
        self._k_closed = 0  # every window k < _k_closed is closed
        self._wm = np.int64(-(2**62)) if self._t0 is None else np.int64(self._t0 - 1)
        nslots = self._bufs.shape[0]
        self._slot_k = np.full(nslots, -1, dtype=np.int64)
        self._n_ev = np.zeros(nslots, dtype=np.int64)
        self._n_late = np.zeros(nslots, dtype=np.int64)
        self._dirty = np.ones(nslots, dtype=bool)  # zeroed when a slot is opened
        self._held = np.zeros(nslots, dtype=bool)  # lent out as a frame view until the next call
        self._shed: set[int] = set()  # open windows that shed() dropped

    def reset(self) -> None:
        """Forget the stream (open windows, alignment, watermark); keep the statistics."""
        self._reset_stream()

    @property
    def region(self) -> tuple[int, int, int, int]:
        """The pixels counted into the frames, ``(x0, y0, x1, y1)`` end exclusive (the whole sensor by default)."""
        r = self._region
        return int(r[0]), int(r[1]), int(r[2]), int(r[3])

    def set_region(self, region: tuple[int, int, int, int] | None) -> None:
        """Count only the pixels of ``region`` (``(x0, y0, x1, y1)``, end exclusive, clipped to the sensor; None
        = the whole sensor) into the frames from the next event on; events outside still count in
        ``Frame.n_events``, the statistics and the watermark.

        For a consumer that reads one fixed part of each frame, the crop of a fixed face box
        (:func:`~ros2_evmicro.core.roi.crop_region`): the frames are the same inside the region and the
        counting writes into a smaller part of memory (and skips the events outside)."""
        w, h = self.size.width, self.size.height
        if region is None:
            self._region = np.array([0, 0, w, h], dtype=np.int64)
            return
        x0, y0, x1, y1 = (int(v) for v in region)
        x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
        y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
        if x1 <= x0 or y1 <= y0:
            raise SlicerError(f"region {tuple(region)} holds no pixel of the {self.size} sensor")
        self._region = np.array([x0, y0, x1, y1], dtype=np.int64)

    @property
    def origin_us(self) -> int | None:
        """Start of window 0 (us), None before the first event when no ``t0`` was given."""
        return self._origin

    @property
    def watermark_us(self) -> int | None:
        """Largest sensor time seen so far (us), None before any input."""
        return None if self._origin is None or self._wm < -(2**61) else int(self._wm)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (2, self.size.height, self.size.width)

    def next_window_start_us(self) -> int | None:
        """Start of the oldest window not yet emitted (us)."""
        return None if self._origin is None else self._origin + self._k_closed * self.window_us

    # -- slots ---------------------------------------------------------------------------------

    def _release_views(self, zero: bool = True) -> None:
        """Start of a call: the views handed out by the previous call are no longer valid, so their slots may be
        reused; and every free slot that held a closed window is zeroed now, so that the call that CLOSES a
        window (the latency-critical one: its frames go out when it returns) finds clean slots and zeroes
        nothing."""
        if self.frame_views:
            self._held[:] = False
        if not zero:
            return
        for s in np.flatnonzero((self._slot_k < 0) & self._dirty):
            self._bufs[s].fill(0)
            self._dirty[s] = False

    def _open_slot(self, k: int) -> None:
        free = np.flatnonzero((self._slot_k < 0) & ~self._held)
        if free.size == 0:
            n = self._bufs.shape[0]
            grow = np.zeros((n, *self._bufs.shape[1:]), dtype=self.dtype)
            self._bufs = np.concatenate([self._bufs, grow])
            self._slot_k = np.concatenate([self._slot_k, np.full(n, -1, dtype=np.int64)])
            self._n_ev = np.concatenate([self._n_ev, np.zeros(n, dtype=np.int64)])
            self._n_late = np.concatenate([self._n_late, np.zeros(n, dtype=np.int64)])
            self._dirty = np.concatenate([self._dirty, np.zeros(n, dtype=bool)])
            self._held = np.concatenate([self._held, np.zeros(n, dtype=bool)])
            free = np.flatnonzero((self._slot_k < 0) & ~self._held)
        s = int(free[0])
        if self._dirty[s]:
            self._bufs[s].fill(0)
            self._dirty[s] = False
        self._slot_k[s] = k
        self._n_ev[s] = 0
        self._n_late[s] = 0

    def _grid_origin(self) -> int:
        """``_origin`` once the first event (or ``t0``) has fixed the window grid."""
        if self._origin is None:
            raise SlicerError("internal: the window grid has no origin before the first event")
        return self._origin

    def _emit(self, k: int) -> Frame | None:
        """The frame of window ``k`` (now closed), or None for a shed window (its slot is freed)."""
        t_s = self._grid_origin() + k * self.window_us
        hit = np.flatnonzero(self._slot_k == k)
        if k in self._shed:
            self._shed.discard(k)
            if hit.size:
                s = int(hit[0])
                self._slot_k[s] = -1
                self._dirty[s] = True
            self.stats.windows_shed += 1
            return None
        if hit.size:
            s = int(hit[0])
            if self.frame_views:
                counts = self._bufs[s].view()
                counts.flags.writeable = False
                self._held[s] = True
            else:
                counts = self._bufs[s].copy()
            frame = Frame(t_s, t_s + self.window_us, counts, int(self._n_ev[s]), int(self._n_late[s]))
            self._slot_k[s] = -1
            self._dirty[s] = True
        elif self.frame_views:
            if self._zeros is None:
                self._zeros = np.zeros(self.shape, dtype=self.dtype)
                self._zeros.flags.writeable = False
            frame = Frame(t_s, t_s + self.window_us, self._zeros)
        else:
            frame = Frame(t_s, t_s + self.window_us, np.zeros(self.shape, dtype=self.dtype))
        st = self.stats
        st.windows += 1
        st.empty_windows += frame.n_events == 0
        st.last_events_per_window = frame.n_events
        st.events_per_window_max = max(st.events_per_window_max, frame.n_events)
        return frame

    def _close_until(self, k_end: int) -> list[Frame]:
        """Emit windows ``_k_closed .. k_end - 1`` (skipping long runs of empty ones, and shed windows)."""
        frames: list[Frame | None] = []
        while self._k_closed < k_end:
            open_ks = self._slot_k[(self._slot_k >= self._k_closed) & (self._slot_k < k_end)]
            next_full = int(open_ks.min()) if open_ks.size else k_end
            gap = next_full - self._k_closed
            if gap > self.max_empty_windows:
                for k in range(self._k_closed, self._k_closed + self.max_empty_windows):
                    frames.append(self._emit(k))
                lo = self._k_closed + self.max_empty_windows
                shed = {k for k in self._shed if lo <= k < next_full}  # shed, not merely empty
                self._shed -= shed
                self.stats.windows_shed += len(shed)
                self.stats.windows_skipped += next_full - lo - len(shed)
                self._k_closed = next_full
                continue
            for k in range(self._k_closed, next_full):
                frames.append(self._emit(k))
            self._k_closed = next_full
            if next_full < k_end:
                frames.append(self._emit(next_full))
                self._k_closed = next_full + 1
        return [f for f in frames if f is not None]

    def _closable_k(self) -> int:
        """First window index that must stay open given the watermark."""
        # window k closes when wm >= origin + (k + 1) * window + tol
        return int((int(self._wm) - self.late_tolerance_us - self._grid_origin()) // self.window_us)

    # -- API ---------------------------------------------------------------------------------

    def push(self, events: np.ndarray | EventPacket, t_offset_us: int = 0) -> list[Frame]:
        """Count a packet of events and return the frames of every window that closed, oldest first.

        ``events`` is an EVENT_DTYPE array, an ``EventPacket``, or the zero-copy WIRE_DTYPE view of a
        PointCloud2 buffer (:func:`ros2_evmicro.core.wire.wire_view`) whose relative ``t`` plus
        ``t_offset_us`` (the message stamp in us) is the event time: the node slices straight from the
        received buffer, without the widening copy of :func:`~ros2_evmicro.core.wire.wire_to_events`.
        """
        return list(self.push_iter(events, t_offset_us))

    def push_iter(self, events: np.ndarray | EventPacket, t_offset_us: int = 0) -> Iterator[Frame]:
        """:meth:`push` as a generator that hands out each frame as soon as its window closes: at the event
        that brings the watermark past the window's end plus the tolerance, before the rest of the packet is
        counted. The frames, the statistics and the state afterwards are those of :meth:`push` (the late
        decisions are made per event against the running watermark either way); iterate to the end.

        A live node publishes each frame as it comes: with 10 ms packets of 200k events (20 Mev/s) the
        window closes anywhere in its closing packet, so on average half of that packet's counting no longer
        delays the frame.
        """
        self._release_views()
        t_end_hint = None
        toff = int(t_offset_us)
        if isinstance(events, EventPacket):
            if toff:
                raise SlicerError("t_offset_us applies to wire views only; an EventPacket has absolute times")
            if (events.width, events.height) != (self.size.width, self.size.height):
                raise SlicerError(f"packet is {events.width}x{events.height} but the slicer was built for {self.size}")
            t_end_hint = int(events.t_end) - 1 if events.t_end is not None else None
            t_start_hint = events.t_start
            events = events.events
        else:
            t_start_hint = None
        events = _check_events(events, wire_ok=True)
        if toff and events.dtype != WIRE_DTYPE:
            raise SlicerError("t_offset_us applies to WIRE_DTYPE views only; EVENT_DTYPE times are absolute")
        n = len(events)
        self.stats.packets += 1
        self.stats.events_in += n
        if self._origin is None:
            if n:
                t_first = int(events["t"][0]) + toff
            elif t_start_hint is not None and (t_end_hint is not None and t_end_hint >= t_start_hint):
                t_first = int(t_start_hint)
            else:
                return
            self._origin = (t_first // self.window_us) * self.window_us
            self._wm = np.int64(self._origin - 1)
        if n:
            if self.on_invalid == "raise":
                bad = int(_first_invalid(events, self.size.width, self.size.height))
                if bad >= 0:
                    e = events[bad]
                    raise EventError(
                        f"event {bad} (x={int(e['x'])}, y={int(e['y'])}, p={int(e['p'])}) is outside the "
                        f"{self.size} sensor or has a polarity not in {{0, 1}}; packet dropped"
                    )
            for a, b, shed in self._runs(events, toff):
                if shed:
                    self._skip(events[a:b], toff)
                    yield from self._close_closable()
                else:
                    yield from self._count(events if b == n else events[:b], toff, a)
        if t_end_hint is not None and t_end_hint > self._wm:
            self._wm = np.int64(t_end_hint)
        yield from self._close_closable()

    def _count(self, events: np.ndarray, toff: int, i: int) -> Iterator[Frame]:
        """Count ``events[i:]`` into their windows, handing out each frame as its window closes."""
        n = len(events)
        while i < n:
            # the watermark at which the oldest open window closes (always ahead of the watermark here)
            stop_wm = self._grid_origin() + (self._k_closed + 1) * self.window_us + self.late_tolerance_us
            i, need_k, wm, dropped, invalid, why = _scatter_kernel(
                events, np.int64(toff), i, self._origin, self.window_us, self.late_tolerance_us,
                self._k_closed, self._wm, self._bufs, self._slot_k, self._n_ev, self._n_late,
                self._maxv, np.int64(stop_wm), self._region,
            )  # fmt: skip
            self._wm = np.int64(wm)
            self.stats.n_dropped_late += int(dropped)
            self.stats.n_invalid += int(invalid)
            if why == 2:
                yield from self._close_closable()
            elif why == 1:
                if not (self._slot_k < 0).any():
                    # close what the watermark allows before growing the buffers
                    yield from self._close_closable()
                self._open_slot(int(need_k))

    def _runs(self, events: np.ndarray, toff: int) -> list[tuple[int, int, bool]]:
        """``(start, end, shed)`` runs of a packet: the events of shed windows apart (a packet's events are
        taken to be in time order here, as the drivers send them)."""
        n = len(events)
        if not self._shed:
            return [(0, n, False)]
        t = events["t"]
        o, w = self._grid_origin(), self.window_us
        k0 = (int(t[0]) + toff - o) // w
        k1 = (int(t[-1]) + toff - o) // w
        ks = sorted(k for k in self._shed if k0 <= k <= k1)
        if not ks:
            return [(0, n, False)]
        if k0 == k1:
            return [(0, n, True)]
        runs: list[tuple[int, int, bool]] = []
        pos = 0
        for k in ks:
            a = max(pos, int(np.searchsorted(t, o + k * w - toff, side="left")))
            b = max(a, int(np.searchsorted(t, o + (k + 1) * w - toff, side="left")))
            if a > pos:
                runs.append((pos, a, False))
            if b > a:
                runs.append((a, b, True))
            pos = b
        if pos < n:
            runs.append((pos, n, False))
        return runs

    def _skip(self, events: np.ndarray, toff: int) -> None:
        """Events of shed windows: not counted; they still move the watermark."""
        if len(events):
            hi = int(events["t"].max()) + toff
            if hi > self._wm:
                self._wm = np.int64(hi)
            self.stats.events_shed += len(events)

    def window_index(self, t_us: int) -> int | None:
        """Index of the window holding event time ``t_us`` (None before the window grid is known)."""
        return None if self._origin is None else (int(t_us) - self._origin) // self.window_us

    def shed(self, k: int) -> bool:
        """Drop window ``k`` whole, for a live consumer that has fallen behind (:mod:`ros2_evmicro.core.shedding`):
        its events are not counted from now on, what was counted of it is discarded, and it yields no frame when
        it closes (``stats.windows_shed``, ``stats.events_shed``). The other windows' frames do not change.
        Returns False, and changes nothing, when window ``k`` is already closed or there is no grid yet."""
        if self._origin is None or int(k) < self._k_closed:
            return False
        self._shed.add(int(k))
        return True

    def complete(self, t_us: int) -> list[Frame]:
        """The source promises that every event before ``t_us`` has been pushed (a watermark, e.g. an empty
        event packet of the contract): close, and return, every window that ends at or before ``t_us`` now,
        without waiting out the late tolerance, and raise the watermark to ``t_us - 1``.

        Events that still come for a window closed this way are dropped and counted as late, as for any
        closed window. Before the first event (no window grid yet) there is nothing to close. A watermark older
        than the running one changes nothing.
        """
        self._release_views(zero=False)  # the zeroing waits for the next push: a watermark only closes windows
        if self._origin is None:
            return []
        t = int(t_us)
        if t - 1 > self._wm:
            self._wm = np.int64(t - 1)
        # window k ends at origin + (k + 1) * window <= t  <=>  k < (t - origin) // window
        return self._close_closable((t - self._origin) // self.window_us)

    def _close_closable(self, k_end: int = 0) -> list[Frame]:
        """Close (and account) every window the watermark allows, and every window before ``k_end``."""
        frames = self._close_until(max(self._closable_k(), k_end))
        self._account(frames)
        return frames

    def flush(self) -> list[Frame]:
        """Close every window up to and including the one holding the watermark; return their frames."""
        self._release_views()
        if self._origin is None or self._wm < self._origin:
            return []
        k_last = int((int(self._wm) - self._origin) // self.window_us)
        frames = self._close_until(k_last + 1)
        self._account(frames)
        return frames

    def _account(self, frames: list[Frame]) -> None:
        for f in frames:
            self.stats.events_counted += f.n_events
            self.stats.n_late_merged += f.n_late_merged

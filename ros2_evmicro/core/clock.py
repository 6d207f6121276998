"""One clock for every camera: device time -> host (ROS) time, fitted on the fly, and playback pacing.

Every driver pairs each packet's first sensor timestamp (``dev_us``, device clock, microseconds) with the host
time the packet arrived (``host_ns``). The arrival is the true mapped time plus a non-negative transfer delay
(USB, driver queues) with heavy-tailed jitter, so an ordinary least-squares fit is biased late and noisy.
:class:`ClockSync` instead fits the *lower envelope* of the pairs::

    host_ns = dev_us * 1000 + offset_ns(dev_us),    offset_ns(d) = a + b * (d - d_ref)

over a sliding window: the window is cut into bins along device time, the minimum offset of each bin is taken
(the least-delayed packet of that bin), and a line is fitted through those minima (``b`` is the drift in ns per
us, i.e. 1e-3 ns/us = 1 ppm). With fewer than two bins it falls back to the minimum offset and zero drift. The
mapping is kept monotonic: a refit never maps a later device time before an earlier mapped one. Residuals
against the fit are reported for diagnostics (and by ``evmicro sync_check`` offline).

:class:`Pacer` paces file playback on the wall clock at a ``playback_rate`` (1.0 = real time, 0 = as fast as
possible).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["ClockSync", "ClockFit", "Pacer", "fit_lower_envelope"]


@dataclass(frozen=True)
class ClockFit:
    """``host_ns = dev_us * 1000 + a_ns + b * (dev_us - ref_us)``."""

    a_ns: float
    b: float
    ref_us: int
    n_pairs: int

    @property
    def drift_ppm(self) -> float:
        return self.b * 1000.0

    def host_ns(self, dev_us) -> np.ndarray | int:
        d = np.asarray(dev_us, dtype=np.int64)
        off = self.a_ns + self.b * (d - self.ref_us)
        out = d * 1000 + np.round(off).astype(np.int64)
        return int(out) if out.ndim == 0 else out

    def dev_us(self, host_ns: int) -> int:
        """The first device time (us) whose host time is at or after ``host_ns`` (inverse of :meth:`host_ns`)."""
        host_ns = int(host_ns)
        d = int(math.ceil((host_ns - self.a_ns + self.b * self.ref_us) / (1000.0 + self.b)))
        while self.host_ns(d) < host_ns:  # float rounding: at most a step or two either way
            d += 1
        while self.host_ns(d - 1) >= host_ns:
            d -= 1
        return d


def fit_lower_envelope(dev_us: np.ndarray, host_ns: np.ndarray, n_bins: int = 8,
                       max_drift_ppm: float = 1000.0) -> ClockFit:
    """Fit the lower envelope of (device time, host arrival) pairs; see the module docstring."""
    dev = np.asarray(dev_us, dtype=np.int64)
    host = np.asarray(host_ns, dtype=np.int64)
    if dev.shape != host.shape or dev.ndim != 1 or len(dev) == 0:
        raise ValueError(f"need equally long, non-empty 1-D pairs; got {dev.shape} and {host.shape}")
    ref = int(dev[0])
    off = (host - dev * 1000).astype(np.float64)
    span = int(dev.max() - dev.min())
    if len(dev) < 4 or span <= 0:
        return ClockFit(float(off.min()), 0.0, ref, len(dev))
    edges = np.linspace(dev.min(), dev.max() + 1, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, dev, side="right") - 1, 0, n_bins - 1)
    xs, ys = [], []
    for k in range(n_bins):
        m = idx == k
        if m.any():
            j = np.flatnonzero(m)[np.argmin(off[m])]
            xs.append(float(dev[j] - ref))
            ys.append(off[j])
    if len(xs) < 2:
        return ClockFit(float(off.min()), 0.0, ref, len(dev))
    x = np.array(xs)
    y = np.array(ys)
    b, a = np.polyfit(x, y, 1)
    lim = max_drift_ppm / 1000.0
    b = float(np.clip(b, -lim, lim))
    # shift the line down so no pair lies below it (it is an envelope, not a mean)
    a = float(a + min(0.0, float(np.min(off - (a + b * (dev - ref))))))
    return ClockFit(a, b, ref, len(dev))


class ClockSync:
    """Online device -> host time mapping (see module docstring).

    ``window_s``: how much device time the fit looks back over; ``refit_every``: pairs between refits.
    """

    def __init__(self, window_s: float = 20.0, n_bins: int = 8, refit_every: int = 10,
                 max_drift_ppm: float = 1000.0):
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_us = int(window_s * 1e6)
        self.n_bins = n_bins
        self.refit_every = max(1, refit_every)
        self.max_drift_ppm = max_drift_ppm
        self.pairs: deque[tuple[int, int]] = deque()
        self.fit: ClockFit | None = None
        self._since_fit = 0
        self._last_out_ns: int | None = None
        self._last_dev_us: int | None = None

    def add(self, dev_us: int, host_ns: int) -> None:
        """Record that the packet whose first event has device time ``dev_us`` arrived at ``host_ns``."""
        dev_us, host_ns = int(dev_us), int(host_ns)
        if self.pairs and dev_us < self.pairs[-1][0] - self.window_us:
            # the device clock jumped back (camera reset, file loop): start over
            self.reset()
        self.pairs.append((dev_us, host_ns))
        while self.pairs and self.pairs[0][0] < dev_us - self.window_us:
            self.pairs.popleft()
        self._since_fit += 1
        if self.fit is None or self._since_fit >= self.refit_every or len(self.pairs) < 4:
            self.refit()

    def refit(self) -> ClockFit | None:
        if not self.pairs:
            return None
        d = np.fromiter((p[0] for p in self.pairs), dtype=np.int64, count=len(self.pairs))
        h = np.fromiter((p[1] for p in self.pairs), dtype=np.int64, count=len(self.pairs))
        self.fit = fit_lower_envelope(d, h, self.n_bins, self.max_drift_ppm)
        self._since_fit = 0
        return self.fit

    def reset(self) -> None:
        self.pairs.clear()
        self.fit = None
        self._last_out_ns = None
        self._last_dev_us = None

    def to_host_ns(self, dev_us: int) -> int:
        """Host time of device time ``dev_us`` (monotonic in ``dev_us`` across refits)."""
        if self.fit is None:
            raise ValueError("ClockSync has no pairs yet: call add() first")
        out = int(self.fit.host_ns(dev_us))
        if self._last_dev_us is not None and dev_us >= self._last_dev_us and self._last_out_ns is not None:
            out = max(out, self._last_out_ns)
        if self._last_dev_us is None or dev_us >= self._last_dev_us:
            self._last_dev_us, self._last_out_ns = int(dev_us), out
        return out

    def residuals_ns(self) -> np.ndarray:
        """Arrival minus mapped time of the pairs in the window (>= 0 up to noise: the transfer delays)."""
        if self.fit is None or not self.pairs:
            return np.zeros(0)
        d = np.array([p[0] for p in self.pairs], dtype=np.int64)
        h = np.array([p[1] for p in self.pairs], dtype=np.int64)
        return (h - self.fit.host_ns(d)).astype(np.float64)


class Pacer:
    """Wall-clock pacing of recorded data: ``wait(dev_us)`` sleeps until that device time is due.

    ``rate`` 1.0 is real time, 2.0 twice as fast, 0 no pacing. ``host_ns(dev_us)`` is the stamp the data gets:
    the start time plus the device-time offset (not divided by the rate, so stamps keep the recording's
    timing whatever the playback speed).
    """

    def __init__(self, rate: float = 1.0, clock=time.monotonic, sleep=time.sleep):
        if rate < 0:
            raise ValueError(f"playback rate must be >= 0, got {rate}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.dev0: int | None = None
        self.wall0 = 0.0

    def start(self, dev_us: int) -> None:
        self.dev0 = int(dev_us)
        self.wall0 = self.clock()

    def due_in_s(self, dev_us: int) -> float:
        if self.dev0 is None:
            self.start(dev_us)
        if self.rate == 0:
            return 0.0
        dev0 = self.dev0 if self.dev0 is not None else int(dev_us)  # start() has set it
        return self.wall0 + (int(dev_us) - dev0) / 1e6 / self.rate - self.clock()

    def wait(self, dev_us: int, max_sleep_s: float = 0.5) -> bool:
        """Sleep up to ``max_sleep_s`` towards ``dev_us``; True when it is due (call again otherwise)."""
        d = self.due_in_s(dev_us)
        if d <= 0:
            return True
        self.sleep(min(d, max_sleep_s))
        return d <= max_sleep_s

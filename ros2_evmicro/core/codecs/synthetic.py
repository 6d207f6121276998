"""Seeded synthetic event streams shaped like a real sensor's output, for codec tests and benchmarks."""

from __future__ import annotations

import numpy as np

from ros2_evmicro.core.events import EVENT_DTYPE, empty_events

__all__ = ["row_burst_events"]


def row_burst_events(
    n: int,
    width: int = 1280,
    height: int = 720,
    duration_us: int = 10_000_000,
    t0_us: int = 1_000_000,
    seed: int = 0,
    n_blobs: int = 12,
) -> np.ndarray:
    """``n`` events, sorted by time, clustered in ``n_blobs`` slowly moving Gaussian blobs.

    Like a Prophesee sensor's readout, events come in row bursts: several events with the same time,
    row and polarity and increasing x (mean burst length 3, 25 % one-pixel holes), which EVT 3.0 encodes
    as vectors. Times are uniform over ``duration_us`` from ``t0_us`` (microseconds).
    """
    n = int(n)
    if n <= 0:
        return empty_events(0)
    rng = np.random.default_rng(seed)
    lens = np.minimum(rng.geometric(1 / 3.0, n // 2 + 16), 40)
    csum = np.cumsum(lens)
    while csum[-1] < n:  # pragma: no cover - needs an extremely unlikely draw
        lens = np.concatenate([lens, lens])
        csum = np.cumsum(lens)
    n_b = int(np.searchsorted(csum, n)) + 1
    lens = lens[:n_b].copy()
    lens[-1] -= csum[n_b - 1] - n
    cx = rng.uniform(0.2, 0.8, n_blobs) * width
    cy = rng.uniform(0.2, 0.8, n_blobs) * height
    sx = rng.uniform(0.01, 0.05, n_blobs) * width
    sy = rng.uniform(0.01, 0.08, n_blobs) * height
    tb = np.sort(rng.integers(0, duration_us, n_b)) + t0_us
    c = rng.integers(0, n_blobs, n_b)
    phase = 2 * np.pi * (tb - t0_us) / max(duration_us, 1)
    bx = rng.normal(cx[c] + 0.08 * width * np.sin(phase), sx[c])
    by = rng.normal(cy[c] + 0.07 * height * np.cos(phase), sy[c])
    bx = np.clip(bx, 0, max(width - 1, 0)).astype(np.int64)
    by = np.clip(by, 0, height - 1).astype(np.int64)
    bp = rng.integers(0, 2, n_b)
    rep = np.repeat(np.arange(n_b), lens)
    first = np.cumsum(lens) - lens
    step = 1 + (rng.random(n) < 0.25)
    step[first] = 0
    cs = np.cumsum(step)
    off = cs - np.repeat(cs[first], lens)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    x = bx[rep] + off
    ev["x"] = np.where(x < width, x, width - 1)
    # a burst clipped at the right edge would repeat x = width - 1: keep x increasing by moving it left
    clipped = x >= width
    if clipped.any():
        ev["x"][clipped] = np.maximum(bx[rep][clipped] - off[clipped], 0)
    ev["y"] = by[rep]
    ev["p"] = bp[rep]
    ev["t"] = tb[rep]
    return ev

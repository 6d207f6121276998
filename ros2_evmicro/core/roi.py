"""Face region of interest of the slicer: which box applies to a window, and the crop of a count frame.

One implementation for the slicer node, the dataset builder and the offline replay evaluator, so that all three
produce the same frames.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque

import numba
import numpy as np

from ros2_evmicro.core.face import crop_resize, square_box

__all__ = ["Box", "RoiHistory", "SteadyBox", "center_box", "crop_counts", "crop_region", "hold_box"]

Box = tuple[float, float, float, float]


def center_box(width: int, height: int, fraction: float) -> Box:
    """Square box centred on a ``width`` x ``height`` sensor, side ``fraction`` of the shorter side (px)."""
    side = fraction * min(width, height)
    cx, cy = width / 2.0, height / 2.0
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


@numba.njit(cache=True, nogil=True)
def _area_sum_kernel(counts, ix0, iy0, side, out_size, out):  # pragma: no cover - compiled
    """Area downscale of the ``side`` x ``side`` square at ``(ix0, iy0)`` of ``counts`` (C, H, W) into ``out``
    (C, S, S, float64, zeroed), each output pixel the COUNT of the region it covers (fractional overlaps at the
    bin edges, as ``cv2.INTER_AREA`` times the area ratio); pixels outside the frame count as zero. Rows are
    summed into the bands of their output rows first (whole rows at a time), then each band is binned along x:
    1.7-2.0 ms -> 0.52 ms for the 560 px square of a 1280x720 frame that the node crops in bench_slicer, on the
    2-core reference VM (it used to spread every non-zero pixel over up to four output pixels).
    Needs ``side >= S``."""
    n_ch, h, w = counts.shape
    # per canvas index k: output bin j = floor(k * S / side) and the share of pixel k that falls in bin j
    # (the rest falls in bin j + 1); exact integer arithmetic for the bin edges
    bins = np.empty(side, np.int64)
    share = np.empty(side, np.float64)
    for k in range(side):
        j = (k * out_size) // side
        if (k + 1) * out_size <= (j + 1) * side or j + 1 >= out_size:
            share[k] = 1.0
        else:
            share[k] = ((j + 1) * side - k * out_size) / out_size
        bins[k] = j
    x0 = max(ix0, 0)
    y0 = max(iy0, 0)
    x1 = min(ix0 + side, w)
    y1 = min(iy0 + side, h)
    if x1 <= x0 or y1 <= y0:
        return
    # rows first: each row of the square is added (times its share) into the band of its output row, whole
    # rows at a time (contiguous, vectorised); then each of the S bands is binned along x
    nx = x1 - x0
    band = np.zeros((out_size + 1, nx), np.float64)
    for c in range(n_ch):
        band[:, :] = 0.0
        for y in range(y0, y1):
            jy = bins[y - iy0]
            wy = share[y - iy0]
            src = counts[c, y, x0:x1]
            dst = band[jy]
            if wy < 1.0:
                nxt = band[jy + 1]
                for i in range(nx):
                    v = np.float64(src[i])
                    dst[i] += v * wy
                    nxt[i] += v * (1.0 - wy)
            else:
                for i in range(nx):
                    dst[i] += np.float64(src[i])
        for jy in range(out_size):
            r = band[jy]
            o = out[c, jy]
            for i in range(nx):
                v = r[i]
                if v == 0.0:
                    continue
                k = x0 - ix0 + i
                jx = bins[k]
                wx = share[k]
                if wx < 1.0:
                    o[jx] += v * wx
                    o[jx + 1] += v * (1.0 - wx)
                else:
                    o[jx] += v

def _crop_square(box, margin: float) -> tuple[int, int, int]:
    """(ix0, iy0, side): the whole-pixel square that :func:`crop_counts` reads for ``box`` and ``margin``."""
    x0, y0, x1, y1 = square_box(box, margin)
    side = max(1, int(round(x1 - x0)))
    return int(math.floor(x0 + 0.5)), int(math.floor(y0 + 0.5)), side


def _clip_square(ix0: int, iy0: int, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The part of the square ``(ix0, iy0, side)`` inside a ``width`` x ``height`` frame, end exclusive."""
    sx0, sy0 = min(max(ix0, 0), width), min(max(iy0, 0), height)
    return sx0, sy0, max(min(ix0 + side, width), sx0), max(min(iy0 + side, height), sy0)


def crop_region(box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, end exclusive: the pixels of a ``width`` x ``height`` frame that
    :func:`crop_counts` reads for ``box`` and ``margin`` (empty when the crop lies outside the sensor). Counts
    outside it do not change the crop, so a slicer may leave them out (:meth:`Slicer.set_region`)."""
    return _clip_square(*_crop_square(box, margin), width, height)


def crop_counts(counts: np.ndarray, box, out_size: int, margin: float) -> np.ndarray:
    """:func:`~ros2_evmicro.core.face.crop_resize` of a ``(2, H, W)`` count frame, float32 ``(2, S, S)``.

    Downscaling (crop side >= ``out_size``, the usual case) runs one compiled pass over the crop square
    (:func:`_area_sum_kernel`): the same area interpolation as
    ``crop_resize`` (``cv2.INTER_AREA`` times the area ratio, equal within float32 rounding), without the
    float copies of the frame. Upscaling a small crop goes through ``crop_resize`` itself, on the part of the
    frame under the crop square only (slicing it first and shifting the box by whole pixels leaves the crop
    unchanged).
    """
    ix0, iy0, side = _crop_square(box, margin)
    counts = np.asarray(counts)
    if counts.ndim != 3:
        raise ValueError(f"count frames must be (C, H, W), got shape {counts.shape}")
    h, w = counts.shape[1:]
    sx0, sy0, sx1, sy1 = _clip_square(ix0, iy0, side, w, h)
    if sx1 <= sx0 or sy1 <= sy0:  # the crop lies outside the sensor
        return np.zeros((counts.shape[0], out_size, out_size), np.float32)
    if side >= int(out_size) and counts.dtype.kind in "uif":
        acc = np.zeros((counts.shape[0], int(out_size), int(out_size)), np.float64)
        _area_sum_kernel(counts, ix0, iy0, side, int(out_size), acc)
        return acc.astype(np.float32)
    sub = counts[:, sy0:sy1, sx0:sx1]
    b = tuple(float(v) for v in box)
    shifted = (b[0] - sx0, b[1] - sy0, b[2] - sx0, b[3] - sy0)
    return crop_resize(sub, shifted, out_size, margin, channels_first=True)


def hold_box(held: Box | None, new, deadband: float) -> Box:
    """The crop box once face box ``new`` arrives: ``held`` (the box cropped so far) while ``new`` stays within
    the dead band, else ``new``.

    ``new`` is within the dead band when its centre is less than ``deadband`` times the held box's side (its
    longer one) away from the held box's centre on each axis, and its side differs from the held side by less
    than ``deadband`` of it. ``deadband`` 0 (or no ``held`` box) always takes ``new``.

    Why: the SNN learns from crops whose box stays put over a take (the face moves inside the crop), so a crop
    that follows the head frame by frame, and late (a detector on 25 Hz frames, smoothing), turns a head
    movement into an apparent movement the other way: measured on the simulated demo, a box one detection
    late swaps head turn left and right (docs/driver_monitor.md).
    """
    b = tuple(float(v) for v in new)
    if held is None or deadband <= 0.0:
        return b  # type: ignore[return-value]
    side_h = max(held[2] - held[0], held[3] - held[1])
    side_n = max(b[2] - b[0], b[3] - b[1])
    if side_h <= 0.0:
        return b  # type: ignore[return-value]
    dx = abs((b[0] + b[2]) - (held[0] + held[2])) / 2.0
    dy = abs((b[1] + b[3]) - (held[1] + held[3])) / 2.0
    lim = deadband * side_h
    if dx < lim and dy < lim and abs(side_n - side_h) < lim:
        return held
    return b  # type: ignore[return-value]


class SteadyBox:
    """The crop box over a stream of face boxes: :func:`hold_box` with ``deadband``, re-anchored on a still
    face.

    A held box is kept while the face moves inside the dead band. When the last ``settle`` boxes agree
    within ``still`` of the held side (the face has stopped) and their mean lies more than ``still`` away
    from the held box, the crop moves to that mean. So a first box taken during start-up or mid-movement is
    not kept for good.
    """

    def __init__(self, deadband: float, settle: int = 5, still: float = 0.05) -> None:
        self.deadband = float(deadband)
        self.still = float(still)
        self.held: Box | None = None
        self._recent: deque[Box] = deque(maxlen=max(int(settle), 1))

    def update(self, box) -> Box:
        b: Box = tuple(float(v) for v in box)  # type: ignore[assignment]
        self._recent.append(b)
        held = hold_box(self.held, b, self.deadband)
        if self.deadband > 0.0 and held is self.held and len(self._recent) == self._recent.maxlen:
            side = max(held[2] - held[0], held[3] - held[1])
            arr = np.asarray(self._recent)
            if float(np.ptp(arr, axis=0).max()) < self.still * side:
                mean = arr.mean(axis=0)
                if float(np.abs(mean - np.asarray(held)).max()) > self.still * side:
                    held = tuple(float(v) for v in mean)  # type: ignore[assignment]
        self.held = held
        return held


class RoiHistory:
    """The last face boxes with their stamps (ns, message time), for choosing the box of a window.

    ``deadband`` > 0 keeps the crop box steady (:class:`SteadyBox`): each box is stored as the crop box it
    gives, under its stamp.
    """

    def __init__(self, maxlen: int = 64, deadband: float = 0.0) -> None:
        if not deadband >= 0.0:
            raise ValueError(f"deadband must be >= 0, got {deadband}")
        self._stamps: deque[int] = deque(maxlen=maxlen)
        self._boxes: deque[Box] = deque(maxlen=maxlen)
        self.steady = SteadyBox(deadband)

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, box) -> None:
        """Keep a box; one older than the newest kept (out of order) replaces nothing and is ignored."""
        if self._stamps and stamp_ns < self._stamps[-1]:
            return
        self._stamps.append(int(stamp_ns))
        self._boxes.append(self.steady.update(box))

    def at(self, t_ns: int) -> tuple[Box, int] | None:
        """(box, stamp) of the newest box stamped at or before ``t_ns``; the oldest one when all are newer."""
        if not self._stamps:
            return None
        i = max(bisect_right(self._stamps, int(t_ns)) - 1, 0)
        return self._boxes[i], self._stamps[i]

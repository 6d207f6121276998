"""Face region of interest of the slicer: which box applies to a window, and the crop of a count frame.

One implementation for the slicer node, the dataset builder and the offline replay evaluator, so that all three
produce the same frames.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque

import numpy as np

from ros2_evmicro.core.face import crop_resize, square_box

__all__ = ["Box", "RoiHistory", "center_box", "crop_counts"]

Box = tuple[float, float, float, float]


def center_box(width: int, height: int, fraction: float) -> Box:
    """Square box centred on a ``width`` x ``height`` sensor, side ``fraction`` of the shorter side (px)."""
    side = fraction * min(width, height)
    cx, cy = width / 2.0, height / 2.0
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def crop_counts(counts: np.ndarray, box, out_size: int, margin: float) -> np.ndarray:
    """:func:`~ros2_evmicro.core.face.crop_resize` of a ``(2, H, W)`` count frame, float32 ``(2, S, S)``.

    Only the part of the frame under the crop square is converted to float (a 1280x720 frame is not), by
    slicing it first and shifting the box by whole pixels, which leaves the crop unchanged.
    """
    x0, y0, x1, y1 = square_box(box, margin)
    side = max(1, int(round(x1 - x0)))
    ix0, iy0 = int(math.floor(x0 + 0.5)), int(math.floor(y0 + 0.5))
    h, w = counts.shape[1:]
    sx0, sy0 = min(max(ix0, 0), w), min(max(iy0, 0), h)
    sx1, sy1 = max(min(ix0 + side, w), sx0), max(min(iy0 + side, h), sy0)
    if sx1 <= sx0 or sy1 <= sy0:  # the crop lies outside the sensor
        return np.zeros((2, out_size, out_size), np.float32)
    sub = counts[:, sy0:sy1, sx0:sx1]
    b = tuple(float(v) for v in box)
    shifted = (b[0] - sx0, b[1] - sy0, b[2] - sx0, b[3] - sy0)
    return crop_resize(sub, shifted, out_size, margin, channels_first=True)


class RoiHistory:
    """The last face boxes with their stamps (ns, message time), for choosing the box of a window."""

    def __init__(self, maxlen: int = 64) -> None:
        self._stamps: deque[int] = deque(maxlen=maxlen)
        self._boxes: deque[Box] = deque(maxlen=maxlen)

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, box) -> None:
        """Keep a box; one older than the newest kept (out of order) replaces nothing and is ignored."""
        if self._stamps and stamp_ns < self._stamps[-1]:
            return
        self._stamps.append(int(stamp_ns))
        self._boxes.append(tuple(float(v) for v in box))  # type: ignore[arg-type]

    def at(self, t_ns: int) -> tuple[Box, int] | None:
        """(box, stamp) of the newest box stamped at or before ``t_ns``; the oldest one when all are newer."""
        if not self._stamps:
            return None
        i = max(bisect_right(self._stamps, int(t_ns)) - 1, 0)
        return self._boxes[i], self._stamps[i]

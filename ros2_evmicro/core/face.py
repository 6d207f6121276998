"""Face region of interest: detection, tracking over time, mapping between cameras, crop and resize.

* :class:`FaceDetector` - MTCNN (:mod:`ros2_evmicro.core.mtcnn`, default) or OpenCV's Haar cascade
  on a BGR or grey image; returns ``[(box, score), ...]``, best score first.
* :class:`BoxTracker` - exponential smoothing of the chosen face box over time, holding the last
  box through short detection gaps, and sticking to the same face when several are seen.
* :func:`map_box` - a box of one camera to another through a 3x3 homography (the face plane).
* :func:`crop_resize` - a square crop around a box (with margin) of an event-count frame
  ``(2, H, W)`` or an image ``(H, W[, C])``, zero-padded outside the sensor, resized to
  ``out_size`` (64 by default).
* :func:`normalize_frames` - the optional normalisation of count frames used by training.

A box is ``(x0, y0, x1, y1)`` in pixels (floats allowed), ``x1``/``y1`` exclusive, in the image's
own pixel coordinates. Calibration files are read and written by :mod:`ros2_evmicro.core.calib`
(re-exported here as :func:`load_calibration` and :func:`save_calibration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from ros2_evmicro.core.calib import load_calibration, save_calibration

__all__ = [
    "BOX_CONVENTIONS",
    "FACE_OVAL_ADAPTERS",
    "BoxAdapter",
    "BoxTracker",
    "FaceDetector",
    "FaceError",
    "box_iou",
    "crop_resize",
    "load_calibration",
    "map_box",
    "normalize_frames",
    "save_calibration",
    "square_box",
]

Box = tuple[float, float, float, float]


class FaceError(ValueError):
    """Bad input to the face ROI functions (box, image shape, homography, parameters)."""


def _as_box(box) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise FaceError(f"a box is 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    if b[2] <= b[0] or b[3] <= b[1]:
        raise FaceError(f"box {tuple(b)} is empty: need x1 > x0 and y1 > y0")
    return b


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (continuous areas)."""
    a = _as_box(a)
    b = _as_box(b)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def square_box(box, margin: float = 0.2) -> Box:
    """The square crop of a face box: side = longer side x (1 + margin), same centre."""
    b = _as_box(box)
    if margin < 0:
        raise FaceError(f"margin must be >= 0, got {margin}")
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    side = max(b[2] - b[0], b[3] - b[1]) * (1.0 + margin)
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


# ---------------------------------------------------------------------------------------------
# crop and normalise
# ---------------------------------------------------------------------------------------------


def crop_resize(
    data: np.ndarray,
    box,
    out_size: int = 64,
    margin: float = 0.2,
    *,
    channels_first: bool | None = None,
    preserve_sum: bool | None = None,
) -> np.ndarray:
    """Square crop around ``box`` (plus ``margin``), zero-padded outside the sensor, resized.

    The crop is the square of side ``max(w, h) * (1 + margin)`` centred on the box (see
    :func:`square_box`), snapped to whole pixels. Parts of it outside the image are zeros, so a
    face at the border stays centred and keeps its scale. Resizing uses area interpolation
    (``cv2.INTER_AREA``: each output pixel is the mean of the input pixels it covers).

    Event-count frames ``(2, H, W)`` (channel 0 OFF, 1 ON): the result is float32 ``(2, out_size,
    out_size)`` and, by default (``preserve_sum``), the area means are multiplied by the area ratio
    ``(side / out_size)**2`` so that each output pixel holds the event COUNT of the region it
    covers: the total over the crop is kept (exactly when ``side`` is a multiple of ``out_size``,
    within a fraction of a percent otherwise; when upscaling a small crop the counts are spread).
    Images ``(H, W)`` or ``(H, W, C)``: the result keeps the input's dtype and layout and holds
    area means (``preserve_sum`` False).

    Args:
        data: ``(2, H, W)`` count frame, or ``(H, W)`` / ``(H, W, C)`` image.
        box: face box ``(x0, y0, x1, y1)`` in pixels of ``data``.
        out_size: side of the output in pixels.
        margin: extra fraction of the box's longer side added around it (0.2 = 10 % each side).
        channels_first: force the layout; None = ``(2, H, W)`` is channels first, anything else
            is an image.
        preserve_sum: see above; None = True for channels-first count frames, False for images.
    """
    data = np.asarray(data)
    if int(out_size) != out_size or out_size < 1:
        raise FaceError(f"out_size must be a positive integer, got {out_size}")
    out_size = int(out_size)
    if channels_first is None:
        channels_first = data.ndim == 3 and data.shape[0] == 2
    if channels_first:
        if data.ndim != 3:
            raise FaceError(f"channels-first data must be (C, H, W), got shape {data.shape}")
        img = np.moveaxis(data, 0, -1).astype(np.float32, copy=False)
    elif data.ndim in (2, 3):
        img = data
    else:
        raise FaceError(f"expected a (2, H, W) count frame or an (H, W[, C]) image, got shape {data.shape}")
    if preserve_sum is None:
        preserve_sum = bool(channels_first)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = square_box(box, margin)
    side = max(1, int(round(x1 - x0)))
    ix0 = int(math.floor(x0 + 0.5))
    iy0 = int(math.floor(y0 + 0.5))
    canvas = np.zeros((side, side, *img.shape[2:]), dtype=img.dtype)
    sx0, sy0 = max(ix0, 0), max(iy0, 0)
    sx1, sy1 = min(ix0 + side, w), min(iy0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy0 : sy1 - iy0, sx0 - ix0 : sx1 - ix0] = img[sy0:sy1, sx0:sx1]
    if side == out_size:
        out = canvas.copy()
    else:
        src = canvas
        if src.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
            src = src.astype(np.float32)
        n_ch = src.shape[2] if src.ndim == 3 else 1
        if n_ch > 4:  # cv2.resize handles up to 512 channels, but keep to well-trodden paths
            out = np.stack(
                [cv2.resize(src[..., c], (out_size, out_size), interpolation=cv2.INTER_AREA) for c in range(n_ch)],
                axis=-1,
            )
        else:
            out = cv2.resize(src, (out_size, out_size), interpolation=cv2.INTER_AREA)
        if src.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
            out = out[..., None]
    if preserve_sum:
        out = out.astype(np.float32) * np.float32((side / out_size) ** 2)
    if channels_first:
        return np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=np.float32)
    return out.astype(data.dtype, copy=False) if not preserve_sum else out


def normalize_frames(
    frames: np.ndarray, mode: str = "none", *, clip_value: float = 10.0, eps: float = 1e-6
) -> np.ndarray:
    """Normalise count frames ``(..., 2, H, W)`` for training; returns float32, same shape.

    Modes (each frame = the last three axes, both channels together):

    * ``'none'``: counts as they are (float32).
    * ``'max'``: divided by the frame's maximum, so in [0, 1] (an empty frame stays 0).
    * ``'log1p'``: ``log(1 + count)``, compresses bursts (edges of a head movement).
    * ``'clip'``: ``min(count, clip_value) / clip_value``, in [0, 1].
    """
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim < 3:
        raise FaceError(f"frames must be (..., C, H, W), got shape {x.shape}")
    if mode == "none":
        return x.copy() if x is frames else x
    if mode == "max":
        m = x.max(axis=(-3, -2, -1), keepdims=True) if x.size else np.zeros(x.shape[:-3] + (1, 1, 1), np.float32)
        return np.where(m > eps, x / np.maximum(m, eps), 0.0).astype(np.float32)
    if mode == "log1p":
        return np.log1p(np.maximum(x, 0.0)).astype(np.float32)
    if mode == "clip":
        if not clip_value > 0:
            raise FaceError(f"clip_value must be > 0, got {clip_value}")
        return (np.minimum(np.maximum(x, 0.0), clip_value) / np.float32(clip_value)).astype(np.float32)
    raise FaceError(f"normalisation mode must be 'none', 'max', 'log1p' or 'clip', got {mode!r}")


# ---------------------------------------------------------------------------------------------
# camera-to-camera mapping
# ---------------------------------------------------------------------------------------------


def map_box(box, H: np.ndarray, width: int | None = None, height: int | None = None) -> Box:
    """Map a box through a 3x3 homography: transform the 4 corners, take their bounding box.

    With ``width``/``height`` of the target image, the result is clipped to it (and FaceError is
    raised when nothing of the box lands inside).
    """
    b = _as_box(box)
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3) or not np.all(np.isfinite(H)):
        raise FaceError(f"a homography is a finite 3x3 matrix, got shape {H.shape}")
    corners = np.array([[b[0], b[1], 1], [b[2], b[1], 1], [b[2], b[3], 1], [b[0], b[3], 1]], dtype=np.float64)
    p = corners @ H.T
    if np.any(p[:, 2] <= 1e-12):
        raise FaceError("the homography maps the box to or behind the horizon (w <= 0)")
    xy = p[:, :2] / p[:, 2:3]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    if width is not None and height is not None:
        x0, x1 = np.clip([x0, x1], 0, width)
        y0, y1 = np.clip([y0, y1], 0, height)
        if x1 <= x0 or y1 <= y0:
            raise FaceError(f"mapped box lies outside the {width}x{height} target image")
    return (float(x0), float(y0), float(x1), float(y1))


# ---------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------


BOX_CONVENTIONS = ("face_oval", "detector")


@dataclass(frozen=True)
class BoxAdapter:
    """Maps a detector's box to the face-oval box: the centre moves by ``shift_x`` of the box width and
    ``shift_y`` of its height, the width scales by ``scale_w``, the height by ``scale_h``."""

    shift_x: float
    shift_y: float
    scale_w: float
    scale_h: float

    def apply(self, box) -> Box:
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2 + self.shift_x * w, (y0 + y1) / 2 + self.shift_y * h
        w, h = w * self.scale_w, h * self.scale_h
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


FACE_OVAL_ADAPTERS: dict[str, BoxAdapter] = {
    "mtcnn": BoxAdapter(0.009, 0.036, 1.070, 1.022),
    "haar": BoxAdapter(0.0, 0.0, 1.0, 1.0),
}
"""Per detector, the median map from its box to the simulator's true face-oval box, fitted on 12 simulated
subjects seen by the DAVIS346 APS and the webcam (203 MTCNN detections, 2026-11-28; docs/driver_monitor.md):
MTCNN frames the face from the brows down and a little narrow. The SNN is sensitive to this framing: on the
simulated demo, raw MTCNN boxes shortened the long blinks' eye closures to a third, the adapted boxes restore
them. Haar (the fallback) stays raw: its median map (centre +4.6 % of the height, width x0.82 over 190
detections) lowered the overlap with the true box on held-out subjects, its framing varies too much between
faces for one map."""


class FaceDetector:
    """Face detector on BGR or grey images.

    Args:
        method: ``'mtcnn'`` (facenet-pytorch's weights, see :mod:`ros2_evmicro.core.mtcnn`) or
            ``'haar'`` (OpenCV's frontal-face Haar cascade, no torch needed).
        min_face_px: smallest face side searched for (pixels).
        device: torch device for MTCNN.
        score_threshold: detections below this score are dropped. MTCNN scores are O-Net
            probabilities; Haar scores are the cascade's level weight squashed by a logistic
            (``1 / (1 + exp(-w))``), a ranking, not a probability.
        mtcnn_thresholds: the three stage thresholds of MTCNN.
        num_threads: torch threads while detecting (MTCNN; see :class:`~ros2_evmicro.core.mtcnn.MTCNN`).

        convention: ``'face_oval'`` (default): each box is mapped from the detector's own framing to the
            project's face box, the face oval from hairline to chin and cheek to cheek (the box the simulator's
            ground truth, its generated sessions and so the shipped models' training crops use), with the
            detector's :data:`FACE_OVAL_ADAPTERS` entry; ``'detector'``: the detector's raw box.

    ``detect(image)`` returns ``[(box, score), ...]`` sorted by score, best first; ``box`` is a
    tuple ``(x0, y0, x1, y1)`` of floats clipped to the image.
    """

    def __init__(
        self,
        method: str = "mtcnn",
        min_face_px: int = 20,
        device: str = "cpu",
        *,
        score_threshold: float = 0.0,
        mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        num_threads: int | None = 1,
        weights_dir=None,
        convention: str = "face_oval",
    ) -> None:
        if method not in ("mtcnn", "haar"):
            raise FaceError(f"face detection method must be 'mtcnn' or 'haar', got {method!r}")
        if convention not in BOX_CONVENTIONS:
            raise FaceError(f"box convention must be one of {BOX_CONVENTIONS}, got {convention!r}")
        self.convention = convention
        if int(min_face_px) < 12:
            raise FaceError(f"min_face_px must be >= 12, got {min_face_px}")
        self.method = method
        self.min_face_px = int(min_face_px)
        self.score_threshold = float(score_threshold)
        if method == "mtcnn":
            from ros2_evmicro.core.mtcnn import MTCNN

            self._mtcnn = MTCNN(
                min_face_size=self.min_face_px,
                thresholds=mtcnn_thresholds,
                device=device,
                weights_dir=weights_dir,
                num_threads=num_threads,
            )
        else:
            # cv2.data ships with opencv-python but is missing from its type stubs
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():
                raise FaceError(f"could not load OpenCV's Haar cascade {path} (opencv 4.x ships it)")

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Faces in a BGR ``(H, W, 3)``, BGRA or grey ``(H, W)`` uint8 image, best score first."""
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            gray = image
        elif image.ndim == 3 and image.shape[2] in (3, 4):
            gray = None
        else:
            raise FaceError(f"expected a BGR (H, W, 3) or grey (H, W) image, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise FaceError(f"expected a uint8 image, got {image.dtype}")
        h, w = image.shape[:2]
        if min(h, w) < 12:
            return []
        out: list[tuple[Box, float]] = []
        if self.method == "mtcnn":
            if gray is not None:
                rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
            elif image.shape[2] == 4:
                rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
            else:
                rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            boxes, scores, _ = self._mtcnn.detect(rgb)
            for b, s in zip(boxes, scores, strict=True):
                out.append(((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(s)))
        else:
            if gray is None:
                code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
                gray = cv2.cvtColor(image, code)
            gray = cv2.equalizeHist(gray)
            rects, _, weights = self._haar.detectMultiScale3(
                gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_face_px,) * 2, outputRejectLevels=True
            )
            for (x, y, bw, bh), wt in zip(
                np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1), strict=True
            ):
                out.append(((float(x), float(y), float(x + bw), float(y + bh)), float(1.0 / (1.0 + math.exp(-wt)))))
        if self.convention == "face_oval":
            out = [(FACE_OVAL_ADAPTERS[self.method].apply(b), s) for b, s in out]
        clipped = []
        for (x0, y0, x1, y1), s in out:
            x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
            y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
            if x1 > x0 and y1 > y0 and s >= self.score_threshold:
                clipped.append(((x0, y0, x1, y1), s))
        clipped.sort(key=lambda d: -d[1])
        return clipped


# ---------------------------------------------------------------------------------------------
# tracking
# ---------------------------------------------------------------------------------------------


@dataclass
class TrackState:
    """What the tracker holds: the smoothed box, frames since the last match, matches so far."""

    box: Box | None = None
    missed: int = 0
    hits: int = 0


class BoxTracker:
    """Follows one face over time: picks it, smooths its box, holds it through short misses.

    Each :meth:`update` takes the detections of one frame (``[(box, score), ...]``):

    * no face yet: the largest detection (area x score) starts the track;
    * tracking: the detection overlapping the track most (IoU >= ``iou_gate``) is the same face,
      and the box moves to ``alpha * new + (1 - alpha) * old`` (corner-wise exponential smoothing,
      ``alpha`` = 1 follows the detector exactly); other faces are ignored;
    * no matching detection: the last box is held for up to ``hold_frames`` frames, after which
      the track is dropped (and the next update picks the largest face again).

    Returns the current box, or None when there is no track.
    """

    def __init__(self, alpha: float = 0.5, hold_frames: int = 10, iou_gate: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise FaceError(f"alpha must be in (0, 1], got {alpha}")
        if int(hold_frames) < 0:
            raise FaceError(f"hold_frames must be >= 0, got {hold_frames}")
        if not 0 <= iou_gate <= 1:
            raise FaceError(f"iou_gate must be in [0, 1], got {iou_gate}")
        self.alpha = float(alpha)
        self.hold_frames = int(hold_frames)
        self.iou_gate = float(iou_gate)
        self.state = TrackState()

    @property
    def box(self) -> Box | None:
        return self.state.box

    def reset(self) -> None:
        self.state = TrackState()

    def update(self, detections) -> Box | None:
        """Feed one frame's detections; return the tracked (smoothed) box or None."""
        dets = [(_as_box(b), float(s)) for b, s in detections]
        st = self.state
        if st.box is None:
            if not dets:
                return None
            best = max(dets, key=lambda d: (d[0][2] - d[0][0]) * (d[0][3] - d[0][1]) * max(d[1], 1e-6))
            st.box = cast(Box, tuple(float(v) for v in best[0]))
            st.missed = 0
            st.hits = 1
            return st.box
        match, best_iou = None, -1.0
        for b, _ in dets:
            iou = box_iou(st.box, b)
            if iou > best_iou:
                match, best_iou = b, iou
        if match is not None and best_iou >= self.iou_gate:
            old = np.asarray(st.box)
            st.box = cast(Box, tuple(float(v) for v in self.alpha * match + (1 - self.alpha) * old))
            st.missed = 0
            st.hits += 1
            return st.box
        st.missed += 1
        if st.missed > self.hold_frames:
            self.reset()
            return self.update(dets) if dets else None
        return st.box

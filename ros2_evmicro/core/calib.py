"""Rig calibration: camera intrinsics from chessboards, face-plane homographies, the YAML file.

* Frame cameras (DAVIS346 APS, webcam): :func:`find_chessboard` on each image, then
  :func:`calibrate_intrinsics` (``cv2.calibrateCamera``).
* Event cameras (EVK4, DAVIS events): show a BLINKING chessboard (a screen alternating the
  pattern with a uniform grey or its inverse). Pixels of the squares that change emit events,
  the others do not, so the per-pixel event count accumulated over a few blinks is an image of the
  chessboard: :func:`blink_image` makes it, then the same corner detection applies.
* Between two cameras looking at the face: the homography of the face plane, fitted on the
  same chessboard's corners seen by both (:func:`homography_from_corners`), maps face boxes from one
  camera to the other (:func:`ros2_evmicro.core.face.map_box`).

The YAML file the nodes read (``save_calibration`` / ``load_calibration``)::

    cameras:
      davis: {width: 346, height: 260, K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], D: [k1, k2, p1, p2, k3]}
      evk4: {width: 1280, height: 720, K: ..., D: ...}
    homographies:
      davis->evk4: [[...], [...], [...]]    # x_evk4 ~ H @ x_davis (pixels, homogeneous)
      webcam->evk4: ...

This module imports numpy, OpenCV and PyYAML only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

__all__ = [
    "CalibError",
    "Calibration",
    "CameraIntrinsics",
    "blink_image",
    "board_points",
    "calibrate_intrinsics",
    "find_chessboard",
    "homography_from_corners",
    "load_calibration",
    "save_calibration",
]


class CalibError(ValueError):
    """Calibration input or file is unusable (no corners, too few views, malformed YAML)."""


@dataclass
class CameraIntrinsics:
    """Pinhole intrinsics of one camera: size (pixels), K (3x3), D (OpenCV distortion), fit error."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    rms_px: float | None = None
    n_views: int | None = None

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if self.K.shape != (3, 3):
            raise CalibError(f"K must be 3x3, got shape {self.K.shape}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CalibError(f"image size must be positive, got {self.width}x{self.height}")
        self.width = int(self.width)
        self.height = int(self.height)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    def to_dict(self) -> dict:
        d = {"width": self.width, "height": self.height, "K": self.K.tolist(), "D": self.D.tolist()}
        if self.rms_px is not None:
            d["rms_px"] = float(self.rms_px)
        if self.n_views is not None:
            d["n_views"] = int(self.n_views)
        return d


@dataclass
class Calibration:
    """A rig: intrinsics per camera and face-plane homographies keyed ``'src->dst'``."""

    cameras: dict[str, CameraIntrinsics] = field(default_factory=dict)
    homographies: dict[str, np.ndarray] = field(default_factory=dict)

    def homography(self, src: str, dst: str) -> np.ndarray:
        """``H`` with ``x_dst ~ H x_src``; uses the inverse of ``dst->src`` when only that is stored."""
        if src == dst:
            return np.eye(3)
        key, inv = f"{src}->{dst}", f"{dst}->{src}"
        if key in self.homographies:
            return self.homographies[key]
        if inv in self.homographies:
            H = np.linalg.inv(self.homographies[inv])
            return H / H[2, 2]
        raise CalibError(f"no homography {key} (or {inv}) in the calibration; have {sorted(self.homographies)}")


# ---------------------------------------------------------------------------------------------
# corners and intrinsics
# ---------------------------------------------------------------------------------------------


def board_points(pattern: tuple[int, int], square_size: float = 1.0) -> np.ndarray:
    """3-D inner-corner coordinates ``(cols*rows, 3)`` of a chessboard on z = 0, OpenCV's order."""
    cols, rows = int(pattern[0]), int(pattern[1])
    if cols < 2 or rows < 2:
        raise CalibError(f"pattern counts INNER corners (cols, rows), each >= 2; got {pattern}")
    g = np.zeros((rows * cols, 3), np.float32)
    g[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_size
    return g


def _gray8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if img.ndim != 2:
        raise CalibError(f"expected a grey (H, W) or BGR (H, W, 3) image, got shape {np.shape(image)}")
    if img.dtype != np.uint8:
        # cv2 stubs demand a dst array; None (allocate one) is valid at run time
        img = cv2.normalize(img.astype(np.float32), None, 0, 255,  # type: ignore[call-overload]
                            cv2.NORM_MINMAX).astype(np.uint8)
    return img


def find_chessboard(
    image: np.ndarray, pattern: tuple[int, int], subpix: bool = True, canonical: bool = True
) -> np.ndarray | None:
    """Inner corners ``(cols*rows, 2)`` float32 of a chessboard in an image, or None when not found.

    OpenCV may return the corners of a board in either of two opposite orders (a 180 degree
    ambiguity, which depends on the image's contrast, e.g. an APS image versus a blink image). With
    ``canonical`` the order is fixed so that the first corner is the one nearer the image's top-left
    (smaller ``x + y``), which makes the orders of two cameras agree while the board is seen upright
    (in-plane rotation under 90 degrees) by both: required for :func:`homography_from_corners`.
    """
    gray = _gray8(image)
    size = (int(pattern[0]), int(pattern[1]))
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, size, flags=flags)
    if found:
        if subpix:
            crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
            corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), crit)
    else:
        found, corners = cv2.findChessboardCornersSB(gray, size)
        if not found:
            return None
    c = corners.reshape(-1, 2).astype(np.float32)
    if canonical and c[-1].sum() < c[0].sum():
        c = np.ascontiguousarray(c[::-1])
    return c


def calibrate_intrinsics(
    images: Iterable[np.ndarray],
    pattern: tuple[int, int],
    square_size: float = 1.0,
    *,
    min_views: int = 3,
    flags: int = 0,
) -> CameraIntrinsics:
    """Intrinsics from chessboard views (``cv2.calibrateCamera``); images where no board is found are skipped.

    Raises CalibError when fewer than ``min_views`` images show the whole board.
    """
    obj = board_points(pattern, square_size)
    obj_pts, img_pts, size = [], [], None
    for img in images:
        img = np.asarray(img)
        s = (img.shape[1], img.shape[0])
        if size is None:
            size = s
        elif s != size:
            raise CalibError(f"all calibration images must have one size; got {s} after {size}")
        c = find_chessboard(img, pattern)
        if c is not None:
            obj_pts.append(obj)
            img_pts.append(c.reshape(-1, 1, 2))
    if len(img_pts) < min_views:
        raise CalibError(
            f"chessboard {pattern} found in {len(img_pts)} image(s), need at least {min_views}: show the whole "
            "board, at several angles, well lit (or blinking, for an event camera)"
        )
    if size is None:
        raise CalibError(f"no calibration image given (min_views={min_views})")
    rms, K, D, _, _ = cv2.calibrateCamera(obj_pts, img_pts, size, None, None, flags=flags)
    return CameraIntrinsics(size[0], size[1], K, D.reshape(-1), rms_px=float(rms), n_views=len(img_pts))


def blink_image(
    frames: np.ndarray,
    *,
    percentile: float = 99.0,
    blur_px: int = 3,
) -> np.ndarray:
    """uint8 image of a blinking pattern from event count frames.

    ``frames`` is one ``(2, H, W)`` count frame, a stack ``(N, 2, H, W)`` or an ``(H, W)`` count
    map; ON and OFF counts are added up over all frames (a blink gives ON when the square
    brightens, OFF when it darkens). The count map is median-filtered (``blur_px``, hot pixels and
    noise), scaled so that its ``percentile`` maps to 255, and returned as uint8: squares that
    blink are bright, the others dark, ready for :func:`find_chessboard`.
    """
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim == 4:
        f = f.sum(axis=(0, 1))
    elif f.ndim == 3:
        f = f.sum(axis=0)
    elif f.ndim != 2:
        raise CalibError(f"expected (H, W), (2, H, W) or (N, 2, H, W) counts, got shape {f.shape}")
    hi = float(np.percentile(f, percentile)) if f.size else 0.0
    if hi <= 0:
        return np.zeros(f.shape, np.uint8)
    img = np.clip(f * (255.0 / hi), 0, 255).astype(np.uint8)
    if blur_px and blur_px > 1:
        img = cv2.medianBlur(img, int(blur_px) | 1)
    return img


def homography_from_corners(src_pts: np.ndarray, dst_pts: np.ndarray, *, ransac_px: float | None = 3.0) -> np.ndarray:
    """3x3 homography ``x_dst ~ H x_src`` from matched points ``(N, 2)`` (N >= 4), normalised ``H[2,2] = 1``."""
    src = np.asarray(src_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 4:
        raise CalibError(f"need >= 4 matched points of equal count, got {len(src)} and {len(dst)}")
    method = cv2.RANSAC if ransac_px else 0
    H, _ = cv2.findHomography(src, dst, method, ransac_px or 3.0)
    if H is None:
        raise CalibError("cv2.findHomography failed (points degenerate, e.g. all on one line)")
    return H / H[2, 2]


# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------


def save_calibration(
    path: str | Path,
    cameras: Mapping[str, CameraIntrinsics | Mapping] | Calibration,
    homographies: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write the rig's YAML (see the module docstring); returns the path."""
    if isinstance(cameras, Calibration):
        homographies = cameras.homographies if homographies is None else homographies
        cameras = cameras.cameras
    cams = {}
    for name, cam in (cameras or {}).items():
        if not isinstance(cam, CameraIntrinsics):
            cam = _camera_from_dict(name, cam)
        cams[str(name)] = cam.to_dict()
    homs = {}
    for key, H in (homographies or {}).items():
        _split_key(key)
        H = np.asarray(H, dtype=np.float64)
        if H.shape != (3, 3):
            raise CalibError(f"homography {key} must be 3x3, got shape {H.shape}")
        homs[str(key)] = H.tolist()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"cameras": cams, "homographies": homs}, sort_keys=True))
    return path


def _split_key(key: str) -> tuple[str, str]:
    parts = str(key).split("->")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise CalibError(f"homography keys are 'src->dst', got {key!r}")
    return parts[0].strip(), parts[1].strip()


def _camera_from_dict(name: str, d) -> CameraIntrinsics:
    try:
        return CameraIntrinsics(
            width=d["width"],
            height=d["height"],
            K=d["K"],
            D=d.get("D", [0, 0, 0, 0, 0]),
            rms_px=d.get("rms_px"),
            n_views=d.get("n_views"),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CalibError(f"camera {name!r}: needs width, height, K (3x3) and optional D: {err}") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read the rig's YAML (see the module docstring)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CalibError(f"could not read calibration {path}: {err}") from None
    if not isinstance(data, dict):
        raise CalibError(f"calibration {path} must be a mapping with 'cameras' and/or 'homographies'")
    cams = {str(n): _camera_from_dict(n, d) for n, d in (data.get("cameras") or {}).items()}
    homs = {}
    for key, H in (data.get("homographies") or {}).items():
        src, dst = _split_key(key)
        try:
            H = np.asarray(H, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise CalibError(f"{path}: homography {key} is not numeric: {err}") from None
        if H.shape != (3, 3):
            raise CalibError(f"{path}: homography {key} must be 3x3, got shape {H.shape}")
        homs[f"{src}->{dst}"] = H
    return Calibration(cams, homs)

"""Face detector node: ``image_raw`` (mono8 DAVIS APS frames, or a bgr8 webcam) -> ``face_roi``.

Each image goes through :class:`~ros2_evmicro.core.face.FaceDetector` (MTCNN, or OpenCV's Haar cascade;
MTCNN falls back to Haar with a WARN when its weights are missing) on a copy downscaled to
``detect_width_px`` (a 1080p webcam at 60 fps is too heavy otherwise), boxes scaled back to full pixels, then
:class:`~ros2_evmicro.core.face.BoxTracker` smooths the box and holds it through short misses. The detector
runs on every ``detect_every_n``-th image and at most ``max_rate_hz`` times per second of image time; the
tracked box is published for every image while a track exists, as ``face_roi`` (PolygonStamped: 4 corners,
pixels of this camera, ``header`` = the image's stamp and frame_id).

With ``map_to`` (e.g. ``evk4``) the box is also mapped through the face-plane homography
``<camera>-><map_to>`` of ``calibration_file`` (made by ``evmicro calib homography``) and published as
``face_roi_<map_to>`` in that camera's pixels (clipped to its size when the file knows it). ``map_to``
without a calibration file is an error at start-up. ``calibration_file: sim`` uses the simulated rig's
geometry (:func:`ros2_evmicro.core.sim.sensors.default_geometry`, face plane at 0.8 m; the simulated
subject's head sits within 4 % of that depth, which shifts the mapped box by a few pixels).
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
from geometry_msgs.msg import PolygonStamped
from sensor_msgs.msg import Image

from ros2_evmicro.core.calib import CalibError, load_calibration
from ros2_evmicro.core.face import BoxTracker, FaceDetector, FaceError, map_box
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.ros.convert import box_to_polygon, image_from_msg, stamp_to_ns
from ros2_evmicro.ros.node import FRAMES_QOS, SENSOR_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.face_detector import SPEC

__all__ = ["FaceDetectorNode", "detect_scaled", "load_mapping", "main", "make_detector"]

SIM_FACE_DEPTH_M = 0.8
"""Face-plane depth of ``calibration_file: sim`` (the simulated rig's default subject distance)."""

Box = tuple[float, float, float, float]


# ---------------------------------------------------------------------------------------------
# pure helpers (no ROS types)
# ---------------------------------------------------------------------------------------------


def make_detector(method: str, min_face_px: int, num_threads: int = 1,
                  weights_dir: str | None = None, convention: str = "face_oval") -> tuple[FaceDetector, str]:
    """(detector, warning): MTCNN, or Haar with a warning saying why when MTCNN cannot be loaded."""
    if method == "mtcnn":
        try:
            return FaceDetector("mtcnn", min_face_px, num_threads=num_threads, weights_dir=weights_dir,
                                convention=convention), ""
        except (ImportError, OSError, RuntimeError) as err:  # MtcnnError is a RuntimeError
            why = f"MTCNN unavailable ({err}); using OpenCV's Haar cascade"
            return FaceDetector("haar", min_face_px, convention=convention), why
    return FaceDetector(method, min_face_px, convention=convention), ""


def detect_scaled(detector: FaceDetector, image: np.ndarray, detect_width_px: int) -> list[tuple[Box, float]]:
    """Detect on ``image`` downscaled to ``detect_width_px`` wide (when wider; 0 = never), boxes in full pixels."""
    w = image.shape[1]
    if detect_width_px <= 0 or w <= detect_width_px:
        return detector.detect(image)
    s = detect_width_px / w
    small = cv2.resize(image, (detect_width_px, max(1, int(round(image.shape[0] * s)))),
                       interpolation=cv2.INTER_AREA)
    sx, sy = w / small.shape[1], image.shape[0] / small.shape[0]
    return [((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), score) for b, score in detector.detect(small)]


def load_mapping(camera: str, map_to: str, calibration_file: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(homography ``camera -> map_to``, target (width, height) or None) for ``map_to``.

    Raises ParamError with what to do when the file is missing, unreadable or lacks the homography.
    """
    if not calibration_file:
        raise ParamError(
            f"map_to={map_to!r} needs calibration_file: a rig calibration YAML holding the homography "
            f"{camera}->{map_to} (make it with `evmicro calib homography --src {camera} --dst {map_to} "
            f"--src-images A --dst-images B --out rig.yaml`), or 'sim' for the simulated rig"
        )
    if calibration_file == "sim":
        from ros2_evmicro.core.sim.sensors import default_geometry, homography

        geo = default_geometry()
        for c in (camera, map_to):
            if c not in geo:
                raise ParamError(f"calibration_file 'sim' knows the cameras {sorted(geo)}, not {c!r}")
        H = homography(geo[camera], geo[map_to], SIM_FACE_DEPTH_M)
        return H, (geo[map_to].width, geo[map_to].height)
    if not Path(calibration_file).is_file():
        raise ParamError(f"calibration_file {calibration_file} does not exist (needed for map_to={map_to!r})")
    try:
        cal = load_calibration(calibration_file)
        H = cal.homography(camera, map_to)
    except CalibError as err:
        raise ParamError(f"calibration_file {calibration_file}: {err}") from None
    cam = cal.cameras.get(map_to)
    return H, ((cam.width, cam.height) if cam is not None else None)


def _as_bgr_or_grey(msg: Image) -> np.ndarray:
    img = image_from_msg(msg)
    enc = msg.encoding
    if enc in ("mono8", "bgr8", "bgra8"):
        return img
    if enc == "rgb8":
        return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    raise ValueError(f"image encoding {enc!r} is not supported by the face detector (mono8, bgr8, rgb8, bgra8)")


# ---------------------------------------------------------------------------------------------
# node
# ---------------------------------------------------------------------------------------------


class FaceDetectorNode(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.p
        self.camera = p.camera or self.get_namespace().strip("/").split("/")[-1]
        self.H: np.ndarray | None = None
        self.map_size: tuple[int, int] | None = None
        if p.map_to:
            if not self.camera:
                raise ParamError(f"map_to={p.map_to!r} needs this camera's name: set the parameter camera (e.g. "
                                 "davis, webcam) or run the node in the camera's namespace")
            self.H, self.map_size = load_mapping(self.camera, p.map_to, p.calibration_file)
        self.detector, why = make_detector(p.method, p.min_face_px, p.num_threads, p.mtcnn_weights_dir or None,
                                           p.box_convention)
        self.method = self.detector.method
        if why:
            self.get_logger().warning(why)
            self.diag.status("WARN", why)
        else:
            self.diag.status("OK", f"detecting faces with {self.method}")
        self.diag.set("method", self.method)
        self.tracker = BoxTracker(p.tracker_alpha, p.hold_frames, p.iou_gate)
        self.n_images = 0
        self.last_detect_ns: int | None = None
        self.det_ms: deque[float] = deque(maxlen=1000)
        self.last_box: Box | None = None
        self.pub_roi = self.create_publisher(PolygonStamped, "face_roi", FRAMES_QOS)
        self.pub_mapped = (self.create_publisher(PolygonStamped, f"face_roi_{p.map_to}", FRAMES_QOS)
                           if p.map_to else None)
        self.sub = self.create_subscription(Image, "image_raw", self.guard(self.on_image, "image"), SENSOR_QOS)

    def on_parameters_changed(self, changed: dict) -> None:
        if {"tracker_alpha", "hold_frames", "iou_gate"} & set(changed):
            p = self.p
            self.tracker.alpha, self.tracker.hold_frames, self.tracker.iou_gate = (
                float(p.tracker_alpha), int(p.hold_frames), float(p.iou_gate))

    def _due(self, stamp_ns: int) -> bool:
        """Whether the detector runs on this image (every n-th, and max_rate_hz in image time)."""
        p = self.p
        if (self.n_images - 1) % p.detect_every_n:
            return False
        if p.max_rate_hz > 0 and self.last_detect_ns is not None:
            # 5 % slack: 30 fps stamps are 33.3 ms apart, which must pass a 15 Hz limit every other image
            if stamp_ns - self.last_detect_ns < 0.95e9 / p.max_rate_hz and stamp_ns >= self.last_detect_ns:
                return False
        return True

    def on_image(self, msg: Image) -> None:
        img = _as_bgr_or_grey(msg)
        stamp_ns = stamp_to_ns(msg.header.stamp)
        self.n_images += 1
        d = self.diag
        d.count("images")
        if self._due(stamp_ns):
            self.last_detect_ns = stamp_ns
            t0 = time.perf_counter()
            dets = detect_scaled(self.detector, img, self.p.detect_width_px)
            self.det_ms.append((time.perf_counter() - t0) * 1e3)
            dets = [dt for dt in dets if dt[1] >= self.p.score_threshold]
            had = self.tracker.box is not None
            box = self.tracker.update(dets)
            if dets:
                d.count("detections")
            else:
                d.count("misses")
                if box is not None and had:
                    d.count("held")
            if len(self.det_ms) % 10 == 1:
                q = np.percentile(np.fromiter(self.det_ms, float), (50, 99))
                d.set("detector_ms_p50", float(q[0]))
                d.set("detector_ms_p99", float(q[1]))
        else:
            d.count("skipped")
            box = self.tracker.box
        self.last_box = box
        if box is None:
            return
        frame_id = msg.header.frame_id
        self.pub_roi.publish(box_to_polygon(box, stamp_ns, frame_id))
        if self.pub_mapped is not None:
            w, h = self.map_size if self.map_size is not None else (None, None)
            try:
                mapped = map_box(box, self.H, w, h)
            except FaceError as err:
                d.count("mapped_outside")
                self.get_logger().warning(f"face box not mapped to {self.p.map_to}: {err}",
                                          throttle_duration_sec=5.0)
                return
            self.pub_mapped.publish(box_to_polygon(mapped, stamp_ns, ""))


NODE = FaceDetectorNode


def main(args=None) -> int:
    return run_node(FaceDetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

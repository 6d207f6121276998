"""Face detector node in-process: images in, face_roi (and the box mapped to another camera) out."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import real_file
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PolygonStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from test_face import _covers_eyes, drawn_face

from ros2_evmicro.core.calib import save_calibration
from ros2_evmicro.core.face import FaceDetector, box_iou, map_box
from ros2_evmicro.core.mtcnn import MtcnnError
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.ros.convert import box_from_polygon, image_to_msg, stamp_to_ns
from ros2_evmicro.ros.node import FRAMES_QOS, SENSOR_QOS

T0_NS = 1_700_000_000_000_000_000
H_DAVIS_EVK4 = np.array([[2.0, 0.0, 100.0], [0.0, 2.0, 50.0], [0.0, 0.0, 1.0]])


class Rig:
    def __init__(self, ros, namespace="davis", map_to="", **params):
        from ros2_evmicro.nodes.face_detector import FaceDetectorNode

        over = [Parameter(k, value=v) for k, v in {"map_to": map_to, **params}.items()]
        self.ros = ros
        self.node = ros.add(FaceDetectorNode(context=ros.context, namespace=namespace, parameter_overrides=over))
        t = ros.add(Node("face_talker", namespace=namespace, context=ros.context))
        self.pub = t.create_publisher(Image, "image_raw", SENSOR_QOS)
        self.rois: list[PolygonStamped] = []
        self.mapped: list[PolygonStamped] = []
        self.statuses = []
        t.create_subscription(PolygonStamped, "face_roi", self.rois.append, FRAMES_QOS)
        if map_to:
            t.create_subscription(PolygonStamped, f"face_roi_{map_to}", self.mapped.append, FRAMES_QOS)
        t.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.statuses.extend(m.status), 20)
        assert ros.spin_until(lambda: self.pub.get_subscription_count() > 0, 10)

    def send(self, img, stamp_ns=T0_NS, encoding=None, frame_id="davis346_optical"):
        enc = encoding or ("mono8" if img.ndim == 2 else "bgr8")
        n0 = self.node.diag.counters["images"] + self.node.diag.counters.get("bad_image", 0)
        self.pub.publish(image_to_msg(img, enc, stamp_ns, frame_id))
        assert self.ros.spin_until(lambda: self.node.diag.counters["images"]
                                   + self.node.diag.counters.get("bad_image", 0) > n0, 20)


def test_drawn_face_gives_polygon_with_image_stamp_and_mapped_box(ros, tmp_path):
    cal = save_calibration(tmp_path / "rig.yaml", {"evk4": {"width": 1280, "height": 720,
                                                            "K": np.eye(3).tolist()}},
                           {"davis->evk4": H_DAVIS_EVK4})
    r = Rig(ros, map_to="evk4", calibration_file=str(cal))
    assert r.node.camera == "davis"
    r.send(drawn_face(), T0_NS + 123)
    assert ros.spin_until(lambda: r.rois and r.mapped, 10)
    roi = r.rois[0]
    assert stamp_to_ns(roi.header.stamp) == T0_NS + 123 and roi.header.frame_id == "davis346_optical"
    assert len(roi.polygon.points) == 4
    box = box_from_polygon(roi)
    assert _covers_eyes(box), box
    mapped = box_from_polygon(r.mapped[0])
    np.testing.assert_allclose(mapped, map_box(box, H_DAVIS_EVK4), atol=1e-3)  # float32 points
    np.testing.assert_allclose(mapped, (2 * box[0] + 100, 2 * box[1] + 50, 2 * box[2] + 100, 2 * box[3] + 50),
                               atol=1e-3)
    assert stamp_to_ns(r.mapped[0].header.stamp) == T0_NS + 123
    assert r.node.diag.counters["detections"] == 1


def test_grey_image_rate_limit_and_hold(ros):
    # 30 fps stamps, at most 15 detections per second: every other image is detected, the rest reuse the track
    r = Rig(ros, method="haar", max_rate_hz=15.0, hold_frames=1)
    grey = cv2.cvtColor(drawn_face(), cv2.COLOR_BGR2GRAY)
    for i in range(4):
        r.send(grey, T0_NS + i * 33_333_333)
    d = r.node.diag.counters
    assert d["detections"] == 2 and d["skipped"] == 2
    assert ros.spin_until(lambda: len(r.rois) == 4, 10)
    assert [stamp_to_ns(m.header.stamp) for m in r.rois] == [T0_NS + i * 33_333_333 for i in range(4)]
    # a flat image: one miss is held (hold_frames 1), the second drops the track and nothing is published
    flat = np.full_like(grey, 128)
    r.send(flat, T0_NS + 200_000_000)
    r.send(flat, T0_NS + 300_000_000)
    ros.spin_for(0.2)
    assert d["misses"] == 2 and d["held"] == 1 and len(r.rois) == 5
    # a bad encoding is counted, the node goes on
    r.pub.publish(image_to_msg(np.zeros((8, 8), np.float32), "32FC1", T0_NS))
    assert ros.spin_until(lambda: r.node.diag.counters.get("bad_image", 0) == 1, 10)


def test_mtcnn_missing_weights_falls_back_to_haar_with_warn(ros):
    r = Rig(ros, method="mtcnn", mtcnn_weights_dir="/nonexistent")
    assert r.node.method == "haar" and r.node.diag.level == b"\x01"
    assert "MTCNN unavailable" in r.node.diag.message
    r.send(drawn_face())
    assert ros.spin_until(lambda: r.rois, 10) and _covers_eyes(box_from_polygon(r.rois[0]))


def test_map_to_without_or_with_a_wrong_calibration_fails_at_startup(ros, tmp_path):
    from ros2_evmicro.nodes.face_detector import FaceDetectorNode

    def make(**p):
        return FaceDetectorNode(context=ros.context, namespace="webcam", parameter_overrides=[
            Parameter(k, value=v) for k, v in {"method": "haar", **p}.items()])

    with pytest.raises(ParamError, match="map_to='evk4' needs calibration_file.*webcam->evk4"):
        make(map_to="evk4")
    with pytest.raises(ParamError, match="does not exist"):
        make(map_to="evk4", calibration_file=str(tmp_path / "none.yaml"))
    cal = save_calibration(tmp_path / "rig.yaml", {}, {"davis->evk4": H_DAVIS_EVK4})
    with pytest.raises(ParamError, match="no homography webcam->evk4"):
        make(map_to="evk4", calibration_file=str(cal))
    with pytest.raises(ParamError, match="set the parameter camera"):
        FaceDetectorNode(context=ros.context, parameter_overrides=[Parameter("map_to", value="evk4")])


def test_load_mapping_sim_rig_and_inverse():
    from ros2_evmicro.core.sim.rig import SimRig
    from ros2_evmicro.nodes.face_detector import load_mapping

    H, size = load_mapping("davis", "evk4", "sim")
    assert size == (1280, 720)
    rig = SimRig(subject_seed=1, cameras=("davis", "evk4"))
    truth_d, truth_e = rig.face_box("davis", 0.0), rig.face_box("evk4", 0.0)
    assert box_iou(map_box(truth_d, H, *size), truth_e) > 0.85


@pytest.fixture(scope="module")
def mtcnn() -> FaceDetector:
    try:
        return FaceDetector("mtcnn", 24)
    except MtcnnError as err:
        pytest.skip(str(err))


def test_shipped_example_calibration_matches_the_sim_rig():
    from conftest import REPO

    from ros2_evmicro.nodes.face_detector import load_mapping

    for cam in ("davis", "webcam"):
        H_sim, size_sim = load_mapping(cam, "evk4", "sim")
        H_file, size_file = load_mapping(cam, "evk4", str(REPO / "config" / "calibration_example.yaml"))
        assert size_file == size_sim == (1280, 720)
        np.testing.assert_allclose(H_file, H_sim, rtol=1e-6, atol=1e-4)


def test_detect_scaled_on_a_webcam_sized_image(mtcnn):
    from ros2_evmicro.nodes.face_detector import detect_scaled

    face = cv2.resize(drawn_face(), (960, 720), interpolation=cv2.INTER_LINEAR)  # 3x the drawn face
    img = np.full((1080, 1920, 3), (90, 110, 120), np.uint8)
    img[200:920, 500:1460] = face
    dets = detect_scaled(mtcnn, img, 640)  # detected at 640x360, boxes in 1920x1080 pixels
    assert len(dets) == 1
    x0, y0, x1, y1 = dets[0][0]
    # the drawn face's eyes (at 138..182, 108 in 320x240) scaled by 3 and shifted by (500, 200)
    assert x0 < 500 + 3 * 138 and x1 > 500 + 3 * 182 and y0 < 200 + 3 * 108 < y1 and 180 < x1 - x0 < 600


def test_real_video_frame_gives_the_face(ros):
    path = real_file("rgb_face_video/face_closeup_528x592.mp4")
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    r = Rig(ros, namespace="webcam", detect_width_px=320)
    r.send(frame, T0_NS)
    assert ros.spin_until(lambda: r.rois, 20)
    # MTCNN on the full frame gives about (57, 50, 408, 517) (see test_face.py)
    assert box_iou(box_from_polygon(r.rois[0]), (57, 50, 408, 517)) > 0.6

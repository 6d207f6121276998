"""Driver nodes in-process: files the project writes and the real recordings played through DavisNode,
Evk4Node and WebcamNode, received by subscriptions and compared on golden totals; pacing and loop; faults
(no camera, unplugged camera, damaged and foreign files) end in diagnostics, never in a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import real_file
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosutil import check_watermark_promises
from sensor_msgs.msg import CameraInfo, Image, Imu, PointCloud2, TimeReference

from ros2_evmicro.core.codecs import IMU_DTYPE, TRIGGER_DTYPE, Aedat4Frame, RawReader, write_aedat4, write_raw
from ros2_evmicro.core.codecs.synthetic import row_burst_events
from ros2_evmicro.core.events import concat_events
from ros2_evmicro.core.stream import EventsItem, SourceError, SourceInfo
from ros2_evmicro.ros.convert import events_from_msg, stamp_to_ns
from ros2_evmicro.ros.driver import DriverNode
from ros2_evmicro.ros.node import EVENTS_QOS, LATCHED_QOS
from ros2_evmicro.specs.evk4 import SPEC as EVK4_SPEC

FAKE_MV = Path(__file__).resolve().parent / "fake_metavision"


class Collector:
    """Subscribes to every topic of one camera namespace."""

    def __init__(self, ros, ns: str):
        self.node = ros.add(Node(f"collector_{ns}", context=ros.context))
        self.events: list[PointCloud2] = []  # packets with events
        self.watermarks: list[PointCloud2] = []  # packets without: "every event before my stamp is out"
        self.sequence: list[PointCloud2] = []  # both, in arrival order
        self.images: list[Image] = []
        self.imu: list[Imu] = []
        self.triggers: list[TimeReference] = []
        self.tref: list[TimeReference] = []
        self.info: list[CameraInfo] = []
        n = self.node
        # deep queues: at playback_rate 0 a file arrives in one burst, faster than a test executor takes it
        deep = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=20000)
        n.create_subscription(PointCloud2, f"/{ns}/events", self._on_events, deep)
        n.create_subscription(Image, f"/{ns}/image_raw", self.images.append, deep)
        n.create_subscription(Imu, f"/{ns}/imu", self.imu.append, deep)
        n.create_subscription(TimeReference, f"/{ns}/triggers", self.triggers.append, deep)
        n.create_subscription(TimeReference, f"/{ns}/time_reference", self.tref.append, deep)
        n.create_subscription(CameraInfo, f"/{ns}/camera_info", self.info.append, LATCHED_QOS)

    def _on_events(self, msg: PointCloud2) -> None:
        self.sequence.append(msg)
        (self.events if msg.width else self.watermarks).append(msg)

    def all_events(self) -> np.ndarray:
        return concat_events([events_from_msg(m) for m in self.events])


def start(ros, cls, ns: str, **params):
    """Collector first, then the driver (which waits for its subscribers before playing a file)."""
    col = Collector(ros, ns)
    params.setdefault("wait_for_subscribers_s", 5.0)
    params.setdefault("playback_rate", 0.0)
    drv = ros.add(cls(namespace=ns, context=ros.context,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
    return col, drv


def play(ros, cls, ns: str, timeout_s: float = 60.0, **params):
    col, drv = start(ros, cls, ns, **params)
    c = drv.counts

    def done() -> bool:
        return drv.ended and len(col.events) >= c["packets"] and len(col.images) >= c["frames"] and (
            len(col.watermarks) >= c.get("watermarks", 0)) and (
            len(col.imu) >= c["imu"] and len(col.triggers) >= c["triggers"])

    assert ros.spin_until(done, timeout_s), f"playback did not finish: {c}, ended={drv.ended}"
    ros.spin_for(0.05)
    return col, drv


def check_watermarks(col: Collector, grid_ns: int, at_least: int, exact: bool = True) -> None:
    """At least ``at_least`` watermarks, each on the grid and keeping its promise (rosutil)."""
    assert len(col.watermarks) >= at_least
    check_watermark_promises(col.sequence, grid_ns // 1000, exact)


def status(drv) -> tuple[bytes, str]:
    st = drv.diag.build()
    return st.level, st.message


def totals(ev: np.ndarray) -> tuple[int, int, int, int]:
    """(count, ON count, last - first t, sum of t - first t)."""
    t = ev["t"].astype(np.int64)
    return len(ev), int(ev["p"].sum()), int(t[-1] - t[0]), int((t - t[0]).sum())


# ------------------------------------------------------------------------------------------ DAVIS


def test_davis_node_plays_a_written_aedat4(ros, tmp_path):
    pytest.importorskip("dv_processing")
    from ros2_evmicro.nodes.davis import DavisNode

    ev = row_burst_events(5000, 346, 260, duration_us=200_000, seed=31)
    ev["t"] += 1_600_000_000_000_000
    t0 = int(ev["t"][0])
    frames = [Aedat4Frame(t0 + 5000 + 50_000 * k, np.full((260, 346), 20 * k, np.uint8)) for k in range(4)]
    imu = np.zeros(20, dtype=IMU_DTYPE)
    imu["t"] = t0 + np.arange(20) * 10_000
    imu["accel"] = [0.0, -9.81, 0.0]
    imu["gyro"] = [0.0, 0.0, 0.5]
    trig = np.array([(t0 + 100_000, 1, 1), (t0 + 100_500, 2, 0)], dtype=TRIGGER_DTYPE)
    path = write_aedat4(tmp_path / "d.aedat4", ev, 346, 260, frames=frames, imu=imu, triggers=trig)
    col, drv = play(ros, DavisNode, "davis", source="file", path=str(path),
                    native_record_path=str(tmp_path / "copy.aedat4"))
    got = col.all_events()
    assert totals(got) == totals(ev)
    np.testing.assert_array_equal(got[["x", "y", "p"]], ev[["x", "y", "p"]])
    assert all(m.header.frame_id == "davis346_optical" for m in col.events)
    assert len(col.tref) == len(col.events)
    # stamps keep the recording's timing: each packet's stamp is the first event's offset from the start
    s0 = stamp_to_ns(col.events[0].header.stamp)
    assert [(stamp_to_ns(m.header.stamp) - s0) // 1000 for m in col.images] == [f.t_us - t0 for f in frames]
    assert [m.encoding for m in col.images] == ["mono8"] * 4 and bytes(col.images[3].data)[0] == 60
    assert len(col.imu) == 20 and abs(col.imu[0].linear_acceleration.y + 9.81) < 1e-3
    assert col.imu[0].header.frame_id == "davis346_imu" and abs(col.imu[0].angular_velocity.z - 0.5) < 1e-6
    assert [(t.source, stamp_to_ns(t.time_ref) // 1000) for t in col.triggers] == [
        ("DAVIS346_evmicro/ch1/rise", t0 + 100_000), ("DAVIS346_evmicro/ch2/fall", t0 + 100_500)]
    assert (col.info[-1].width, col.info[-1].height) == (346, 260)
    assert drv.counts == {"events": 5000, "packets": len(col.events), "watermarks": len(col.watermarks), "frames": 4,
                          "imu": 20, "triggers": 2}
    check_watermarks(col, 33_000_000, 5)
    assert status(drv) == (DiagnosticStatus.OK, "end of file")
    drv.close()  # finishes the native copy
    from ros2_evmicro.core.codecs import Aedat4Reader

    copy = Aedat4Reader(tmp_path / "copy.aedat4").read_all()
    assert copy.counts == {"events": 5000, "frames": 4, "imu": 20, "triggers": 2}


def test_davis_node_real_recording(ros):
    pytest.importorskip("dv_processing")
    from ros2_evmicro.nodes.davis import DavisNode

    path = real_file("davis346_aedat4/davis346_sample.aedat4")
    col, drv = play(ros, DavisNode, "davis", source="file", path=str(path))
    got = col.all_events()
    # goldens of test_codecs_files.test_real_davis346_aedat4
    assert totals(got) == (117_667, 72_363, 1_105_949 - 975_950, 7_327_758_848)
    assert (len(col.images), len(col.imu), len(col.triggers)) == (3, 130, 15)
    s0 = stamp_to_ns(col.events[0].header.stamp)
    assert (stamp_to_ns(col.images[0].header.stamp) - s0) // 1000 == 976_518 - 975_950
    assert col.images[0].height == 260 and col.images[0].width == 346
    assert all(len(m.data) and m.width <= 346 * 260 * 10 for m in col.events)


def test_davis_node_dvxplorer_recording(ros):
    pytest.importorskip("dv_processing")
    from ros2_evmicro.nodes.davis import DavisNode

    path = real_file("dvxplorer_aedat4/dvxplorer_sample.aedat4")
    col, drv = play(ros, DavisNode, "davis", source="file", path=str(path))
    got = col.all_events()
    assert totals(got)[:2] == (111_954, 55_023)
    assert totals(got)[2] == 1_605_537_494_308_262 - 1_605_537_493_718_345
    assert (len(col.images), len(col.imu), col.info[-1].width, col.info[-1].height) == (0, 475, 320, 240)


def test_davis_node_no_camera_reports_and_retries(ros):
    dv = pytest.importorskip("dv_processing")
    if dv.io.camera.discover():
        pytest.skip("a real DAVIS camera is connected")
    from ros2_evmicro.nodes.davis import DavisNode

    _, drv = start(ros, DavisNode, "davis", source="camera", reconnect_s=0.1)
    assert ros.spin_until(lambda: status(drv)[0] == DiagnosticStatus.ERROR, 10)
    assert "no DAVIS camera found (plug it in" in status(drv)[1]
    ros.spin_for(0.3)
    assert not drv.ended and drv._thread.is_alive()  # keeps retrying


def test_davis_node_corrupt_file_is_an_error_not_a_crash(ros, tmp_path):
    pytest.importorskip("dv_processing")
    from ros2_evmicro.nodes.davis import DavisNode

    ev = row_burst_events(3000, 346, 260, duration_us=50_000, seed=32)
    data = write_aedat4(tmp_path / "d.aedat4", ev, 346, 260).read_bytes()
    (tmp_path / "cut.aedat4").write_bytes(data[: len(data) // 2])
    col, drv = start(ros, DavisNode, "davis", source="file", path=str(tmp_path / "cut.aedat4"))
    assert ros.spin_until(lambda: drv.ended, 10)
    level, msg = status(drv)
    assert level == DiagnosticStatus.ERROR and "truncated or corrupt" in msg
    assert not col.events


def test_davis_node_rejects_bad_settings_at_runtime(ros, tmp_path):
    pytest.importorskip("dv_processing")
    from ros2_evmicro.nodes.davis import DavisNode

    path = write_aedat4(tmp_path / "d.aedat4", row_burst_events(500, 346, 260, duration_us=10_000, seed=3), 346, 260)
    _, drv = play(ros, DavisNode, "davis", source="file", path=str(path))
    res = drv.set_parameters([Parameter("bias_on", value=[3, 300])])[0]
    assert not res.successful and "bias_on" in res.reason
    res = drv.set_parameters([Parameter("source", value="camera")])[0]
    assert not res.successful and "cannot change while the node runs" in res.reason
    assert drv.set_parameters([Parameter("noise_filter_us", value=1000)])[0].successful


# ------------------------------------------------------------------------------------------ EVK4


def test_evk4_node_raw_file_native_copy_and_triggers(ros, tmp_path):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    ev = row_burst_events(20_000, 1280, 720, duration_us=300_000, seed=33)
    trig = np.array([(int(ev["t"][100]), 0, 1), (int(ev["t"][200]), 0, 0)], dtype=TRIGGER_DTYPE)
    path = write_raw(tmp_path / "e.raw", ev, width=1280, height=720, triggers=trig)
    col, drv = play(ros, Evk4Node, "evk4", source="file", path=str(path), packet_period_ms=5.0,
                    native_record_path=str(tmp_path / "copy.raw"))
    got = col.all_events()
    assert totals(got) == totals(ev)
    # 300 ms / 5 ms, plus the packets cut at the 9 window boundaries (each followed by a watermark)
    assert len(col.events) == drv.counts["packets"] and 55 + 8 <= len(col.events) <= 61 + 10
    check_watermarks(col, 33_000_000, 8)
    assert all(m.header.frame_id == "evk4_optical" for m in col.events)
    assert [stamp_to_ns(t.time_ref) // 1000 for t in col.triggers] == trig["t"].tolist()
    assert (col.info[-1].width, col.info[-1].height) == (1280, 720)
    drv.close()
    copy = RawReader(tmp_path / "copy.raw")
    np.testing.assert_array_equal(copy.read_all(), ev)
    assert copy.triggers.tolist() == trig.tolist()


def test_evk4_node_truncated_raw_publishes_every_complete_event(ros, tmp_path):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    ev = row_burst_events(3000, 640, 480, duration_us=50_000, seed=34)
    data = write_raw(tmp_path / "e.raw", ev, fmt="evt2", width=640, height=480).read_bytes()
    (tmp_path / "cut.raw").write_bytes(data[:-3])  # cut inside the last 32-bit word
    col, drv = play(ros, Evk4Node, "evk4", source="file", path=str(tmp_path / "cut.raw"))
    got = col.all_events()
    assert totals(got) == totals(ev[:-1])
    level, msg = status(drv)
    assert level == DiagnosticStatus.WARN and "1 trailing byte" in msg


@pytest.mark.parametrize(("content", "match"), [
    (b"% format EVT21;height=720;width=1280\n% end\n" + b"\0" * 8, "'evt2.1' is not supported"),
    (b"% evt 3.0\n% plugin_name hal_plugin_mystery\n" + b"\0" * 8, "pass width= and height="),
])
def test_evk4_node_unknown_raw_format(ros, tmp_path, content, match):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    (tmp_path / "x.raw").write_bytes(content)
    params = {"width": 0, "height": 0} if "mystery" in str(content) else {}
    _, drv = start(ros, Evk4Node, "evk4", source="file", path=str(tmp_path / "x.raw"), **params)
    assert ros.spin_until(lambda: drv.ended, 10)
    level, msg = status(drv)
    assert level == DiagnosticStatus.ERROR and match in msg


def test_evk4_node_bag_of_the_wrong_type(ros, tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from ros2_evmicro.nodes.evk4 import Evk4Node

    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(tmp_path / "strings", version=9) as w:
        con = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        w.write(con, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    _, drv = start(ros, Evk4Node, "evk4", source="bag", path=str(tmp_path / "strings"))
    assert ros.spin_until(lambda: drv.ended, 10)
    level, msg = status(drv)
    assert level == DiagnosticStatus.ERROR and "no event_camera_msgs/msg/EventPacket topic" in msg


def test_evk4_node_without_sdk_reports_and_retries(ros, monkeypatch):
    import sys

    from ros2_evmicro.nodes.evk4 import Evk4Node

    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    _, drv = start(ros, Evk4Node, "evk4", source="camera", reconnect_s=0.1)
    assert ros.spin_until(lambda: status(drv)[0] == DiagnosticStatus.ERROR, 10)
    assert "Metavision SDK (metavision_hal) not found" in status(drv)[1]
    ros.spin_for(0.2)
    assert not drv.ended


def test_evk4_node_live_fake_camera_settings_and_unplug(ros, monkeypatch, tmp_path):
    import sys

    monkeypatch.syspath_prepend(str(FAKE_MV))
    for m in [m for m in sys.modules if m.startswith(("metavision_hal", "metavision_core"))]:
        monkeypatch.delitem(sys.modules, m)
    import metavision_hal

    from ros2_evmicro.nodes.evk4 import Evk4Node

    ev = row_burst_events(4000, 1280, 720, duration_us=1_000_000, seed=35)
    a = np.zeros(len(ev), dtype=metavision_hal.EVENT_CD)
    for k in ("x", "y", "p", "t"):
        a[k] = ev[k]
    cam = metavision_hal.FakeCamera(events=a, realtime=True)  # streams 1 s, then the iterator ends (unplugged)
    metavision_hal.FAKE.devices.clear()
    metavision_hal.FAKE.devices["00ca0009"] = cam
    try:
        col, drv = start(ros, Evk4Node, "evk4", source="camera", bias_diff_on=25, erc_rate_mev_s=5.0,
                         roi=[0, 0, 640, 360], trigger_in=True, reconnect_s=0.2,
                         native_record_path=str(tmp_path / "cam.raw"))
        assert ros.spin_until(lambda: len(col.events) > 0, 10)
        assert cam.biases["bias_diff_on"] == 25 and cam.erc == {"enabled": True, "rate": 5_000_000}
        assert cam.roi["window"] == (0, 0, 640, 360) and cam.trigger_in == {0: True}
        assert cam.raw_log[0] == ("start", str(tmp_path / "cam.raw"))
        # live settings while streaming: applied; a value the SDK refuses is rejected with its reason
        res = drv.set_parameters([Parameter("bias_hpf", value=60)])[0]
        assert res.successful and cam.biases["bias_hpf"] == 60
        res = drv.set_parameters([Parameter("bias_hpf", value=250)])[0]
        assert not res.successful and "refused bias_hpf=250" in res.reason
        assert drv.p.bias_hpf == 60
        # the stream ends after 1 s: reported as unplugged, every event published, then reconnected
        assert ros.spin_until(lambda: "stopped streaming" in status(drv)[1], 10)
        assert status(drv)[0] == DiagnosticStatus.ERROR
        assert ros.spin_until(lambda: len(col.all_events()) >= len(ev), 10)
        got = col.all_events()[: len(ev)]
        np.testing.assert_array_equal(got[["x", "y", "p"]], ev[["x", "y", "p"]])
        check_watermarks(col, 33_000_000, 20, exact=False)  # live: cuts mapped through the clock fit, 1 s of events
        assert len(col.tref) >= 1 and col.tref[0].source == "00ca0009"
        assert ros.spin_until(lambda: len(col.all_events()) > len(ev), 10), "no reconnection"
        assert drv.counts["events"] > len(ev) and not drv.ended
    finally:
        metavision_hal.FAKE.devices.clear()


# ------------------------------------------------------------------------------------------ real RAW and bags


REAL_RAW = [
    # name, width, height, n, n_on, t_first, t_last, t_sum  (goldens of test_codecs_evt)
    ("prophesee_raw/evt3_sample.raw", 219_596, 115_532, 11_718_656, 11_727_457, 2_574_324_900_467),
    ("prophesee_raw/evt2_sample.raw", 539_481, 367_855, 1_317_888, 1_367_888, 724_340_275_912),
    ("prophesee_raw/evt2_test_sparklers.raw", 521_252, 185_861, 913_716_224, 913_812_095, 476_298_094_656_969),
]


@pytest.mark.parametrize(("name", "n", "n_on", "t_first", "t_last", "t_sum"), REAL_RAW)
def test_evk4_node_real_raw(ros, name, n, n_on, t_first, t_last, t_sum):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    path = real_file(name)
    col, drv = play(ros, Evk4Node, "evk4", source="file", path=str(path))
    got = col.all_events()
    assert totals(got) == (n, n_on, t_last - t_first, t_sum - n * t_first)
    assert drv.counts["events"] == n


def test_evk4_node_real_pedestrians(ros):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    path = real_file("prophesee_raw/evt3_test_pedestrians.raw")
    col, _ = play(ros, Evk4Node, "evk4", source="file", path=str(path))
    ref = np.load(path.with_name("evt3_test_pedestrians_reference.npy"))
    got = col.all_events()
    assert len(got) == 5000
    np.testing.assert_array_equal(got[["x", "y", "p"]].tolist(), ref[["x", "y", "p"]].tolist())


REAL_BAGS = [
    # name, n_off, n_on, n_trig, t_first, t_last, t_sum  (goldens of test_codecs_files)
    ("evt3_1280x720_trigger", 41_030, 41_439, 2, 14_224_870, 15_476_187, 1_222_326_831_810),
    ("evt3_640x480", 218_291, 125_183, 4_157, 7_139_845, 9_218_023, 2_851_601_611_994),
    ("libcaer_640x480_rollover", 152_423, 181_908, 0, 2_146_490_012, 2_148_489_998, 717_973_252_360_524),
]


@pytest.mark.parametrize(("name", "n_off", "n_on", "n_trig", "t_first", "t_last", "t_sum"), REAL_BAGS)
def test_evk4_node_real_eventpacket_bags(ros, name, n_off, n_on, n_trig, t_first, t_last, t_sum):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    bag = real_file("event_packet_bags/" + name)
    col, drv = play(ros, Evk4Node, "evk4", source="bag", path=str(bag), bag_topic="/event_camera/events")
    got = col.all_events()
    n = n_off + n_on
    assert totals(got) == (n, n_on, t_last - t_first, t_sum - n * t_first)
    assert len(col.triggers) == n_trig == drv.counts["triggers"]


# ------------------------------------------------------------------------------------------ webcam


def test_webcam_node_plays_a_video_file(ros, tmp_path):
    from test_sources import write_video

    from ros2_evmicro.nodes.webcam import WebcamNode

    path = write_video(tmp_path / "v.avi", 12, 80, 60, fps=30.0)
    col, drv = play(ros, WebcamNode, "webcam", source="file", path=str(path))
    assert len(col.images) == 12 and drv.counts["frames"] == 12
    assert (col.images[0].encoding, col.images[0].width, col.images[0].height) == ("bgr8", 80, 60)
    s0 = stamp_to_ns(col.images[0].header.stamp)
    assert [(stamp_to_ns(m.header.stamp) - s0) // 1000 for m in col.images] == [
        round(k * 1e6 / 30) for k in range(12)]
    assert col.images[0].header.frame_id == "webcam_optical"
    assert len(col.tref) == 12 and not col.events
    assert (col.info[-1].width, col.info[-1].height) == (80, 60)


def test_webcam_node_real_video(ros):
    from ros2_evmicro.nodes.webcam import WebcamNode

    path = real_file("rgb_face_video/face_closeup_528x592.mp4")
    col, drv = play(ros, WebcamNode, "webcam", source="file", path=str(path))
    assert len(col.images) == drv.counts["frames"] >= 290
    assert (col.images[0].width, col.images[0].height) == (528, 592)


def test_webcam_node_missing_device(ros):
    from ros2_evmicro.nodes.webcam import WebcamNode

    _, drv = start(ros, WebcamNode, "webcam", source="device", device="/dev/video_evmicro_none", reconnect_s=0.1)
    assert ros.spin_until(lambda: status(drv)[0] == DiagnosticStatus.ERROR, 10)
    assert "no webcam at" in status(drv)[1]
    assert not drv.ended


# ------------------------------------------------------------------------------------------ pacing, loop, faults


def test_playback_rate_one_takes_real_time_and_loop_repeats(ros, tmp_path):
    from ros2_evmicro.nodes.evk4 import Evk4Node

    ev = row_burst_events(5000, 640, 480, duration_us=500_000, seed=36)
    path = write_raw(tmp_path / "half_second.raw", ev, width=640, height=480)
    col, drv = start(ros, Evk4Node, "evk4", source="file", path=str(path), playback_rate=1.0)
    arrivals = []
    col.node.create_subscription(PointCloud2, "/evk4/events", lambda m: arrivals.append(time.monotonic()),
                                 EVENTS_QOS)
    assert ros.spin_until(lambda: drv.ended, 10)
    ros.spin_for(0.05)
    span = arrivals[-1] - arrivals[0]
    assert 0.45 <= span <= 0.9, f"a 0.5 s file took {span:.3f} s at playback_rate 1"
    assert totals(col.all_events()) == totals(ev)

    col2, drv2 = start(ros, Evk4Node, "evk4b", source="file", path=str(path), loop=True)
    assert ros.spin_until(lambda: drv2.counts["events"] >= 3 * len(ev), 20), "loop did not repeat the file"
    assert not drv2.ended
    drv2.close()


class _Unplugged:
    """A live source that streams two chunks and then fails like an unplugged camera."""

    opened = 0

    def __init__(self):
        type(self).opened += 1
        self.info = SourceInfo(64, 48, serial="fake", live=True)
        self.k = 0

    def read(self, timeout_s: float = 0.05):
        self.k += 1
        if self.k > 2:
            raise SourceError("camera stopped streaming (unplugged?)")
        ev = row_burst_events(100, 64, 48, duration_us=5000, t0_us=self.k * 10_000, seed=self.k)
        return [EventsItem(ev)]

    def close(self):
        pass


class _FakeDriver(DriverNode):
    SPEC = EVK4_SPEC

    def open_source(self):
        return _Unplugged()


def test_unplugged_camera_is_reported_and_reopened(ros):
    _Unplugged.opened = 0
    col, drv = start(ros, _FakeDriver, "fake", source="camera", reconnect_s=0.1)
    assert ros.spin_until(lambda: _Unplugged.opened >= 2, 10), "the driver did not reconnect"
    assert ros.spin_until(lambda: len(col.all_events()) >= 200 if col.events else False, 10)
    assert "unplugged" in status(drv)[1] or status(drv)[0] == DiagnosticStatus.OK
    assert not drv.ended and drv._thread.is_alive()


@pytest.mark.parametrize(("kind", "frame_id", "size"), [
    ("davis", "davis346_optical", (346, 260)), ("evk4", "evk4_optical", (1280, 720)),
    ("webcam", "webcam_optical", (1920, 1080))])
def test_specs_configs_and_node_modules_agree(kind, frame_id, size):
    import importlib

    from ros2_evmicro.graphs import config_dir
    from ros2_evmicro.specs import get_spec

    spec = get_spec(kind)
    values = spec.from_yaml(config_dir() / f"{kind}.yaml", "driver")  # the graphs name every driver 'driver'
    assert (values.frame_id, values.width, values.height) == (frame_id, *size)
    mod = importlib.import_module(f"ros2_evmicro.nodes.{kind}")
    assert mod.NODE.SPEC is spec and callable(mod.main)

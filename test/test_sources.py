"""Sources (no ROS): time-ordered merging, files the project writes, damaged and foreign files, the fake
Metavision SDK, webcam files and the native EVT 3.0 writer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ros2_evmicro.core.codecs import (
    IMU_DTYPE,
    TRIGGER_DTYPE,
    Aedat4Frame,
    RawReader,
    encode_evt3,
    write_aedat4,
    write_eventpacket_bag,
    write_raw,
)
from ros2_evmicro.core.codecs.synthetic import row_burst_events
from ros2_evmicro.core.events import EVENT_DTYPE, concat_events, make_events
from ros2_evmicro.core.sources import (
    Aedat4FileSource,
    DavisCameraSource,
    EventPacketBagSource,
    Evt3FileWriter,
    MetavisionCameraSource,
    RawFileSource,
    WebcamSource,
    interleave,
    item_time_us,
)
from ros2_evmicro.core.stream import EventsItem, FrameItem, ImuItem, SourceError, TriggerItem

FAKE_MV = Path(__file__).resolve().parent / "fake_metavision"


def drain(src, limit: int = 100_000) -> list:
    out = []
    for _ in range(limit):
        items = src.read(0.01)
        if items is None:
            return out
        out += items
    raise AssertionError("the source never ended")


def split(items: list) -> tuple[np.ndarray, list, list, list]:
    ev = concat_events([i.events for i in items if isinstance(i, EventsItem)])
    return (ev, [i for i in items if isinstance(i, FrameItem)], [i for i in items if isinstance(i, ImuItem)],
            [i for i in items if isinstance(i, TriggerItem)])


def test_interleave_puts_items_after_events_of_equal_time():
    ev = make_events([1, 2, 3, 4], [0, 0, 0, 0], [1, 0, 1, 0], [10, 20, 20, 30])
    f = FrameItem(20, np.zeros((2, 2), np.uint8))
    tr = TriggerItem(5, 0, 1)
    out = interleave(ev, [tr, f])
    assert [type(o).__name__ for o in out] == ["TriggerItem", "EventsItem", "FrameItem", "EventsItem"]
    assert out[1].events["t"].tolist() == [10, 20, 20] and out[3].events["t"].tolist() == [30]
    assert interleave(ev[:0], []) == [] and interleave(ev[:0], [f]) == [f]
    assert len(interleave(ev, [])) == 1


def _aedat4(tmp_path: Path) -> tuple[Path, np.ndarray, list, np.ndarray, np.ndarray]:
    ev = row_burst_events(6000, 346, 260, duration_us=300_000, seed=21)
    ev["t"] += 1_700_000_000_000_000
    t0 = int(ev["t"][0])
    frames = [Aedat4Frame(t0 + 1000 + k * 100_000, np.full((260, 346), 30 * k, np.uint8)) for k in range(3)]
    imu = np.zeros(30, dtype=IMU_DTYPE)
    imu["t"] = t0 + np.arange(30) * 10_000
    imu["accel"] = [0.0, -9.81, 0.0]
    trig = np.array([(t0 + 50_000, 1, 1), (t0 + 60_000, 2, 0)], dtype=TRIGGER_DTYPE)
    path = write_aedat4(tmp_path / "s.aedat4", ev, 346, 260, frames=frames, imu=imu, triggers=trig,
                        packet_events=500)
    return path, ev, frames, imu, trig


def test_aedat4_source_merges_streams_in_time_order(tmp_path):
    pytest.importorskip("dv_processing")
    path, ev, frames, imu, trig = _aedat4(tmp_path)
    src = Aedat4FileSource(path)
    assert (src.info.width, src.info.height, src.info.live) == (346, 260, False)
    items = drain(src)
    got, fr, im, tr = split(items)
    np.testing.assert_array_equal(got, ev)
    assert [f.t_us for f in fr] == [f.t_us for f in frames] and fr[2].image[0, 0] == 60 and fr[0].encoding == "mono8"
    assert [i.t_us for i in im] == imu["t"].tolist()
    np.testing.assert_allclose(im[0].accel, [0.0, -9.81, 0.0], atol=1e-4)
    assert [(t.t_us, t.channel, t.value) for t in tr] == trig.tolist()
    # device time order across streams: each item starts no earlier than the previous item's last time
    last = -1
    for it in items:
        assert item_time_us(it) >= last
        last = int(it.events["t"][-1]) if isinstance(it, EventsItem) else it.t_us
    assert src.damage is None and src.read() is None
    src.close()


def test_aedat4_source_noise_filter_and_native_copy(tmp_path):
    pytest.importorskip("dv_processing")
    path, ev, *_ = _aedat4(tmp_path)
    # an isolated event far from every other one is noise; the filter drops it and keeps clustered ones
    src = Aedat4FileSource(path, noise_filter_us=2000)
    src.start_native(tmp_path / "copy.aedat4")
    got, fr, im, tr = split(drain(src))
    assert 0 < len(got) < len(ev)
    src.close()  # finishes the copy: all streams, unfiltered
    copy = Aedat4FileSource(tmp_path / "copy.aedat4")
    got2, fr2, im2, tr2 = split(drain(copy))
    np.testing.assert_array_equal(got2, ev)
    assert (len(fr2), len(im2), len(tr2)) == (3, 30, 2)


def test_aedat4_source_errors(tmp_path):
    pytest.importorskip("dv_processing")
    path, *_ = _aedat4(tmp_path)
    data = path.read_bytes()
    (tmp_path / "cut.aedat4").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated or corrupt"):
        Aedat4FileSource(tmp_path / "cut.aedat4")
    with pytest.raises(SourceError, match="does not exist"):
        Aedat4FileSource(tmp_path / "none.aedat4")


def test_davis_camera_missing_is_a_clear_error():
    pytest.importorskip("dv_processing")
    import dv_processing as dv

    if dv.io.camera.discover():
        pytest.skip("a real DAVIS camera is connected")
    with pytest.raises(SourceError, match=r"no DAVIS camera found \(plug it in, or use source:=file"):
        DavisCameraSource()


def test_raw_source_triggers_and_truncation(tmp_path):
    ev = row_burst_events(4000, 640, 480, duration_us=200_000, seed=22)
    trig = np.array([(int(ev["t"][100]), 0, 1), (int(ev["t"][3000]), 0, 0)], dtype=TRIGGER_DTYPE)
    path = write_raw(tmp_path / "s.raw", ev, width=640, height=480, triggers=trig)
    src = RawFileSource(path, chunk_bytes=512)
    assert (src.info.width, src.info.height, src.info.meta["format"]) == (640, 480, "evt3")
    got, _, _, tr = split(drain(src))
    np.testing.assert_array_equal(got, ev)
    assert [(t.t_us, t.channel, t.value) for t in tr] == trig.tolist()
    assert src.damage is None
    data = path.read_bytes()
    (tmp_path / "cut.raw").write_bytes(data[:-1])  # ends inside a 16-bit word
    src = RawFileSource(tmp_path / "cut.raw", chunk_bytes=4096)
    got, *_ = split(drain(src))
    assert src.damage is not None and "1 trailing byte" in src.damage
    ref = RawReader(path).read_all()
    assert len(got) <= len(ref) and len(got) >= len(ref) - 12
    np.testing.assert_array_equal(got, ref[: len(got)])


def test_raw_source_geometry_fallback_and_unknown_format(tmp_path):
    ev = make_events([3, 700], [2, 500], [1, 0], [10, 20])
    (tmp_path / "old.raw").write_bytes(b"% evt 3.0\n% plugin_name hal_plugin_mystery\n" + encode_evt3(ev))
    with pytest.raises(SourceError, match="pass width= and height="):
        RawFileSource(tmp_path / "old.raw")
    src = RawFileSource(tmp_path / "old.raw", width=800, height=600)
    np.testing.assert_array_equal(split(drain(src))[0], ev)
    (tmp_path / "e21.raw").write_bytes(b"% format EVT21;height=720;width=1280\n% end\n" + b"\0" * 8)
    with pytest.raises(SourceError, match="'evt2.1' is not supported"):
        RawFileSource(tmp_path / "e21.raw")


def test_bag_source_and_wrong_type(tmp_path):
    ev = row_burst_events(3000, 640, 480, duration_us=100_000, seed=23)
    data = encode_evt3(ev)
    cuts = [0, 1001, 2502, 4001, len(data)]
    pkts = [{"bag_time_ns": k, "stamp_ns": k, "payload": data[a:b], "encoding": "evt3", "width": 640,
             "height": 480, "frame_id": "cam"} for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))]
    bag = write_eventpacket_bag(tmp_path / "bag", pkts)
    src = EventPacketBagSource(bag)
    assert (src.info.width, src.info.height, src.info.serial) == (640, 480, "cam")
    np.testing.assert_array_equal(split(drain(src))[0], ev)
    assert src.n_messages == 4

    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(tmp_path / "strings", version=9) as w:
        con = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        w.write(con, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    with pytest.raises(SourceError, match="no event_camera_msgs/msg/EventPacket topic"):
        EventPacketBagSource(tmp_path / "strings")
    with pytest.raises(SourceError, match="could not open bag"):
        EventPacketBagSource(tmp_path / "nothing")


def test_evt3_writer_chunks_decode_to_the_same_stream(tmp_path):
    ev = row_burst_events(5000, 1280, 720, duration_us=20_000_000, seed=24)  # crosses the 16.7 s EVT3 wrap
    w = Evt3FileWriter(tmp_path / "rec.raw", 1280, 720, serial="00ca0009")
    trig = TriggerItem(int(ev["t"][10]), 0, 1)
    w.write([EventsItem(ev[:7]), trig, EventsItem(ev[7:2500])])
    w.write([FrameItem(0, np.zeros((2, 2), np.uint8))])  # nothing to write
    w.write([EventsItem(ev[2500:])])
    w.close()
    r = RawReader(tmp_path / "rec.raw")
    assert (r.width, r.height, r.header.fields["serial_number"]) == (1280, 720, "00ca0009")
    np.testing.assert_array_equal(r.read_all(), ev)
    assert r.triggers.tolist() == [(trig.t_us, 0, 1)]
    with pytest.raises(SourceError, match="does not exist"):
        Evt3FileWriter(tmp_path / "no" / "x.raw", 10, 10)


# ------------------------------------------------------------------------------------------ Metavision (fake)


@pytest.fixture
def fake_mv(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_MV))
    for m in [m for m in sys.modules if m.startswith(("metavision_hal", "metavision_core"))]:
        monkeypatch.delitem(sys.modules, m)
    import metavision_hal

    metavision_hal.FAKE.devices.clear()
    yield metavision_hal
    metavision_hal.FAKE.devices.clear()


def _mv_events(n: int, seed: int):
    import metavision_hal

    ev = row_burst_events(n, 1280, 720, duration_us=100_000, seed=seed)
    a = np.zeros(n, dtype=metavision_hal.EVENT_CD)
    for k in ("x", "y", "t"):
        a[k] = ev[k]
    a["p"] = ev["p"]
    return ev, a


def test_metavision_sdk_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    with pytest.raises(SourceError, match=r"Metavision SDK \(metavision_hal\) not found: install OpenEB"):
        MetavisionCameraSource()


def test_metavision_camera_settings_stream_and_unplug(fake_mv, tmp_path):
    ev, a = _mv_events(3000, 25)
    tr = np.array([(1, int(ev["t"][50]), 0), (0, int(ev["t"][60]), 0)], dtype=fake_mv.EXT_TRIGGER)
    cam = fake_mv.FakeCamera(events=a, triggers=tr)
    fake_mv.FAKE.devices["00ca0009"] = cam
    src = MetavisionCameraSource("", biases={"bias_diff_on": 20, "bias_hpf": 40}, erc_rate=20_000_000,
                                 roi=(100, 50, 640, 360), trigger_in=True, delta_t_us=10_000)
    assert (src.info.width, src.info.height, src.info.serial, src.info.live) == (1280, 720, "00ca0009", True)
    assert cam.biases["bias_diff_on"] == 20 and cam.biases["bias_hpf"] == 40
    assert cam.erc == {"enabled": True, "rate": 20_000_000}
    assert cam.roi == {"enabled": True, "window": (100, 50, 640, 360)}
    assert cam.trigger_in == {0: True}
    # live changes, and a refused value
    assert src.apply({"bias_fo": -10, "erc_rate": 0, "roi": []}) == {"bias_fo": -10, "erc_rate": 0, "roi": []}
    assert cam.erc["enabled"] is False and cam.roi["enabled"] is False
    with pytest.raises(ValueError, match="refused bias_fo=99"):
        src.apply({"bias_fo": 99})
    log = src.start_raw_log(tmp_path / "cam.raw")
    assert log.is_file() and cam.raw_log == [("start", str(tmp_path / "cam.raw"))]
    items = []
    with pytest.raises(SourceError, match="stopped streaming"):
        for _ in range(100):
            items += src.read()
    got, _, _, trig = split(items)
    np.testing.assert_array_equal(got, ev)
    assert [(t.t_us, t.value) for t in trig] == [(int(ev["t"][50]), 1), (int(ev["t"][60]), 0)]
    src.close()
    assert cam.raw_log[-1] == ("stop",)
    cam.unplug_after = 2  # the SDK raises when the camera goes away
    src = MetavisionCameraSource()
    src.read()
    src.read()
    with pytest.raises(SourceError, match="Prophesee camera failed: Camera disconnected"):
        src.read()


def test_metavision_no_camera(fake_mv):
    with pytest.raises(SourceError, match="no Prophesee camera found"):
        MetavisionCameraSource()
    fake_mv.FAKE.devices["1"] = fake_mv.FakeCamera(events=np.zeros(0, fake_mv.EVENT_CD))
    with pytest.raises(SourceError, match="with serial 2"):
        MetavisionCameraSource("2")


# ------------------------------------------------------------------------------------------ webcam


def write_video(path: Path, n: int, w: int = 64, h: int = 48, fps: float = 25.0) -> Path:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for k in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 2] = 10 * k
        vw.write(img)
    vw.release()
    return path


def test_webcam_file_source(tmp_path):
    path = write_video(tmp_path / "v.avi", 8)
    src = WebcamSource(str(path))
    assert (src.info.width, src.info.height, src.info.live, src.fps) == (64, 48, False, 25.0)
    items = drain(src)
    assert [i.t_us for i in items] == [k * 40_000 for k in range(8)]
    assert items[0].image.shape == (48, 64, 3) and items[0].encoding == "bgr8"
    assert abs(int(items[5].image[0, 0, 2]) - 50) <= 3
    with pytest.raises(SourceError, match="does not exist"):
        WebcamSource(str(tmp_path / "none.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open the video file"):
        WebcamSource(str(tmp_path / "junk.mp4"))


def test_webcam_missing_device():
    with pytest.raises(SourceError, match="no webcam at '/dev/video_evmicro_none'"):
        WebcamSource("/dev/video_evmicro_none")


def test_event_dtype_of_sources_is_the_project_one(tmp_path):
    path = write_raw(tmp_path / "s.raw", row_burst_events(100, 64, 64, duration_us=1000, seed=1), width=64,
                     height=64)
    items = drain(RawFileSource(path))
    assert all(i.events.dtype == EVENT_DTYPE for i in items if isinstance(i, EventsItem))


class _FakeDavis:
    """Stands in for dv's DAVIS CameraInputBase: two event batches, then "unplugged"; setters recorded."""

    def __init__(self, dv, batches: int = 2):
        self.dv = dv
        self.calls: list = []
        self.left = batches
        self.running = True
        self.sent = 0

    def __getattr__(self, name):
        if name.startswith("set"):
            return lambda *a: self.calls.append((name, *a))
        raise AttributeError(name)

    def isRunning(self):  # noqa: N802 - dv's names
        return self.running

    def isEventStreamAvailable(self):  # noqa: N802
        return True

    def isFrameStreamAvailable(self):  # noqa: N802
        return False

    isImuStreamAvailable = isTriggerStreamAvailable = isFrameStreamAvailable  # noqa: N815

    def getEventResolution(self):  # noqa: N802
        return (346, 260)

    def getCameraName(self):  # noqa: N802
        return "DAVIS346_00000499"

    def getSerialNumber(self):  # noqa: N802
        return "00000499"

    def getNextEventBatch(self):  # noqa: N802
        if self.left == 0:
            self.running = False
            return None
        self.left -= 1
        store = self.dv.EventStore()
        for k in range(10):
            store.push_back((1_000_000 + self.sent * 10 + k, k, 2 * k, k % 2 == 0))
        self.sent += 1
        return store


def test_davis_camera_source_settings_and_unplug(monkeypatch):
    dv = pytest.importorskip("dv_processing")
    cam = _FakeDavis(dv)
    monkeypatch.setattr(dv.io.camera, "discover", lambda: ["fake-descriptor"])
    monkeypatch.setattr(dv.io.camera, "open", lambda *a: cam)
    src = DavisCameraSource(settings={"bias_on": [5, 255], "bias_off": [-1, -1], "exposure_us": 8000,
                                      "roi": [10, 20, 100, 80], "hw_noise_filter_us": 1000})
    assert (src.info.width, src.info.height, src.info.serial, src.info.live) == (346, 260, "00000499", True)
    names = [c[0] for c in cam.calls]
    assert names == ["setDavis346BiasCoarseFine", "setAutoExposure", "setExposureDuration",
                     "setBackgroundActivityFilter", "setCropArea"]
    assert cam.calls[0][1:] == (dv.io.camera.DAVIS.Davis346BiasCF.On, 5, 255)
    assert cam.calls[2][1].total_seconds() == 0.008 and cam.calls[3][1] == 4 and cam.calls[4][1] == (10, 20, 100, 80)
    cam.calls.clear()
    assert src.apply({"exposure_us": 0, "roi": []}) == {"exposure_us": 0, "roi": [0, 0, 346, 260]}
    assert cam.calls == [("setAutoExposure", True), ("setCropArea", (0, 0, 346, 260))]
    with pytest.raises(ValueError, match="coarse must be 0-7"):
        src.apply({"bias_diff": [9, 10]})
    with pytest.raises(ValueError, match="outside the 346x260 sensor"):
        src.apply({"roi": [300, 0, 100, 10]})
    items = src.read(0.01) + src.read(0.01)
    ev = concat_events([i.events for i in items])
    assert len(ev) == 20 and ev["y"].tolist()[:3] == [0, 2, 4] and ev["p"].tolist()[:2] == [1, 0]
    with pytest.raises(SourceError, match="DAVIS camera stopped streaming"):
        src.read(0.01)
    src.close()
    assert src.apply({"exposure_us": 100}) == {}  # closed: nothing to apply

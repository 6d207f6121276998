"""Slicer node in-process: event packets straddling windows -> face-cropped count frames, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PolygonStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ros2_evmicro.core.events import make_events
from ros2_evmicro.core.face import crop_resize
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.ros.convert import (
    box_to_polygon,
    camera_info_msg,
    events_to_msg,
    frames_from_msg,
    image_from_msg,
    ns_to_stamp,
    stamp_to_ns,
    watermark_msg,
)
from ros2_evmicro.ros.node import EVENTS_QOS, FRAMES_QOS, LATCHED_QOS

T0_US = 1_700_000_000_000_000  # a multiple of every window used here: windows start at T0_US + k * window


class Rig:
    """The slicer node plus a talker (events, face_roi, camera_info) and a listener (frames, preview, diag)."""

    def __init__(self, ros, **params):
        from ros2_evmicro.nodes.slicer import SlicerNode

        over = [Parameter(k, value=v) for k, v in params.items()]
        self.ros = ros
        self.node = ros.add(SlicerNode(context=ros.context, parameter_overrides=over))
        t = self.talker = ros.add(Node("slicer_talker", context=ros.context))
        self.pub = t.create_publisher(PointCloud2, "events", EVENTS_QOS)
        self.pub_roi = t.create_publisher(PolygonStamped, "face_roi", FRAMES_QOS)
        self.pub_info = t.create_publisher(CameraInfo, "camera_info", LATCHED_QOS)
        self.frames: list[tuple[int, np.ndarray, str, str]] = []
        self.previews: list[Image] = []
        self.statuses = []
        t.create_subscription(Image, "frames", lambda m: self.frames.append(
            (stamp_to_ns(m.header.stamp), frames_from_msg(m), m.header.frame_id, m.encoding)), FRAMES_QOS)
        t.create_subscription(Image, "frames_preview", self.previews.append, FRAMES_QOS)
        t.create_subscription(DiagnosticArray, "/diagnostics",
                              lambda m: self.statuses.extend(s for s in m.status if "slicer" in s.name), 50)
        assert ros.spin_until(lambda: self.pub.get_subscription_count() > 0
                              and self.pub_roi.get_subscription_count() > 0, 10)

    def send(self, rows, frame_id="cam_optical"):
        """Publish one packet of (x, y, p, t_us relative to T0_US) rows; wait until the node took it."""
        x, y, p, t = (np.array(c) for c in zip(*rows, strict=True))
        n0 = self.node.diag.counters["packets"] + self.node.diag.counters.get("packets_waiting_for_size", 0)
        self.pub.publish(events_to_msg(make_events(x, y, p, T0_US + t), frame_id=frame_id))
        assert self.ros.spin_until(
            lambda: self.node.diag.counters["packets"]
            + self.node.diag.counters.get("packets_waiting_for_size", 0) > n0, 10)

    def wait_frames(self, n):
        assert self.ros.spin_until(lambda: len(self.frames) >= n, 10), f"{len(self.frames)} frames, want {n}"
        self.ros.spin_for(0.05)
        return self.frames


def _image(h, w, cells):
    f = np.zeros((2, h, w), np.float32)
    for (c, y, x), v in cells.items():
        f[c, y, x] = v
    return f


def test_packets_straddling_windows_give_exact_counts_and_empty_frames(ros):
    r = Rig(ros, window_ms=10.0, late_tolerance_ms=2.0, width=8, height=8, roi_mode="full", crop_size_px=8)
    # packet 1 holds window 0 and the start of window 1; packet 2 ends window 1, skips window 2 (empty),
    # fills window 3 and proves it closed (45 ms >= 40 ms + 2 ms tolerance); window 4 stays open
    r.send([(1, 2, 1, 1000), (1, 2, 1, 2000), (3, 4, 0, 9999), (5, 5, 1, 10000), (0, 0, 0, 11000)])
    assert r.frames == []  # window 0 waits for the tolerance: watermark 11 ms < 12 ms
    r.send([(2, 2, 1, 15000), (6, 7, 0, 35000), (7, 7, 1, 45000)])
    frames = r.wait_frames(4)
    assert len(frames) == 4
    stamps = [f[0] for f in frames]
    assert stamps == [(T0_US + k * 10_000) * 1000 for k in range(4)]  # window start, ROS time ns
    assert {f[2] for f in frames} == {"cam_optical"} and {f[3] for f in frames} == {"32FC2"}
    want = [
        _image(8, 8, {(1, 2, 1): 2, (0, 4, 3): 1}),
        _image(8, 8, {(1, 5, 5): 1, (0, 0, 0): 1, (1, 2, 2): 1}),
        _image(8, 8, {}),
        _image(8, 8, {(0, 7, 6): 1}),
    ]
    for (_, got, _, _), w in zip(frames, want, strict=True):
        assert got.shape == (2, 8, 8) and got.dtype == np.float32
        np.testing.assert_array_equal(got, w)
    d = r.node.diag
    assert d.counters["windows"] == 4 and d.counters["empty_windows"] == 1
    assert r.node.slicer.stats.events_counted == 7 and d.values["events_per_window_mean"] == pytest.approx(1.8)
    assert d.values["roi_source"] == "full"
    assert "latency_window_to_publish_ms_p99" in d.values and "latency_packet_to_publish_ms_p50" in d.values


def test_watermark_closes_the_window_that_ended_at_once(ros):
    r = Rig(ros, window_ms=10.0, late_tolerance_ms=2.0, width=8, height=8, roi_mode="full", crop_size_px=8)
    r.send([(1, 2, 1, 1000), (3, 4, 0, 9999)])
    assert r.frames == []  # no event at or after 12 ms yet: window 0 is open

    def watermark(t_us):
        n0 = r.node.diag.counters.get("watermarks", 0)
        r.pub.publish(watermark_msg((T0_US + t_us) * 1000, "cam_optical"))
        assert r.ros.spin_until(lambda: r.node.diag.counters.get("watermarks", 0) > n0, 10)

    watermark(9_999)  # window 0 ends at 10 ms: not yet
    r.ros.spin_for(0.1)
    assert r.frames == []
    watermark(10_000)  # every event before 10 ms is out: window 0 closes now, without the 2 ms tolerance
    frames = r.wait_frames(1)
    assert [f[0] for f in frames] == [T0_US * 1000]
    np.testing.assert_array_equal(frames[0][1], _image(8, 8, {(1, 2, 1): 1, (0, 4, 3): 1}))
    # an event the watermark ruled out is dropped and counted, the next window is unaffected
    r.send([(5, 5, 1, 9000), (6, 6, 1, 10500)])
    watermark(20_000)
    frames = r.wait_frames(2)
    np.testing.assert_array_equal(frames[1][1], _image(8, 8, {(1, 6, 6): 1}))
    assert r.node.slicer.stats.n_dropped_late == 1 and r.node.diag.counters["packets"] == 2
    assert r.node.diag.counters["watermarks_off_grid"] == 1  # the one at 9.999 ms
    # a driver whose watermark grid is not the slicer's windows: counted (and logged once); the window that
    # ended before the watermark still closes on it
    r.send([(7, 7, 0, 21_000)])
    watermark(33_000)
    frames = r.wait_frames(3)
    np.testing.assert_array_equal(frames[2][1], _image(8, 8, {(0, 7, 7): 1}))
    assert r.node.diag.counters["watermarks_off_grid"] == 2


def test_load_shedding_drops_whole_windows_once_the_node_is_overloaded(ros):
    """max_backlog_ms: packets that waited longer than the limit between their publish (DDS source time) and the
    node are a stall and still counted; a backlog that rises at three window starts in a row means overload:
    from then on 1 of every 2 windows is counted and the others give no frame (counted). The frames that come
    out are exact. Off (the default), every window is counted."""
    import time

    def packet(rows):
        x, y, p, t = (np.array(c) for c in zip(*rows, strict=True))
        return events_to_msg(make_events(x, y, p, T0_US + t), frame_id="cam_optical")

    def waited(ms):  # rclpy's message info of a packet published `ms` ago
        return {"source_timestamp": time.time_ns() - int(ms * 1e6), "received_timestamp": time.time_ns()}

    # window 0 starts the stream; windows 200.. come after the shedder's start-up grace (0.2 s of event time)
    backlogs = {0: 1.0, 200: 1.0, 201: 60.0, 202: 70.0, 203: 80.0, 204: 1.0, 205: 1.0}  # window k's packet waited
    for limit in (50.0, 0.0):
        r = Rig(ros, window_ms=10.0, late_tolerance_ms=2.0, width=8, height=8, roi_mode="full", crop_size_px=8,
                max_backlog_ms=limit, max_empty_windows=0)
        n = r.node
        for k, ms in backlogs.items():
            x = k % 7
            rows = [(x, x, k % 2, k * 10_000 + 1000), (x + 1, x, 1, k * 10_000 + 9000)]
            for part in ([rows[0]], [rows[1]]) if k == 0 else (rows,):  # the first packet fixes the window grid
                n.on_events(packet(part), waited(ms))
                if k == 0:  # the packets after the first were published after the node's first callback (packets
                    time.sleep(0.15)  # queued before it are the start-up's, never shed)
            n.on_events(watermark_msg((T0_US + (k + 1) * 10_000) * 1000, "cam_optical"), waited(1.0))
        kept = [0, 200, 201, 202, 204] if limit else list(backlogs)
        frames = r.wait_frames(len(kept))
        assert [f[0] for f in frames] == [(T0_US + k * 10_000) * 1000 for k in kept]
        for f, k in zip(frames, kept, strict=True):
            x = k % 7
            np.testing.assert_array_equal(f[1], _image(8, 8, {(k % 2, x, x): 1, (1, x, x + 1): 1}))
        st = n.slicer.stats
        assert (st.windows_shed, st.events_shed) == ((2, 4) if limit else (0, 0))
        assert n.backlog_ms and max(n.backlog_ms) >= 80.0  # the backlog is measured either way
        if limit:
            assert n.shedder.every == 2 and n.diag.values["windows_shed"] == 2 and n.diag.values["shed_every"] == 2
        else:
            assert n.shedder is None


def test_late_packet_within_tolerance_merged_beyond_dropped_and_reported(ros):
    # on bag time (use_sim_time, no /clock): windows and lateness come from the events' times alone
    r = Rig(ros, window_ms=10.0, late_tolerance_ms=3.0, width=4, height=4, roi_mode="full", crop_size_px=4,
            crop_margin=0.0, use_sim_time=True)
    r.send([(0, 0, 1, 1000), (1, 1, 1, 12000)])  # watermark 12 ms: window 0 open until 13 ms
    r.send([(2, 2, 0, 5000)])  # late by 7 ms of sensor time, but its window is still open: merged
    r.send([(3, 3, 1, 14000)])  # closes window 0
    r.send([(2, 2, 0, 6000)])  # window 0 is closed: dropped
    r.send([(0, 3, 0, 30000)])  # closes window 1
    frames = r.wait_frames(2)
    np.testing.assert_array_equal(frames[0][1], _image(4, 4, {(1, 0, 0): 1, (0, 2, 2): 1}))
    np.testing.assert_array_equal(frames[1][1], _image(4, 4, {(1, 1, 1): 1, (1, 3, 3): 1}))
    d = r.node.diag
    assert d.counters["late_packets"] == 1
    assert d.values["dropped_late_events"] == 1 and d.values["late_merged_events"] == 1
    # and on /diagnostics, whose timer runs on the /clock of the bag
    clock = r.talker.create_publisher(Clock, "/clock", 10)

    def published() -> bool:
        return any({kv.key: kv.value for kv in s.values}.get("dropped_late_events") == "1" for s in r.statuses)

    for k in range(1, 40):
        clock.publish(Clock(clock=ns_to_stamp(T0_US * 1000 + k * 500_000_000)))
        if ros.spin_until(published, 0.1):
            break
    assert published()


def test_non_square_sensor_from_camera_info_and_fixed_crop(ros):
    r = Rig(ros, window_ms=10.0, late_tolerance_ms=0.0, roi_mode="full", crop_size_px=12)
    r.send([(0, 0, 1, 50)])  # size unknown yet: held (DDS may deliver events before the latched camera_info)
    assert r.node.diag.counters["packets_waiting_for_size"] == 1 and r.node.slicer is None
    assert not r.frames
    r.pub_info.publish(camera_info_msg(12, 8))
    assert ros.spin_until(lambda: r.node.slicer is not None, 10)
    assert (r.node.slicer.size.width, r.node.slicer.size.height) == (12, 8)
    assert r.node.diag.counters["packets"] == 1  # the held packet, sliced once the size came
    r.send([(11, 0, 1, 100), (0, 7, 0, 200), (5, 3, 1, 300), (0, 0, 0, 10_000)])
    (_, f, _, _), = r.wait_frames(1)
    # the 12x8 sensor sits in the middle of a 12x12 square: sensor row y is crop row y + 2; the held event too
    np.testing.assert_array_equal(f, _image(12, 12, {(1, 2, 0): 1, (1, 2, 11): 1, (0, 9, 0): 1, (1, 5, 5): 1}))

    # switch to a fixed box at runtime: [4, 2, 8, 6] with no margin is a 4x4 square, crop 2 -> 2x2 binning
    res = r.node.set_parameters_atomically([
        Parameter("roi_mode", value="fixed"), Parameter("roi_box", value=[4.0, 2.0, 8.0, 6.0]),
        Parameter("crop_size_px", value=2), Parameter("crop_margin", value=0.0)])
    assert res.successful, res.reason
    r.send([(4, 2, 1, 10_500), (5, 3, 1, 10_600), (7, 5, 0, 10_700), (6, 2, 0, 10_800), (9, 2, 1, 10_900),
            (0, 0, 0, 20_000)])
    frames = r.wait_frames(2)
    # counts per 2x2 block are kept (area mean x 4); (9, 2) lies outside the box
    np.testing.assert_allclose(frames[1][1], _image(2, 2, {(1, 0, 0): 2, (0, 1, 1): 1, (0, 0, 1): 1}), atol=1e-6)
    assert r.node.diag.values["roi_source"] == "fixed"
    # a fixed crop counts only its pixels (the frame's other pixels are never read)
    assert r.node.slicer.region == (4, 2, 8, 6) and r.node.diag.values["counted_region"] == "4,2,8,6"
    # a bad fixed box is refused at runtime and the old values stay
    res = r.node.set_parameters([Parameter("roi_box", value=[5.0, 5.0, 5.0, 9.0])])
    assert not res[0].successful and "roi_box" in res[0].reason
    assert r.node.p.roi_box == [4.0, 2.0, 8.0, 6.0]
    # back to the whole sensor
    assert r.node.set_parameters([Parameter("roi_mode", value="full")])[0].successful
    assert r.node.slicer.region == (0, 0, 12, 8)


def test_topic_roi_center_fallback_warn_then_face_box_then_stale(ros):
    r = Rig(ros, window_ms=10.0, late_tolerance_ms=0.0, width=32, height=32, roi_mode="topic",
            center_box_fraction=0.5, crop_margin=0.0, crop_size_px=16, roi_timeout_s=0.05, preview=True,
            preview_scale=3)
    # no face box yet: the central 16x16 box (8..24), WARN
    r.send([(8, 8, 1, 100), (3, 3, 1, 200), (0, 0, 0, 10_000)])
    (_, f0, _, _), = r.wait_frames(1)
    np.testing.assert_array_equal(f0, _image(16, 16, {(1, 0, 0): 1}))
    assert r.node.roi_source == "center_fallback" and r.node.diag.level == b"\x01"
    # a face box stamped at 15 ms (inside window 1) is used from window 1 on
    r.pub_roi.publish(box_to_polygon((0, 0, 16, 16), (T0_US + 15_000) * 1000))
    assert ros.spin_until(lambda: r.node.diag.counters["face_rois"] == 1, 10)
    r.send([(3, 3, 1, 10_100), (20, 20, 0, 10_200), (0, 0, 0, 20_000)])
    (_, f1, _, _), = r.wait_frames(2)[1:]
    np.testing.assert_array_equal(f1, _image(16, 16, {(1, 3, 3): 1, (0, 0, 0): 1}))  # (0, 0) OFF at 10 ms
    assert r.node.roi_source == "topic" and r.node.diag.level == b"\x00"
    # 100 ms later the box (timeout 50 ms) is held but stale: WARN, crop unchanged
    r.send([(3, 3, 0, 120_100), (0, 0, 0, 130_000)])
    frames = r.wait_frames(13)
    np.testing.assert_array_equal(frames[12][1], _image(16, 16, {(0, 3, 3): 1}))
    assert all(not f[1].any() for f in frames[3:12])  # windows 3..11 had no event: zero frames
    assert r.node.roi_source == "held" and r.node.diag.level == b"\x01"
    # the preview: bgr8, 3x upscaled, OFF in blue at the event's pixel
    assert ros.spin_until(lambda: len(r.previews) >= 13, 5)
    pv = image_from_msg(r.previews[12])
    assert r.previews[12].encoding == "bgr8" and pv.shape == (48, 48, 3)
    assert tuple(pv[10, 10]) == (255, 0, 0) and pv[0:9, 0:9].max() == 0


def test_bad_pointcloud_counted_node_survives(ros):
    r = Rig(ros, window_ms=10.0, width=4, height=4, roi_mode="full", crop_size_px=4)
    bad = events_to_msg(make_events([1], [1], [1], [T0_US]))
    bad.point_step = 16  # disagrees with the contract's fields
    r.pub.publish(bad)
    assert ros.spin_until(lambda: r.node.diag.counters.get("bad_events", 0) == 1, 10)
    # an event outside the sensor is dropped and counted (on_invalid 'drop'), the rest counted
    r.send([(1, 1, 1, 100), (9, 1, 1, 200), (0, 0, 0, 12_000)])
    (_, f, _, _), = r.wait_frames(1)
    np.testing.assert_array_equal(f, _image(4, 4, {(1, 1, 1): 1}))
    assert r.node.diag.values["invalid_events"] == 1


def test_parameter_errors_at_startup(ros):
    from ros2_evmicro.nodes.slicer import SlicerNode

    with pytest.raises(ParamError, match="both width and height"):
        SlicerNode(context=ros.context, parameter_overrides=[Parameter("width", value=100)])
    with pytest.raises(ParamError, match="roi_box"):
        SlicerNode(context=ros.context, parameter_overrides=[Parameter("roi_mode", value="fixed")])
    with pytest.raises(ParamError, match="roi_mode"):
        SlicerNode(context=ros.context, parameter_overrides=[Parameter("roi_mode", value="eyes")])


# -- pure helpers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("box", [(10.3, 20.7, 50.2, 48.9), (-15.0, -5.0, 25.0, 30.0), (70.0, 40.0, 95.5, 70.0),
                                 (200.0, 200.0, 230.0, 230.0)])
def test_crop_counts_equals_crop_resize_of_the_whole_frame(box, rng):
    from ros2_evmicro.nodes.slicer import crop_counts

    counts = rng.integers(0, 5, (2, 60, 80)).astype(np.uint16)
    got = crop_counts(counts, box, 16, 0.2)
    want = crop_resize(counts, box, 16, 0.2)
    assert got.shape == (2, 16, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_roi_history_and_center_box():
    from ros2_evmicro.nodes.slicer import RoiHistory, center_box

    h = RoiHistory(maxlen=3)
    assert h.at(0) is None
    for s, b in [(10, (0, 0, 1, 1)), (20, (0, 0, 2, 2)), (30, (0, 0, 3, 3)), (40, (0, 0, 4, 4))]:
        h.add(s, b)
    h.add(35, (9, 9, 10, 10))  # out of order: ignored
    assert len(h) == 3
    assert h.at(29) == ((0, 0, 2, 2), 20) and h.at(30) == ((0, 0, 3, 3), 30) and h.at(99) == ((0, 0, 4, 4), 40)
    assert h.at(5) == ((0, 0, 2, 2), 20)  # all newer: the oldest kept
    assert center_box(346, 260, 0.5) == (108.0, 65.0, 238.0, 195.0)


def test_packets_held_for_the_sensor_size_are_bounded(ros, monkeypatch):
    from ros2_evmicro.nodes import slicer as slicer_node

    monkeypatch.setattr(slicer_node, "HOLD_MAX_PACKETS", 2)
    r = Rig(ros, window_ms=10.0, late_tolerance_ms=0.0, roi_mode="full", crop_size_px=4)
    for t in (50, 60, 70):
        r.send([(1, 1, 1, t)])
    c = r.node.diag.counters
    assert c["packets_waiting_for_size"] == 3 and c["packets_dropped_waiting_for_size"] == 1
    r.pub_info.publish(camera_info_msg(4, 4))
    assert ros.spin_until(lambda: r.node.slicer is not None, 10)
    r.send([(0, 0, 0, 10_000)])
    (_, f, _, _), = r.wait_frames(1)
    assert f.sum() == 2  # the two held events; the third packet was dropped, counted

"""Recorder node: in-process recording of a protocol run, services, disk check; a SIGKILLed recorder in a
subprocess is recovered by repair_bag; SIGTERM closes cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros2_evmicro.core.bagio import BagReader, check_bag, repair_bag
from ros2_evmicro.core.events import concat_events, make_events
from ros2_evmicro.core.session import read_markers

REPO = Path(__file__).resolve().parent.parent


def _packet(i: int, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng([3, i])
    return make_events(
        rng.integers(0, 346, n),
        rng.integers(0, 260, n),
        rng.integers(0, 2, n),
        np.sort(rng.integers(0, 10_000, n)) + 1_000_000 + i * 10_000,
    )


def _call(ros, node, srv_name: str):
    from std_srvs.srv import Trigger

    cli = node.create_client(Trigger, srv_name)
    assert ros.spin_until(lambda: cli.service_is_ready(), 5.0), f"{srv_name} not available"
    fut = cli.call_async(Trigger.Request())
    assert ros.spin_until(fut.done, 5.0)
    return fut.result()


def test_records_protocol_session(ros, tmp_path):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from ros2_evmicro.nodes.protocol_player import ProtocolPlayer
    from ros2_evmicro.nodes.recorder import Recorder, default_topics
    from ros2_evmicro.ros.convert import camera_info_msg, events_to_msg, image_to_msg
    from ros2_evmicro.ros.node import EVENTS_QOS, LATCHED_QOS, SENSOR_QOS

    assert default_topics(["davis", "webcam"]) == [
        "/davis/events",
        "/davis/camera_info",
        "/davis/time_reference",
        "/webcam/events",
        "/webcam/camera_info",
        "/webcam/time_reference",
        "/davis/image_raw",
        "/davis/imu",
        "/webcam/image_raw",
        "/davis/face_roi",
        "/webcam/face_roi",
        "/protocol/marker",
        "/diagnostics",
    ]
    ctx = ros.context
    pub = ros.add(Node("test_pub", context=ctx))
    info_pub = pub.create_publisher(CameraInfo, "/davis/camera_info", LATCHED_QOS)
    info_pub.publish(camera_info_msg(346, 260, 1, "davis346_optical"))  # latched, before the recorder exists
    rec = ros.add(
        Recorder(
            context=ctx,
            parameter_overrides=[
                Parameter("out_dir", value=str(tmp_path)),
                Parameter("subject", value="S07"),
                Parameter("session", value="3"),
                Parameter("cameras", value=["davis", "webcam"]),
                Parameter("split", value="segment"),
                Parameter("autostart", value=False),
                Parameter("discovery_period_s", value=0.1),
                Parameter("min_free_gb", value=0.0),
                Parameter("lux", value=450.0),
                Parameter("operator", value="op1"),
                Parameter("calibration_files", value=["rig/davis.yaml"]),
            ],
        )
    )
    assert not rec.recording
    r = _call(ros, pub, "/recorder/start")
    assert r.success and "S07_3" in r.message
    assert not _call(ros, pub, "/recorder/start").success  # already recording
    ev_pub = pub.create_publisher(PointCloud2, "/davis/events", EVENTS_QOS)
    im_pub = pub.create_publisher(Image, "/webcam/image_raw", SENSOR_QOS)
    assert ros.spin_until(
        lambda: {"/davis/events", "/webcam/image_raw", "/davis/camera_info"} <= set(rec.subs), 5
    )
    player = ros.add(
        ProtocolPlayer(
            context=ctx,
            parameter_overrides=[
                Parameter("run", value="demo"),
                Parameter("subject", value="S07"),
                Parameter("session", value="3"),
                Parameter("headless", value=True),
                Parameter("time_scale", value=0.02),
                Parameter("start_delay_s", value=0.3),
                Parameter("finish_delay_s", value=0.3),
            ],
        )
    )
    # the marker topic appears late: the periodic discovery picks it up
    assert ros.spin_until(lambda: "/protocol/marker" in rec.subs, 5)
    sent_ev, n_img = [], 0
    t_end = time.monotonic() + 15
    while not player.finished and time.monotonic() < t_end:
        ev = _packet(len(sent_ev))
        ev_pub.publish(events_to_msg(ev, frame_id="davis346_optical"))
        sent_ev.append(ev)
        im_pub.publish(image_to_msg(np.full((24, 32, 3), n_img % 256, np.uint8), "bgr8", n_img))
        n_img += 1
        ros.spin_for(0.01)
    assert player.finished
    assert ros.spin_until(
        lambda: (
            rec.counts.get("/davis/events") == len(sent_ev) and rec.counts.get("/webcam/image_raw") == n_img
        ),
        5,
    )
    folder = rec.folder
    r = _call(ros, pub, "/recorder/stop")
    assert r.success and not rec.recording
    assert not _call(ros, pub, "/recorder/stop").success

    # the bag: every message, in order, readable by rosbags' own reader too
    rep = check_bag(folder)
    assert rep.ok, rep.text()
    with BagReader(folder) as br:
        topics = br.topics
        assert topics["/davis/events"][1] == len(sent_ev)
        assert topics["/webcam/image_raw"][1] == n_img
        assert topics["/davis/camera_info"][1] == 1
        np.testing.assert_array_equal(br.events("/davis/events"), concat_events(sent_ev))
        frames = [int(a[0, 0, 0]) for _, _, a in br.images("/webcam/image_raw")]
        assert frames == [i % 256 for i in range(n_img)]
        markers = br.markers()
    assert markers == player.sm.history  # every marker, in order, unchanged
    phases = [m["phase"] for m in markers]
    assert phases == ["demo", "countdown", "perform", "rest"] * 3 + ["done"]
    assert [m["segment"] for m in markers[:4]] == ["S07_AU12_t1"] * 4
    from rosbags.highlevel import AnyReader

    with AnyReader([folder]) as ar:
        assert ar.message_count == rep.messages

    # split per segment: a new file at each countdown marker
    files = sorted(p.name for p in folder.glob("*.mcap"))
    assert files == [f"S07_3_{i}.mcap" for i in range(4)]
    csv_rows = read_markers(folder)
    assert [r["phase"] for r in csv_rows] == phases
    assert [r["bag_file"] for r in csv_rows if r["phase"] == "countdown"] == files[1:]
    assert all(r["recv_ns"] >= r["stamp_ns"] for r in csv_rows)
    info = yaml.safe_load((folder / "session.yaml").read_text())
    assert info["subject"] == "S07" and info["session"] == "3" and info["lux"] == 450.0
    assert info["operator"] == "op1" and info["calibration_files"] == ["rig/davis.yaml"]
    assert info["software_version"] and info["status"] == "stopped" and info["markers"] == 13
    assert info["end_ns"] > info["start_ns"] > 0 and info["start_iso"].endswith("+00:00")
    assert info["topics"]["/davis/events"] == {"type": "sensor_msgs/msg/PointCloud2", "count": len(sent_ev)}
    assert [f["segment"] for f in info["files"]] == ["", "S07_AU12_t1", "S07_AU45_t1", "S07_AU51_t1"]
    assert sum(f["messages"] for f in info["files"]) == rep.messages


def test_refuses_to_start_without_disk_space(ros, tmp_path):
    from rclpy.parameter import Parameter

    from ros2_evmicro.nodes.recorder import Recorder

    rec = ros.add(
        Recorder(
            context=ros.context,
            parameter_overrides=[
                Parameter("out_dir", value=str(tmp_path)),
                Parameter("min_free_gb", value=1e9),
            ],
        )
    )
    assert not rec.recording
    assert "refusing to record" in rec.last_error and "min_free_gb" in rec.last_error
    assert rec.diag.level == bytes([2])  # ERROR
    assert not any(tmp_path.iterdir())
    ok, msg = rec.start()
    assert not ok and "GiB free" in msg


def _spawn_recorder(out: Path, topic: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "ros2_evmicro.nodes.recorder",
        "--ros-args",
        "-p",
        f"out_dir:={out}",
        "-p",
        f"topics:=['{topic}']",
        "-p",
        "flush_period_s:=0.2",
        "-p",
        "discovery_period_s:=0.1",
        "-p",
        "min_free_gb:=0.0",
        "-p",
        "chunk_size_kb:=32",
        "-p",
        "subject:=S09",
        "-p",
        "session:=s1",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _publish_and_wait(ros, topic: str, n: int, proc: subprocess.Popen) -> tuple:
    """Publish n packets; wait until the recorder reports them all flushed (its /diagnostics 'flushed')."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from sensor_msgs.msg import PointCloud2

    from ros2_evmicro.ros.convert import events_to_msg
    from ros2_evmicro.ros.node import EVENTS_QOS

    node = ros.add(Node(f"fault_pub_{os.getpid()}_{n}", context=ros.context))
    flushed = {"n": -1}

    def on_diag(msg):
        for st in msg.status:
            if st.name == "recorder":
                kv = {k.key: k.value for k in st.values}
                if "flushed" in kv:
                    flushed["n"] = int(kv["flushed"])

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub = node.create_publisher(PointCloud2, topic, EVENTS_QOS)
    ok = ros.spin_until(lambda: pub.get_subscription_count() >= 1 or proc.poll() is not None, 20)
    assert ok and proc.poll() is None, (
        proc.stdout.read().decode() if proc.poll() is not None else "no subscriber"
    )
    ros.spin_for(0.3)
    sent = []
    for i in range(n):
        ev = _packet(i, 2000)
        pub.publish(events_to_msg(ev))
        sent.append(ev)
        ros.spin_for(0.005)
    assert ros.spin_until(lambda: flushed["n"] >= n, 15), f"recorder flushed {flushed['n']} of {n}"
    return pub, sent, flushed["n"]


@pytest.mark.slow
def test_sigkill_then_repair(ros, tmp_path):
    from ros2_evmicro.ros.convert import events_to_msg

    topic = "/fault/events"
    proc = _spawn_recorder(tmp_path, topic)
    try:
        pub, sent, flushed = _publish_and_wait(ros, topic, 40, proc)
        for i in range(40, 46):  # more packets, killed before they are flushed
            pub.publish(events_to_msg(_packet(i, 2000)))
        ros.spin_for(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    folder = tmp_path / "S09_s1"
    before = check_bag(folder)
    assert not before.ok and not before.files[0].complete
    after = repair_bag(folder)
    assert after.ok, after.text()
    assert 40 <= flushed <= after.messages <= 46
    with BagReader(folder) as r:
        got = r.events(topic)
        n = r.topics[topic][1]
    allp = sent + [_packet(i, 2000) for i in range(40, 46)]
    np.testing.assert_array_equal(got, concat_events(allp[:n]))


@pytest.mark.slow
def test_sigterm_closes_cleanly(ros, tmp_path):
    topic = "/term/events"
    proc = _spawn_recorder(tmp_path, topic)
    try:
        _, sent, _ = _publish_and_wait(ros, topic, 10, proc)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert rc == 0, proc.stdout.read().decode()[-4000:]
    folder = tmp_path / "S09_s1"
    rep = check_bag(folder)
    assert rep.ok, rep.text()  # summary and metadata written without a repair
    assert rep.topics == {topic: 10}
    info = yaml.safe_load((folder / "session.yaml").read_text())
    assert info["status"] == "interrupted" and info["topics"][topic]["count"] == 10

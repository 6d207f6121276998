"""Dashboard node in-process: frames, AU scores, reconstructions and alerts in; a bgr8 composite out; video
and summary written at close; finished after the idle timeout or the duration."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from ros2_evmicro.core.au import NUM_AUS, au_index
from ros2_evmicro.ros.convert import au_to_msg, frames_to_msg, image_from_msg, image_to_msg
from ros2_evmicro.ros.node import FRAMES_QOS

FRAME_NS = 33_000_000


def _dashboard(ros, tmp_path, **params):
    from ros2_evmicro.nodes.dashboard import DashboardNode

    p = {"camera": "dashcam", "out_dir": str(tmp_path / "out"), "rate_hz": 20.0, "show": "false",
         "idle_timeout_s": 1.0, "log_aus": True, **params}
    return ros.add(DashboardNode(context=ros.context, parameter_overrides=[Parameter(k, value=v)
                                                                           for k, v in p.items()]))


def test_dashboard_composes_publishes_and_summarises(ros, tmp_path):
    dash = _dashboard(ros, tmp_path)
    src = ros.add(Node("dash_src", context=ros.context))
    pf = src.create_publisher(Image, "/dashcam/frames", FRAMES_QOS)
    pa = src.create_publisher(JointState, "evmicro/au", FRAMES_QOS)
    pr = src.create_publisher(Image, "evmicro/face_recon", FRAMES_QOS)
    pal = src.create_publisher(String, "evmicro/alerts", 100)
    got = []
    src.create_subscription(Image, "evmicro/dashboard", got.append, FRAMES_QOS)
    assert ros.spin_until(lambda: all(p.get_subscription_count() > 0 for p in (pf, pa, pr, pal)), 10)
    rng = np.random.default_rng(3)
    n = 30
    t0 = src.get_clock().now().nanoseconds - n * FRAME_NS - 50_000_000  # stamps in the recent past
    for k in range(n):
        stamp = t0 + k * FRAME_NS
        ev = np.zeros((2, 64, 64), np.float32)
        ev[1, 20:30, 20:30] = rng.poisson(2.0, (10, 10))
        pf.publish(frames_to_msg(ev, stamp))
        if k != 12:  # one frame gets no AU scores: a dropped frame
            s = np.full(NUM_AUS, 0.05)
            if 5 <= k < 20:
                s[au_index(12)] = 0.8
            pa.publish(au_to_msg(s, stamp))
        pr.publish(image_to_msg((rng.random((64, 64)) * 255).astype(np.uint8), "mono8", stamp))
        if k == 15:
            pal.publish(String(data=json.dumps({"t_ns": stamp, "t": 0.5, "kind": "long_blink",
                                                "message": "long blink 450 ms"})))
        ros.spin_for(0.01)
    assert ros.spin_until(lambda: dash.n["au"] == n - 1 and dash.n["frames"] == n and dash.n["recon"] == n, 10)
    assert ros.spin_until(lambda: len(got) >= 2, 10)
    img = image_from_msg(got[-1])
    assert got[-1].encoding == "bgr8" and img.shape == (720, 1280, 3)
    assert img.std() > 10
    assert dash.alerts and dash.alerts[0]["t"] == (dash.alerts[0]["t_ns"] - dash.t0_ns) / 1e9
    # the input has stopped: finished after idle_timeout_s
    assert not dash.finished
    assert ros.spin_until(lambda: dash.finished, 5)
    assert "input ended" in dash.finish_reason
    dash.close()
    out = tmp_path / "out"
    doc = json.loads((out / "summary.json").read_text())
    segs = [s for s in doc["au_segments"] if s["au"] == "AU12"]
    assert len(segs) == 1 and segs[0]["peak"] == 0.8
    assert abs(segs[0]["start_s"] - 5 * FRAME_NS / 1e9) < 1e-6
    assert doc["latency_ms"]["event->AU"]["n"] == n - 1 and doc["latency_ms"]["event->AU"]["p50"] > 0
    assert doc["latency_ms"]["event->recon"]["n"] == n
    assert doc["dropped_frames"]["frames without AU scores"] == 1
    assert doc["dropped_frames"]["frames without reconstruction"] == 0
    assert [a["kind"] for a in doc["alerts"]] == ["long_blink"]
    assert "AU12" in (out / "summary.md").read_text()
    assert cv2.imread(str(out / "timeline.png")) is not None
    cap = cv2.VideoCapture(str(out / "dashboard.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (720, 1280, 3)
    assert dash.diag.values["dropped_frames_au"] == 1


def test_dashboard_duration_without_input(ros, tmp_path):
    dash = _dashboard(ros, tmp_path, duration_s=0.3, idle_timeout_s=0.0, out_dir="")
    assert ros.spin_until(lambda: dash.finished, 5)
    assert "duration_s=0.3" in dash.finish_reason
    dash.close()
    assert not (tmp_path / "out").exists()


def test_dashboard_shows_driver_monitor_levels_and_alerts(ros, tmp_path):
    from test_monitor import scripted

    from ros2_evmicro.nodes.driver_monitor import DriverMonitorNode

    mon = ros.add(DriverMonitorNode(context=ros.context, parameter_overrides=[Parameter("report_period_s",
                                                                                        value=0.2)]))
    dash = _dashboard(ros, tmp_path, out_dir="", idle_timeout_s=0.0)
    src = ros.add(Node("dash_src2", context=ros.context))
    pa = src.create_publisher(JointState, "evmicro/au", FRAMES_QOS)
    assert ros.spin_until(lambda: pa.get_subscription_count() >= 2, 10)
    t, s = scripted(4.5, [(52, 1.0, 3.0)], seed=21)
    t0 = src.get_clock().now().nanoseconds - 5_000_000_000
    for i in range(0, len(t), 10):
        for ti, si in zip(t[i:i + 10], s[i:i + 10], strict=True):
            pa.publish(au_to_msg(si, t0 + int(ti)))
        k = min(i + 10, len(t))
        assert ros.spin_until(lambda k=k: mon.diag.counters["au_msgs"] >= k and dash.n["au"] >= k, 10)
    assert ros.spin_until(lambda: dash.levels.get("distraction") == "WARN", 10), dash.levels
    assert dash.levels["drowsiness"] == "OK"
    assert "AU52" in dash.level_notes["distraction"]
    assert ros.spin_until(lambda: "look_away" in [a["kind"] for a in dash.alerts], 10)
    img = dash.compose()
    assert img.shape == (720, 1280, 3)


def test_console_script_exits_when_finished(tmp_path):
    """Run as its own process (launch: required node), the dashboard ends its process when finished."""
    import os
    import subprocess
    import sys

    out = tmp_path / "proc"
    proc = subprocess.run(
        [sys.executable, "-m", "ros2_evmicro.nodes.dashboard", "--ros-args", "-p", "duration_s:=0.5",
         "-p", f"out_dir:={out}", "-p", "show:=false", "-p", "rate_hz:=5.0"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(), cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert "duration_s=0.5 reached" in proc.stderr + proc.stdout
    assert (out / "summary.json").is_file() and (out / "dashboard.mp4").stat().st_size > 0

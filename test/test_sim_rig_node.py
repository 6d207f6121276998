"""The simulated rig node: event packets go out when their last event has happened, cut at each window
boundary and followed there by a watermark (docs/interfaces.md)."""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosutil import check_watermark_promises
from sensor_msgs.msg import PointCloud2

from ros2_evmicro.ros.convert import events_from_msg, stamp_to_ns


def _run(ros, **params):
    from ros2_evmicro.nodes.sim_rig import SimRigNode

    got: list[tuple[int, PointCloud2]] = []
    sub = ros.add(Node("sim_rig_probe", context=ros.context))
    deep = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=5000)
    sub.create_subscription(PointCloud2, "/davis/events",
                            lambda m: got.append((sub.get_clock().now().nanoseconds, m)), deep)
    base = {"cameras": ["davis"], "scenario": "idle", "duration_s": 0.5, "aps": False, "imu": False,
            "publish_truth": False}
    base.update(params)
    node = ros.add(SimRigNode(context=ros.context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))
    assert ros.spin_until(lambda: node.ended, 30), "the sim did not finish"
    ros.spin_until(lambda: len(got) >= node.counts["packets"] + node.counts["watermarks"], 5)
    node.close()
    return node, got


def test_packets_are_cut_on_the_window_grid_and_followed_by_watermarks(ros):
    node, got = _run(ros, playback_rate=1.0)
    wms = [m for _, m in got if m.width == 0]
    assert node.counts["watermarks"] == len(wms) >= 13  # 0.5 s of 33 ms windows
    check_watermark_promises([m for _, m in got], 33_000)
    for recv_ns, m in got:
        if m.width == 0:
            assert stamp_to_ns(m.header.stamp) <= recv_ns, "a watermark in the future"
        else:
            t = events_from_msg(m)["t"]
            # a packet never crosses a window boundary, and its events have all happened when it is received
            assert int(t[0]) // 33_000 == int(t[-1]) // 33_000
            assert int(t[-1]) <= recv_ns // 1000


def test_no_watermarks_when_the_grid_is_off(ros):
    node, got = _run(ros, playback_rate=0.0, watermark_grid_ms=0.0)
    assert node.counts["watermarks"] == 0 and all(m.width > 0 for _, m in got)
    t = np.concatenate([events_from_msg(m)["t"] for _, m in got])
    assert len(t) == node.counts["events"] > 0 and np.all(np.diff(t) >= 0)

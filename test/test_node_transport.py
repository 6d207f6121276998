"""Node tests: a 100k-event packet between two processes, bytes equal; a malformed PointCloud2 is rejected,
logged and counted, and the node keeps running."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2, PointField

from ros2_evmicro.ros.convert import events_from_msg, events_to_msg
from ros2_evmicro.ros.loadgen import digest, make_packet
from ros2_evmicro.ros.node import EVENTS_QOS


def test_100k_packet_between_two_processes(ros):
    topic = "/transport_test/events"
    got = []
    node = ros.add(Node("receiver", context=ros.context))
    node.create_subscription(PointCloud2, topic, got.append, EVENTS_QOS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ros2_evmicro.cli", "loadgen", "--topic", topic, "--rate", "10e6",
         "--packet-ms", "10", "--duration", "0.01", "--seed", "7", "--width", "1280", "--height", "720"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert ros.spin_until(lambda: len(got) >= 1, timeout_s=60), "no packet arrived"
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    sent = json.loads(out.strip().splitlines()[-1])
    msg = got[0]
    assert msg.width == 100_000
    assert digest(msg.data) == sent["digests"][0]
    expect = make_packet(7, 0, 100_000, 1280, 720, 0, 10_000)
    ev = events_from_msg(msg)
    np.testing.assert_array_equal(ev[["x", "y", "p"]], expect[["x", "y", "p"]])
    np.testing.assert_array_equal(np.diff(ev["t"]), np.diff(expect["t"]))
    assert bytes(msg.data) == bytes(events_to_msg(expect).data)


def test_malformed_pointcloud_logged_counted_node_survives(ros):
    from ros2_evmicro.nodes.event_monitor import EventMonitor

    mon = ros.add(EventMonitor(context=ros.context, parameter_overrides=[
        Parameter("topic", value="/bad_test/events"), Parameter("width", value=64), Parameter("height", value=64)]))
    talker = ros.add(Node("talker", context=ros.context))
    pub = talker.create_publisher(PointCloud2, "/bad_test/events", EVENTS_QOS)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0, 10)
    bad = PointCloud2()
    bad.fields = [PointField(name="x", offset=0, datatype=7, count=1), PointField(name="y", offset=4, datatype=7,
                                                                                  count=1)]
    bad.point_step, bad.width, bad.height, bad.row_step = 8, 1, 1, 8
    bad.data = bytes(8)
    pub.publish(bad)
    assert ros.spin_until(lambda: mon.diag.counters.get("bad_events", 0) == 1, 10)
    # out-of-sensor coordinates are caught too
    pub.publish(events_to_msg(make_packet(1, 0, 10, 100, 100, 0, 1000)))
    assert ros.spin_until(lambda: mon.diag.counters.get("bad_events", 0) == 2, 10)
    good = make_packet(1, 0, 500, 64, 64, 0, 1000)
    pub.publish(events_to_msg(good))
    assert ros.spin_until(lambda: mon.diag.counters.get("events", 0) == 500, 10), "node stopped after bad input"
    status = mon.diag.build()
    kv = {k.key: k.value for k in status.values}
    assert kv["bad_events"] == "2" and kv["events"] == "500"

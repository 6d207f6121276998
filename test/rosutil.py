"""Helpers for node tests: an rclpy context per test and spinning until a condition or a timeout; the check of
an event stream's watermarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


class RosHarness:
    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin_until(self, cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            self.executor.spin_once(timeout_sec=0.02)
            if cond():
                return True
        return cond()

    def spin_for(self, seconds: float) -> None:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self):
        for n in reversed(self.nodes):
            close = getattr(n, "close", None)
            if callable(close):
                close()
            self.executor.remove_node(n)
            n.destroy_node()
        rclpy.try_shutdown(context=self.context)


def check_watermark_promises(msgs, grid_us: int, exact: bool = True) -> None:
    """Every watermark (events packet with ``width`` 0) of ``msgs`` (PointCloud2, in arrival order) lies on the
    window grid (in the microseconds the slicer reads) and keeps its promise: the events received after it are
    all at or after its stamp. ``exact`` (recorded sources, whose device -> ROS mapping is fixed): the packets
    before it also end there, their events are all earlier. A live clock fit may move between the cut and the
    stamps, so a live packet may end a little past the grid point."""
    from ros2_evmicro.ros.convert import events_from_msg, stamp_to_ns

    seen_max, floor = -1, -1
    for m in msgs:
        s_us = stamp_to_ns(m.header.stamp) // 1000
        if m.width == 0:
            assert s_us % grid_us == 0, "a watermark off the window grid"
            assert not exact or seen_max < s_us, "an event at or after a watermark came before it"
            floor = s_us
        else:
            t = events_from_msg(m)["t"]
            assert int(t.min()) >= floor, "an event before a watermark came after it"
            seen_max = max(seen_max, int(t.max()))

"""Helpers for node tests: an rclpy context per test and spinning until a condition or a timeout."""

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

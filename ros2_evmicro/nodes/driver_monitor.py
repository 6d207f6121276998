"""Driver monitor node: AU scores in, drowsiness/distraction levels on /diagnostics and events on alerts.

Subscribes ``evmicro/au`` (``sensor_msgs/JointState``, the 21 AU scores); feeds
:class:`ros2_evmicro.core.monitor.DriverMonitor` with ``header.stamp`` as the sample time; publishes on
``/diagnostics`` the statuses ``evmicro/drowsiness`` and ``evmicro/distraction`` (OK / WARN / ERROR, STALE
when no AU message came for ``stale_s``; key values: blink rate, blink duration, eye closure fraction,
head/gaze away times, the score) every ``report_period_s`` and at once on a level change; publishes the
monitor's events as JSON on ``evmicro/alerts`` (``std_msgs/String``; ordinary blinks only with
``publish_blinks``), and keeps them in :attr:`DriverMonitorNode.events` for a summary.
"""

from __future__ import annotations

import json
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from ros2_evmicro.core.monitor import LEVELS, DriverMonitor, MonitorError, format_event
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.ros.convert import au_from_msg, stamp_to_ns
from ros2_evmicro.ros.node import FRAMES_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.driver_monitor import SPEC

ALERTS_QOS_DEPTH = 100
STATUS_NAMES = {"drowsiness": "evmicro/drowsiness", "distraction": "evmicro/distraction"}
_STALE = 3


def _kv(key: str, v: Any) -> KeyValue:
    if isinstance(v, float):
        return KeyValue(key=key, value="nan" if v != v else f"{v:.4g}")
    return KeyValue(key=key, value=str(v))


class DriverMonitorNode(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        try:
            self.monitor = DriverMonitor(self.p)
        except MonitorError as err:
            raise ParamError(f"node {self.get_name()}: {err}") from None
        self.events: list[dict[str, Any]] = []
        self.last_rx: float | None = None  # monotonic time of the last AU message
        self.diag.timer.cancel()
        self.diag.timer = self.create_timer(self.p.report_period_s, self.report)
        self.alerts_pub = self.create_publisher(String, "evmicro/alerts", ALERTS_QOS_DEPTH)
        self.sub = self.create_subscription(JointState, "evmicro/au", self.guard(self.on_au, "au"), FRAMES_QOS)

    def on_parameters_changed(self, changed: dict[str, Any]) -> None:
        try:
            self.monitor.configure(self.p)
        except MonitorError as err:
            raise ValueError(str(err)) from None

    def on_au(self, msg: JointState) -> None:
        scores = au_from_msg(msg)
        t_ns = stamp_to_ns(msg.header.stamp)
        events = self.monitor.update(t_ns, scores)
        self.last_rx = time.monotonic()
        self.diag.count("au_msgs")
        level_change = False
        for ev in events:
            self.events.append(ev)
            if ev["kind"] in STATUS_NAMES:
                level_change = True
                log = self.get_logger().warning if ev["level"] != "OK" else self.get_logger().info
                log(format_event(ev))
            elif ev["kind"] != "blink":
                self.get_logger().info(format_event(ev))
            if ev["kind"] != "blink" or self.p.publish_blinks:
                self.alerts_pub.publish(String(data=json.dumps(ev)))
        if len(self.events) > self.p.max_events:
            del self.events[: len(self.events) - self.p.max_events]
        if level_change:
            self.report()

    def statuses(self) -> list[DiagnosticStatus]:
        """The two monitor statuses as they would be published now."""
        stale = self.last_rx is None or time.monotonic() - self.last_rx > self.p.stale_s
        out = []
        for name, a in self.monitor.status().items():
            level = _STALE if stale else LEVELS.index(a.level)
            msg = ("no AU input" if self.last_rx is None else "AU input stopped") if stale else a.message
            vals = [_kv("level", a.level), _kv("score", a.score), _kv("reason", a.reason)]
            vals += [_kv(k, v) for k, v in a.values.items()]
            out.append(DiagnosticStatus(level=bytes([level]), name=STATUS_NAMES[name], message=msg,
                                        hardware_id=self.get_fully_qualified_name(), values=vals))
        return out

    def report(self) -> None:
        self.diag.extra = self.statuses()
        self.diag.set("events", len(self.events))
        self.diag.publish()


NODE = DriverMonitorNode


def main(args=None) -> int:
    return run_node(DriverMonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

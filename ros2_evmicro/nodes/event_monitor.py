"""Event monitor: subscribes to an event topic and reports rates, latency and malformed packets."""

from __future__ import annotations

import zlib

import numpy as np
from sensor_msgs.msg import PointCloud2

from ros2_evmicro.core.events import validate_events
from ros2_evmicro.ros.convert import events_from_msg, is_watermark, stamp_to_ns
from ros2_evmicro.ros.node import EVENTS_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.event_monitor import SPEC


class EventMonitor(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.diag.timer.cancel()
        self.diag.timer = self.create_timer(self.p.report_period_s, self.diag.publish)
        self.crc = 0
        self.n_events = 0
        self.n_packets = 0
        self.n_on = 0
        self.latencies_ms: list[float] = []
        self.sub = self.create_subscription(PointCloud2, self.p.topic, self.guard(self.on_events, "events"),
                                            EVENTS_QOS)

    def on_events(self, msg: PointCloud2) -> None:
        recv_ns = self.now_ns()
        if is_watermark(msg):  # no events: the driver's "every event before my stamp is out"
            self.diag.count("watermarks")
            return
        events = events_from_msg(msg)
        w, h = self.p.width, self.p.height
        validate_events(events, w or None, h or None, time_tolerance_us=self.p.time_tolerance_us)
        if self.p.digest:
            self.crc = zlib.crc32(memoryview(np.asarray(msg.data)), self.crc)
        n = len(events)
        self.n_packets += 1
        self.n_events += n
        self.n_on += int(np.count_nonzero(events["p"])) if n else 0
        lat = (recv_ns - stamp_to_ns(msg.header.stamp)) / 1e6
        self.latencies_ms.append(lat)
        if len(self.latencies_ms) > 10000:
            del self.latencies_ms[:5000]
        d = self.diag
        d.count("packets")
        d.count("events", n)
        d.set("on_fraction", self.n_on / max(self.n_events, 1))
        d.set("stamp_to_receive_ms_p50", float(np.percentile(self.latencies_ms[-1000:], 50)))
        d.set("stamp_to_receive_ms_p99", float(np.percentile(self.latencies_ms[-1000:], 99)))
        if self.p.digest:
            d.set("crc32", self.crc)


NODE = EventMonitor


def main(args=None) -> int:
    return run_node(EventMonitor, args)


if __name__ == "__main__":
    raise SystemExit(main())

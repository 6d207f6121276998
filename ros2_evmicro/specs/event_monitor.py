"""Parameters of the event monitor node (rates, latency and integrity of an event topic)."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "event_monitor",
    (
        Param("topic", "events", "event topic to watch (PointCloud2 of the contract)", dynamic=False),
        Param("width", 0, "sensor width for bounds checks (0 = do not check)", "px", (0, 65535)),
        Param("height", 0, "sensor height for bounds checks (0 = do not check)", "px", (0, 65535)),
        Param("time_tolerance_us", 1000, "allowed backwards jump of event time inside a packet", "us", (0, None)),
        Param("report_period_s", 1.0, "period of the diagnostics report", "s", (0.05, 3600.0), dynamic=False),
        Param("digest", False, "keep a running CRC32 of the received bytes (integrity tests)"),
    ),
    "Watches one event topic: packet and event rates, ON/OFF balance, stamp-to-receive latency, malformed "
    "packets. Publishes the figures on /diagnostics.",
)

"""Event load generator: publishes seeded random event packets at a chosen event rate and packet period.

Used to check a machine's transport (``evmicro loadgen``), by the two-process node test, and by the
publish/receive benchmark. The packets are reproducible from (seed, index), so a receiver can rebuild what
was sent and compare bytes.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from sensor_msgs.msg import PointCloud2

from ros2_evmicro.core.events import make_events
from ros2_evmicro.ros.convert import events_to_msg, warm_up
from ros2_evmicro.ros.node import EVENTS_QOS


def make_packet(seed: int, index: int, n: int, width: int, height: int, t0_us: int, period_us: int) -> np.ndarray:
    """Packet ``index`` of a seeded stream: ``n`` events spread uniformly over its period, sorted by time."""
    rng = np.random.default_rng([seed, index])
    t = t0_us + index * period_us + np.sort(rng.integers(0, max(period_us, 1), n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n), t)


def digest(buf) -> str:
    return hashlib.sha256(memoryview(buf).cast("B")).hexdigest()


def publish_stream(node, topic: str, *, rate_ev_s: float, packet_ms: float, duration_s: float, width: int = 1280,
                   height: int = 720, seed: int = 0, wait_subscribers: int = 1, wait_s: float = 20.0,
                   pregenerate: int = 16, stamp: str = "publish", log=print) -> dict:
    """Publish packets paced on the wall clock; returns counts and the sha256 of every packet's bytes.

    ``pregenerate`` distinct packets are built up front and cycled (with a fresh stamp each time), so
    the generator measures the transport, not numpy.

    ``stamp``: ``'publish'`` stamps a packet with the wall time at which it is published, its events spread
    over the packet period from there (the transport's stamp-to-receive delay); ``'camera'`` stamps it as a
    camera driver does: its events lie in the packet period that has just ended, so the last one happened at
    publish time (the honest clock for event-to-output latency: no event is stamped in the future).
    """
    if stamp not in ("publish", "camera"):
        raise ValueError(f"stamp must be 'publish' or 'camera', got {stamp!r}")
    pub = node.create_publisher(PointCloud2, topic, EVENTS_QOS)
    t_wait = time.monotonic() + wait_s
    while pub.get_subscription_count() < wait_subscribers and time.monotonic() < t_wait:
        time.sleep(0.01)
    if pub.get_subscription_count() < wait_subscribers:
        raise TimeoutError(f"no subscriber on {topic} after {wait_s} s")
    time.sleep(0.2)  # let the reliable writer match the readers' endpoints
    period_us = int(packet_ms * 1000)
    n = max(int(round(rate_ev_s * packet_ms / 1000)), 0)
    n_packets = max(int(round(duration_s * 1000 / packet_ms)), 1)
    packets = [make_packet(seed, i, n, width, height, 0, period_us) for i in range(min(pregenerate, n_packets))]
    warm_up()  # else the first packet pays numba's start-up and the next ones go out in a burst
    digests = []
    t_start = time.monotonic()
    sent_events = 0
    for i in range(n_packets):
        due = t_start + i * packet_ms / 1000
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        j = i % len(packets)
        ev = packets[j]
        stamp_ns = node.get_clock().now().nanoseconds
        t_ref = int(ev["t"][0]) if n else 0
        if stamp == "camera":  # first event at (now - period + its offset in the period): the last one is now
            stamp_ns -= (period_us - (t_ref - j * period_us)) * 1000
        msg = events_to_msg(ev, stamp_ns=stamp_ns, t_ref_us=t_ref)
        pub.publish(msg)
        sent_events += n
        if len(digests) < len(packets):
            digests.append(digest(msg.data))
    elapsed = time.monotonic() - t_start
    if hasattr(pub, "wait_for_all_acked"):
        pub.wait_for_all_acked()
    return {"packets": n_packets, "events": sent_events, "elapsed_s": elapsed, "digests": digests}

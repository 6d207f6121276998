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
                   pregenerate: int = 16, stamp: str = "publish", watermark_grid_ms: float = 0.0,
                   log=print) -> dict:
    """Publish packets paced on the wall clock; returns counts and the sha256 of every packet's bytes.

    ``pregenerate`` distinct packets are built up front and cycled (with a fresh stamp each time), so
    the generator measures the transport, not numpy.

    ``stamp``: ``'publish'`` stamps a packet with the wall time at which it is published, its events spread
    over the packet period from there (the transport's stamp-to-receive delay); ``'camera'`` stamps it as a
    camera driver does: its events lie in the packet period that has just ended, so the last one happened at
    publish time (the honest clock for event-to-output latency: no event is stamped in the future).

    ``watermark_grid_ms`` > 0 (with ``stamp='camera'``) does what the drivers do: the stream starts on a window
    boundary of ROS time, a packet is cut at each boundary, published when that boundary has passed and
    followed by a watermark (docs/interfaces.md).
    """
    if stamp not in ("publish", "camera"):
        raise ValueError(f"stamp must be 'publish' or 'camera', got {stamp!r}")
    if watermark_grid_ms < 0 or (watermark_grid_ms > 0 and stamp != "camera"):
        raise ValueError("watermark_grid_ms > 0 needs stamp='camera' (a watermark is a promise about event time)")
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
    if watermark_grid_ms > 0:
        return _publish_on_grid(node, pub, packets, n_packets, period_us, int(round(watermark_grid_ms * 1000)))
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


def _publish_on_grid(node, pub, packets: list[np.ndarray], n_packets: int, period_us: int, grid_us: int) -> dict:
    """``publish_stream`` with watermarks, as the drivers cut their packets: from each window boundary of ROS time
    (``r0 + k * grid``) packets of ``period`` follow until the next boundary (the last one shorter), each
    published once its end has passed on the ROS clock; the boundary then gets its watermark. The events of a
    packet are a pregenerated packet's (offsets in ``[0, period)``) shifted to its start, cut to its length."""
    from ros2_evmicro.ros.convert import watermark_msg

    def now_us() -> int:
        return int(node.get_clock().now().nanoseconds // 1000)

    def wait_until(t_us: int) -> None:
        while (ahead := t_us - now_us()) > 0:
            time.sleep(ahead / 1e6)

    rels = [p["t"] - j * period_us for j, p in enumerate(packets)]  # each packet's offsets in [0, period)
    r0 = (now_us() // grid_us + 2) * grid_us
    n_windows = max(1, int(round(n_packets * period_us / grid_us)))
    sent_events = n_msgs = n_wm = i = 0
    late_ms: list[float] = []  # watermark published minus its stamp: how far the source itself runs behind
    t_start = time.monotonic()
    for k in range(n_windows):
        a = r0 + k * grid_us
        end = a + grid_us
        while a < end:
            b = min(a + period_us, end)
            j = i % len(packets)
            ev, rel = packets[j], rels[j]
            part = ev[: int(np.searchsorted(rel, b - a, side="left"))]
            i += 1
            wait_until(b)
            if len(part):
                t_ref = int(part["t"][0])
                pub.publish(events_to_msg(part, stamp_ns=(a + int(rel[0])) * 1000, t_ref_us=t_ref))
                sent_events += len(part)
                n_msgs += 1
            a = b
        pub.publish(watermark_msg(end * 1000))
        late_ms.append((now_us() - end) / 1000)
        n_wm += 1
    elapsed = time.monotonic() - t_start
    if hasattr(pub, "wait_for_all_acked"):
        pub.wait_for_all_acked()
    lp = np.percentile(late_ms, (50, 99)) if late_ms else (float("nan"), float("nan"))
    return {"packets": n_msgs, "watermarks": n_wm, "events": sent_events, "elapsed_s": elapsed, "digests": [],
            "watermark_late_ms_p50": round(float(lp[0]), 3), "watermark_late_ms_p99": round(float(lp[1]), 3)}

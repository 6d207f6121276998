"""Transport benchmarks (issue: foundation).

1. event <-> PointCloud2 conversion throughput (GB/s of event arrays), anchor: a plain memory copy of the
   same bytes in the same run.
2. rclpy publish/receive of 10 ms event packets between two processes at 1, 10, 20 and 50 Mev/s: delivered rate,
   latency (header stamp -> receive callback) p50/p99 and drops; with the shipped Fast DDS shared-memory
   profile, and without it (anchor: Fast DDS defaults) in the same run; and with the profile but glibc's
   allocator left untuned (``EVMICRO_MALLOC_TUNE=0``, :func:`ros2_evmicro.ros.node.tune_malloc`).

    python -m bench.bench_transport [--seconds 4] [--rates 1e6,1e7,2e7,5e7] [--no-anchor]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from bench.harness import ROOT, Row, best_rate, percentiles, report
from ros2_evmicro.ros.node import PROFILE_VARS, fastdds_profile_env


def conversion_rows() -> list[Row]:
    from rclpy.serialization import deserialize_message, serialize_message  # noqa: F401
    from sensor_msgs.msg import PointCloud2  # noqa: F401

    from ros2_evmicro.ros.convert import events_from_msg, events_to_msg
    from ros2_evmicro.ros.loadgen import make_packet

    n = 2_000_000
    ev = make_packet(0, 0, n, 1280, 720, 0, 100_000)
    nbytes = ev.nbytes
    msg = events_to_msg(ev)
    msg.data = np.asarray(msg.data).tobytes()  # as received: a plain bytes-like buffer
    buf = np.frombuffer(ev.tobytes(), np.uint8)
    memcpy = best_rate(lambda: buf.copy(), nbytes) / 1e9
    to_msg = best_rate(lambda: events_to_msg(ev), nbytes) / 1e9
    from_msg = best_rate(lambda: events_from_msg(msg), nbytes) / 1e9
    view = best_rate(lambda: events_from_msg(msg, copy=False), nbytes) / 1e9
    return [
        Row("events -> PointCloud2 (2M events)", to_msg, "GB/s", "memcpy of the same bytes", memcpy),
        Row("PointCloud2 -> events, absolute t (copy)", from_msg, "GB/s", "memcpy of the same bytes", memcpy),
        Row("PointCloud2 -> wire view (zero copy)", view, "GB/s", "memcpy of the same bytes", memcpy,
            note="view + contract checks only"),
    ]


RECEIVER = r"""
import json, sys, time
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from ros2_evmicro.ros.node import EVENTS_QOS, prepare_process
from ros2_evmicro.ros.convert import events_from_msg, stamp_to_ns
topic, expect_packets, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
prepare_process()  # as every evmicro process: the profile (unless EVMICRO_NO_FASTDDS_PROFILE) and the allocator
rclpy.init(args=[])
node = Node('bench_receiver')
lat, counts, t_first, t_last = [], [0, 0], [None], [None]
def cb(msg):
    now = node.get_clock().now().nanoseconds
    ev = events_from_msg(msg, copy=False)
    counts[0] += 1; counts[1] += len(ev)
    lat.append((now - stamp_to_ns(msg.header.stamp)) / 1e6)
    t = time.monotonic(); t_first[0] = t_first[0] or t; t_last[0] = t
node.create_subscription(PointCloud2, topic, cb, EVENTS_QOS)
ex = SingleThreadedExecutor(); ex.add_node(node)
print('ready', flush=True)
t_end = time.monotonic() + timeout
idle_since = None
while time.monotonic() < t_end and counts[0] < expect_packets:
    ex.spin_once(timeout_sec=0.05)
    if t_last[0] is not None and time.monotonic() - t_last[0] > 2.0:
        break
print(json.dumps({'packets': counts[0], 'events': counts[1], 'lat': lat,
                  'span': (t_last[0] - t_first[0]) if t_first[0] else 0.0}), flush=True)
"""


def pubsub(rate: float, seconds: float, profile: bool, malloc_tune: bool = True) -> dict:
    env = os.environ.copy()
    env["EVMICRO_MALLOC_TUNE"] = "1" if malloc_tune else "0"
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["ROS_DOMAIN_ID"] = str(150 + int(rate) % 50)
    if profile:
        env.update(fastdds_profile_env(ROOT / "config" / "fastdds_shm.xml"))
    else:
        for var in PROFILE_VARS:
            env.pop(var, None)
        env["EVMICRO_NO_FASTDDS_PROFILE"] = "1"
    topic = "/bench/events"
    n_packets = int(seconds * 100)
    rx = subprocess.Popen([sys.executable, "-c", RECEIVER, topic, str(n_packets), str(seconds * 3 + 30)],
                          stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert rx.stdout.readline().strip() == "ready"
    tx = subprocess.run([sys.executable, "-m", "ros2_evmicro.cli", "loadgen", "--topic", topic, "--rate", str(rate),
                         "--packet-ms", "10", "--duration", str(seconds)], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=seconds * 3 + 60)
    if tx.returncode != 0:
        rx.kill()
        raise RuntimeError(f"loadgen failed: {tx.stderr[-2000:]}")
    sent = json.loads(tx.stdout.strip().splitlines()[-1])
    out, _ = rx.communicate(timeout=seconds * 3 + 60)
    got = json.loads(out.strip().splitlines()[-1])
    p50, p99 = percentiles(got["lat"], (50, 99))
    return {"offered": rate, "sent_events": sent["events"], "sent_s": sent["elapsed_s"], "recv_events": got["events"],
            "delivered": got["events"] / max(sent["elapsed_s"], 1e-9), "p50": p50, "p99": p99,
            "drops": sent["packets"] - got["packets"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rates", default="1e6,1e7,2e7,5e7")
    ap.add_argument("--no-anchor", action="store_true", help="skip the run without the shared-memory profile")
    args = ap.parse_args()
    rows = conversion_rows()
    for rate in [float(r) for r in args.rates.split(",")]:
        shm = pubsub(rate, args.seconds, True)
        base = None if args.no_anchor else pubsub(rate, args.seconds, False)
        untuned = None if args.no_anchor else pubsub(rate, args.seconds, True, malloc_tune=False)
        tag = f"{rate / 1e6:g} Mev/s offered, 10 ms packets"
        rows.append(Row(f"delivered rate, SHM profile ({tag})", shm["delivered"] / 1e6, "Mev/s",
                        "Fast DDS defaults (no profile)", None if base is None else base["delivered"] / 1e6,
                        note=f"drops {shm['drops']} packets"
                        + ("" if base is None else f" (defaults: {base['drops']})")))
        rows.append(Row(f"latency p50, SHM profile ({tag})", shm["p50"], "ms", "Fast DDS defaults",
                        None if base is None else base["p50"], lower_is_better=True))
        rows.append(Row(f"latency p99, SHM profile ({tag})", shm["p99"], "ms", "Fast DDS defaults",
                        None if base is None else base["p99"], lower_is_better=True))
        if untuned is not None:
            rows.append(Row(f"latency p50, SHM profile ({tag})", shm["p50"], "ms",
                            "same, allocator untuned (EVMICRO_MALLOC_TUNE=0)", untuned["p50"], lower_is_better=True,
                            note=f"p99 {shm['p99']:.2f} ms against {untuned['p99']:.2f} ms untuned; "
                                 f"{rate * 0.01 * 12 / 1e6:.2g} MB per packet"))
    report("Transport: PointCloud2 conversion and two-process publish/receive", rows)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)")

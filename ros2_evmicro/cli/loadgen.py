"""``evmicro loadgen``: publish seeded event packets at a given rate (transport check and benchmarks)."""

from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.node import Node

    from ros2_evmicro.ros.loadgen import publish_stream
    from ros2_evmicro.ros.node import prepare_process

    prepare_process()
    rclpy.init(args=[])
    node = Node("evmicro_loadgen")
    try:
        res = publish_stream(node, args.topic, rate_ev_s=args.rate, packet_ms=args.packet_ms,
                             duration_s=args.duration, width=args.width, height=args.height, seed=args.seed,
                             wait_subscribers=args.subscribers, wait_s=args.wait, stamp=args.stamp,
                             watermark_grid_ms=args.watermark_grid_ms)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(res))
    return 0


def register(sub) -> None:
    p = sub.add_parser("loadgen", help="publish seeded event packets at a given rate")
    p.add_argument("--topic", default="/loadgen/events")
    p.add_argument("--rate", type=float, default=1e6, help="events per second")
    p.add_argument("--packet-ms", type=float, default=10.0, help="packet period (ms)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of stream")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subscribers", type=int, default=1, help="wait for this many subscribers first")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for subscribers")
    p.add_argument("--stamp", choices=("publish", "camera"), default="publish",
                   help="publish: stamp = publish time (transport delay); camera: the packet's events lie in the "
                        "period that just ended, as a camera driver publishes them (event-to-output latency)")
    p.add_argument("--watermark-grid-ms", type=float, default=0.0,
                   help="with --stamp camera: cut packets at every multiple of this period of ROS time and send a "
                        "watermark there, as the drivers do (0 = off; the drivers' default is 33, the window)")
    p.set_defaults(func=_run)

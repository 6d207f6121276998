"""``evmicro sync_check BAG``: residual offset and jitter between the cameras of a session bag."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("sync_check", help="residual clock offset and jitter between the cameras of a session bag")
    p.add_argument("bag", help="session folder, rosbag2 folder or .mcap/.db3 file")
    p.add_argument("--edge", choices=("rise", "fall", "both"), default="rise", help="trigger edges to match")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ros2_evmicro.core.sync_check import sync_check

    rep = sync_check(args.bag, edge=args.edge)
    if args.json:
        print(json.dumps({"cameras": {k: v.__dict__ for k, v in rep.cameras.items()},
                          "pairs": [p.__dict__ for p in rep.pairs]}, indent=2))
    else:
        print(rep.text())
    return 0

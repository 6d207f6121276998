"""``evmicro bag check DIR`` and ``evmicro bag repair DIR``: find and fix bags whose writer was killed."""

from __future__ import annotations

import argparse


def _check(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.bagio import check_bag

    report = check_bag(args.dir)
    print(report.text())
    return 0 if report.ok else 1


def _repair(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.bagio import check_bag, repair_bag

    before = check_bag(args.dir)
    if before.ok:
        print(before.text())
        print("nothing to repair")
        return 0
    after = repair_bag(args.dir)
    print(after.text())
    print(f"repaired: {after.messages} messages readable")
    return 0 if after.ok else 1


def register(sub) -> None:
    p = sub.add_parser("bag", help="check or repair a rosbag2 folder (MCAP or sqlite3)")
    ss = p.add_subparsers(dest="bag_command", metavar="ACTION", required=True)
    c = ss.add_parser(
        "check", help="scan the storage files and compare them with metadata.yaml (exit 1: needs repair)"
    )
    c.add_argument("dir")
    c.set_defaults(func=_check)
    r = ss.add_parser(
        "repair", help="recover every message up to the last complete chunk; rewrite metadata.yaml"
    )
    r.add_argument("dir")
    r.set_defaults(func=_repair)

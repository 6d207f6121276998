"""``evmicro session info DIR`` and ``evmicro session export DIR --segment S01_AU12_t1 --out OUT``."""

from __future__ import annotations

import argparse
import json


def _info(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.session import format_summary, summarize_session

    s = summarize_session(args.dir)
    print(json.dumps(s, indent=2, default=str) if args.json else format_summary(s))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.session import export_segment

    files = export_segment(args.dir, args.segment, args.out, window=args.window)
    for f in files:
        print(f)
    if not files:
        print(f"segment {args.segment}: no events or webcam frames to export")
    return 0


def register(sub) -> None:
    p = sub.add_parser("session", help="inspect or export a recorded session folder")
    ss = p.add_subparsers(dest="session_command", metavar="ACTION", required=True)
    i = ss.add_parser("info", help="per-topic counts, rates, gaps, drops, segments and clock-sync residuals")
    i.add_argument("dir", help="session folder (or rosbag2 folder)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=_info)
    e = ss.add_parser("export", help="a segment's events as RAW EVT3 and webcam frames as MP4")
    e.add_argument("dir", help="session folder")
    e.add_argument("--segment", required=True, help="segment id, e.g. S01_AU12_t1")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument(
        "--window",
        choices=("segment", "perform"),
        default="segment",
        help="the whole take (default) or only its perform window",
    )
    e.set_defaults(func=_export)

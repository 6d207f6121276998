"""``evmicro evaluate --run RUN [--data DIR]``: Table 5 / Table 6 figures, confusion matrix, image grid."""

from __future__ import annotations

import argparse


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ros2_evmicro.core.evaluate import evaluate_run, format_results

    if args.out and len(args.run) > 1:
        raise ValueError("--out takes one --run (each run writes RUN/eval/ by default)")
    reports = []
    for run in args.run:
        rep = evaluate_run(run, args.data, device=args.device, out=args.out)
        print(rep.markdown)
        print("files: " + ", ".join(str(f) for f in rep.files))
        reports.append(rep)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(format_results(reports))
        print(f"tables of {len(reports)} run(s): {args.results}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a training run (accuracy/top-3 or reconstruction metrics)")
    p.add_argument("--run", required=True, action="append", help="run folder of `evmicro train` (repeatable)")
    p.add_argument("--data", default=None, help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="output folder (default: RUN/eval)")
    p.add_argument("--results", default=None, help="also write the Table 5 / Table 6 rows of every run here")
    p.set_defaults(func=_evaluate)

"""``evmicro dataset build``: clips for training from recorded sessions or from the simulator;
``evmicro dataset info``: a dataset's summary (the paper's Table 2)."""

from __future__ import annotations

import argparse


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _build(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.dataset import BuildConfig, DatasetError, build_sessions, build_sim

    cfg = BuildConfig(window_us=int(round(args.window_ms * 1000)), margin_s=args.margin_s, crop_size=args.crop_size,
                      big_size=args.big_size, crop_margin=args.crop_margin, detector=args.detector,
                      **({} if args.roi_deadband is None else {"roi_deadband": args.roi_deadband}))
    if bool(args.sim) == bool(args.sessions):
        raise DatasetError("give session folders, or --sim N_SUBJECTS (not both)")
    if args.sim:
        hz = {}
        if args.evk4_render_hz:
            hz["evk4"] = args.evk4_render_hz
        rep = build_sim(args.out, args.sim, cameras=_csv(args.cameras), trials=args.trials,
                        aus=_csv(args.aus) if args.aus else None, duration_s=args.duration_s, cfg=cfg,
                        workers=args.workers, quiet=args.quiet, render_hz=hz or None,
                        webcam_roi=not args.full_webcam)
    else:
        rep = build_sessions(args.out, args.sessions, cfg=cfg, workers=args.workers, quiet=args.quiet)
    print(rep.text())
    print(f"index: {rep.out / 'index.csv'}, summary: {rep.out / 'summary.md'}")
    return 0 if rep.rows else 1


def _info(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.dataset import format_summary, load_index

    print(format_summary(load_index(args.dataset)), end="")
    return 0


def register(sub) -> None:
    p = sub.add_parser("dataset", help="build a training dataset (clips) from sessions or the simulator")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    b = dsub.add_parser("build", help="cut one clip per performed AU take into DIR (resumable)")
    b.add_argument("sessions", nargs="*", help="session folders (rosbag2 + session.yaml + markers)")
    b.add_argument("--out", required=True, help="dataset folder (clips/, index.csv/json, summary.md)")
    b.add_argument("--sim", type=int, default=0, metavar="N_SUBJECTS",
                   help="render N simulated subjects with render_clip instead of reading sessions")
    b.add_argument("--cameras", default="davis,webcam", help="--sim: cameras, from davis,evk4,webcam")
    b.add_argument("--trials", type=int, default=1, help="--sim: takes per AU and subject")
    b.add_argument("--aus", default="", help="--sim: AUs to render, e.g. 12,45 (default: all 21)")
    b.add_argument("--duration-s", type=float, default=2.5, help="--sim: rendered length of a take (s)")
    b.add_argument("--evk4-render-hz", type=float, default=0.0,
                   help="--sim: EVK4 render rate (0 = the simulator's 300 Hz; 150 halves EVK4 cost)")
    b.add_argument("--full-webcam", action="store_true",
                   help="--sim: render whole 1920x1080 webcam frames (default: only the face region, ~2x faster)")
    b.add_argument("--margin-s", type=float, default=1.0, help="time kept before and after the perform phase (s)")
    b.add_argument("--window-ms", type=float, default=33.0, help="event frame window (ms)")
    b.add_argument("--crop-size", type=int, default=64, help="side of the face crops (px)")
    b.add_argument("--big-size", type=int, default=128, help="side of the large grey target (px)")
    b.add_argument("--crop-margin", type=float, default=0.2, help="extra fraction around the face box")
    b.add_argument("--roi-deadband", type=float, default=None,
                   help="recorded face boxes: the crop moves only when the face leaves this fraction of the box "
                        "side (default: the slicer node's roi_deadband)")
    b.add_argument("--detector", choices=("mtcnn", "haar"), default="mtcnn",
                   help="offline face detector for cameras without recorded or mappable boxes")
    b.add_argument("--workers", type=int, default=1, help="parallel processes")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    i = dsub.add_parser("info", help="print a dataset's summary (Table 2 of the paper)")
    i.add_argument("dataset")
    i.set_defaults(func=_info)

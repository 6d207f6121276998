"""``evmicro sim session``: simulated recording sessions (one session folder per subject, as the recorder
writes them); ``evmicro evaluate-replay``: score AU outputs against the protocol markers, either offline
straight from a session bag or from the recorded outputs of a ``evmicro run replay`` run."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _aus(text: str) -> tuple[int, ...] | None:
    if text.strip().lower() == "all":
        return None
    try:
        return tuple(int(a.strip().upper().removeprefix("AU")) for a in text.split(",") if a.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--aus takes 'all' or a comma list of AU numbers, got {text!r}") from None


def _cameras(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _session(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.sim.session_gen import generate_sessions

    t0 = time.perf_counter()
    done = generate_sessions(
        args.out, args.subjects, cameras=args.cameras, aus=args.aus, lux=args.lux, time_scale=args.time_scale,
        seed=args.seed, first_subject=args.first_subject, overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(), aps=not args.no_aps, imu=not args.no_imu,
        compression=args.compression)
    wall = time.perf_counter() - t0
    scene = sum(s.duration_s for s in done if not s.skipped)
    for s in done:
        state = "kept (already complete)" if s.skipped else f"{s.duration_s:.1f} s scene"
        events = sum(n for t, n in s.counts.items() if t.endswith("/events"))
        print(f"{s.folder}: {state}, {sum(s.counts.values())} messages ({events} event packets), "
              f"{s.markers} markers")
    if scene:
        print(f"generated {scene:.1f} s of scene in {wall:.1f} s ({scene / wall:.2f} x real time)")
    return 0


def _evaluate_replay(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.replay import (
        ReplayConfig,
        evaluate_offline,
        evaluate_recorded,
        format_report,
    )

    if args.outputs:
        rep = evaluate_recorded(args.outputs, markers_from=args.bag or None, phase=args.phase)
    else:
        if not args.bag or not args.checkpoint:
            raise ValueError("offline evaluation needs --bag SESSION and --checkpoint CKPT "
                             "(or --outputs REPLAY_OUT to score a replay run's recorded outputs)")
        cfg = ReplayConfig(camera=args.camera, mode=args.mode, reset_policy=args.reset_policy,
                           window_frames=args.window_frames, hop_frames=args.hop_frames)
        rep = evaluate_offline(args.bag, args.checkpoint, cfg, device=args.device, phase=args.phase).report
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(format_report(rep))
    return 0


def register(sub) -> None:
    p = sub.add_parser("sim", help="simulated data: whole recording sessions of synthetic subjects")
    ss = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    s = ss.add_parser("session", help="write simulated session folders (rosbag2 MCAP + session.yaml + "
                                      "markers.csv), one per subject, exactly as the recorder would")
    s.add_argument("--subjects", type=int, default=1, help="number of simulated subjects (S01, S02, ...)")
    s.add_argument("--out", required=True, help="output folder (receives <subject>_sim/ folders)")
    s.add_argument("--cameras", type=_cameras, default=("davis", "evk4", "webcam"),
                   help="comma list of davis, evk4, webcam (default: all three)")
    s.add_argument("--aus", type=_aus, default=None, help="'all' (default) or a comma list such as 12,45")
    s.add_argument("--lux", type=float, default=600.0, help="illuminance at the face (lx)")
    s.add_argument("--time-scale", type=float, default=1.0,
                   help="scale of the protocol's phases (1.0 = the 7-minute main run)")
    s.add_argument("--seed", type=int, default=0, help="seed: subjects, takes, noise and start time")
    s.add_argument("--first-subject", type=int, default=1, help="number of the first subject")
    s.add_argument("--overwrite", action="store_true", help="replace session folders that exist")
    s.add_argument("--no-aps", action="store_true", help="leave out the DAVIS346 APS frames")
    s.add_argument("--no-imu", action="store_true", help="leave out the DAVIS346 IMU")
    s.add_argument("--compression", default="none", choices=("none", "zstd", "lz4"),
                   help="MCAP chunk compression (raw 1080p webcam frames: about 190 MB per scene second)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_session)

    e = sub.add_parser("evaluate-replay",
                       help="AU top-1/top-3 per perform segment: offline from a session bag, or from the "
                            "outputs a replay run recorded")
    e.add_argument("--bag", default="", help="session folder (offline path; markers for --outputs)")
    e.add_argument("--outputs", default="", help="folder recorded by `evmicro run replay out_dir:=...`")
    e.add_argument("--checkpoint", default="", help="AU SNN checkpoint (offline path)")
    e.add_argument("--camera", default="davis", choices=("davis", "evk4"))
    e.add_argument("--mode", default="stream", choices=("stream", "clip"))
    e.add_argument("--reset-policy", default="sliding", choices=("sliding", "segment"))
    e.add_argument("--window-frames", type=int, default=30)
    e.add_argument("--hop-frames", type=int, default=15)
    e.add_argument("--phase", default="perform", help="protocol phase that is scored")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=_evaluate_replay)

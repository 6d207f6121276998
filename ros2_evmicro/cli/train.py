"""``evmicro train snn|c3d|cvae --data DIR --out RUN``: the paper's models with its settings, LOSO folds."""

from __future__ import annotations

import argparse


def _load_defaults(path: str | None) -> dict:
    """Per-model defaults from config/train.yaml (or ``--config``); {} when there is no file."""
    from pathlib import Path

    import yaml

    if path:
        p = Path(path)
    else:
        from ros2_evmicro.paths import share_dir

        try:
            p = share_dir("config") / "train.yaml"
        except FileNotFoundError:
            return {}
    if not p.is_file():
        if path:
            raise ValueError(f"training config {p} does not exist")
        return {}
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"training config {p} must be a mapping of model -> settings")
    return data


def _train(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.train import make_config, train

    base = _load_defaults(args.config).get(args.model, {}) or {}
    over = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "dropout", "max_frames", "seed")}
    base.update({k: v for k, v in over.items() if v is not None})
    folds = args.folds
    cfg = make_config(args.model, args.data, args.out, modality=args.modality, sensor=args.sensor,
                      folds=folds, test_subject=args.test_subject or "", device=args.device,
                      num_threads=args.threads, **base)
    res = train(cfg, quiet=args.quiet, metrics_from=args.metrics_from)
    for fold, m in res.folds.items():
        figs = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float))
        print(f"fold {fold}: {figs}")
    if res.overall:
        print("overall: " + ", ".join(f"{k} {v:.4g}" for k, v in res.overall.items()))
    print(f"run: {res.out} ({res.seconds:.1f} s); evaluate with `evmicro evaluate --run {res.out}`")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train the SNN, the C3D baseline or the cVAE on a dataset folder")
    p.add_argument("model", choices=("snn", "c3d", "cvae"))
    p.add_argument("--data", required=True, help="dataset folder (evmicro dataset build)")
    p.add_argument("--out", required=True, help="run folder (rerun to continue an interrupted run)")
    p.add_argument("--modality", choices=("events", "rgb", "gray"), default="events")
    p.add_argument("--sensor", choices=("davis", "evk4"), default="davis", help="event camera (modality events)")
    p.add_argument("--folds", choices=("loso", "none"), default="loso",
                   help="loso: leave one subject out; none: one model on every subject")
    p.add_argument("--test-subject", default="", help="one fold: test on this subject (e.g. S03)")
    p.add_argument("--epochs", type=int, default=None, help="default: config/train.yaml (the paper: 100)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--max-frames", type=int, default=None,
                   help="frames per clip, centred on the perform phase (0 = whole clips; default 40)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--config", default=None, help="per-model defaults (default: config/train.yaml)")
    p.add_argument("--metrics-from", default=None,
                   help="with --folds none: copy this LOSO run's overall figures onto the final card")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

"""Training of the paper's models on a dataset folder built by :mod:`ros2_evmicro.core.dataset`.

Models and the paper's settings (the defaults, also in ``config/train.yaml``):

==========  =====================  ==========================================================================
model       input                  optimisation
==========  =====================  ==========================================================================
``snn``     clip (T, C, 64, 64)    PLIF SNN (:class:`~.models.AUSNN`), Adam lr 1e-3, cosine annealing, 100
                                   epochs, dropout 0.2, batch 8, MSE between voted firing rates and one-hot
``c3d``     clip (T, C, 64, 64)    C3D (:class:`~.models.C3D`), the same with lr 1e-4 and cross-entropy
``cvae``    frame (2, 64, 64)      cVAE (:class:`~.models.CVAE`): condition = event frame, target = the
                                   webcam's grey face crop of the same window; Adam 1e-3, batch 16, 100
                                   epochs, loss = summed squared error + KL (:func:`~.models.cvae_loss`)
==========  =====================  ==========================================================================

Modalities: ``events`` (the event frames of ``--sensor`` davis|evk4, raw counts as the slicer publishes
them: card normalisation 'counts'), ``rgb`` (3 channels) or ``gray`` (1 channel) webcam crops scaled to
[0, 1] (card normalisation 'unit', sensor 'webcam'). The cVAE always takes events.

Temporal cropping (``max_frames``, default 40 = 1.32 s): a clip longer than ``max_frames`` windows is cut
to ``max_frames`` consecutive windows centred on its perform phase (every take lasts at most 0.5 s, so the
whole action and its onset/offset stay inside); in training the cut is shifted by a seeded random offset of
up to ``max_frames // 4`` windows (augmentation), in evaluation it is centred. Consecutive windows keep the
33 ms cadence the SNN's membrane time constants were learnt at. Clips shorter than that are zero-padded at
the end (empty event frames), which only happens for clips cut short by the recording's end. ``0`` keeps
whole clips (then a batch is padded to its longest clip). The cVAE draws its frames from the same cut.

Cross-validation: ``folds='loso'`` (leave one subject out: one model per subject, tested on that subject,
trained on the others), ``'none'`` (one model on every clip, no test), or ``test_subject='S03'`` (one fold).

Run folder::

    RUN/run.json                 the configuration and the dataset it was trained on
    RUN/<fold>/state.pt          model + optimiser + scheduler + history, written after every epoch
    RUN/<fold>/log.csv           one row per epoch (train loss, test loss, accuracy / recon MSE, seconds)
    RUN/<fold>/model.pt, .card.yaml   the final checkpoint with its card (save_checkpoint)
    RUN/<fold>/predictions.npz   test-clip scores (classifiers) or test recon samples (cVAE)
    RUN/results.json             per-fold and overall figures
    RUN/curves.png               training curves of every fold
    RUN/model.pt, .card.yaml     with folds 'none': the model trained on every subject

``<fold>`` is the test subject (``S03``) or ``all``. Rerunning the same command continues: finished folds are
skipped, an interrupted fold resumes after its last completed epoch, and the result is the same as an
uninterrupted run (every epoch reseeds from ``(seed, fold, epoch)``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from ros2_evmicro.core.dataset import DatasetError, load_index

__all__ = [
    "MODEL_DEFAULTS",
    "ClipData",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "clip_window",
    "frame_pairs",
    "load_clips",
    "make_config",
    "predict_clips",
    "reconstruct_frames",
    "train",
]

MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "snn": {"lr": 1e-3, "batch_size": 8, "epochs": 100, "dropout": 0.2},
    "c3d": {"lr": 1e-4, "batch_size": 8, "epochs": 100, "dropout": 0.5},
    "cvae": {"lr": 1e-3, "batch_size": 16, "epochs": 100, "dropout": 0.0},
}
"""The paper's settings per model (``config/train.yaml`` holds the same values)."""

MODELS = tuple(MODEL_DEFAULTS)
MODALITIES = ("events", "rgb", "gray")
SENSORS = ("davis", "evk4")


class TrainError(ValueError):
    """Bad training configuration, a dataset that cannot be trained on, or a run folder that disagrees."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run (see the module docstring); learning rate, batch and epochs per model by default."""

    model: str
    data: str
    out: str
    modality: str = "events"
    sensor: str = "davis"
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 8
    dropout: float = 0.2
    folds: str = "loso"
    test_subject: str = ""
    max_frames: int = 40
    seed: int = 0
    device: str = "auto"
    window_ms: float = 33.0
    kl_beta: float = 1.0
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise TrainError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.modality not in MODALITIES:
            raise TrainError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.model == "cvae" and self.modality != "events":
            raise TrainError("the cVAE is conditioned on event frames: use --modality events")
        if self.sensor not in SENSORS:
            raise TrainError(f"sensor must be one of {SENSORS}, got {self.sensor!r}")
        if self.folds not in ("loso", "none"):
            raise TrainError(f"folds must be 'loso' or 'none', got {self.folds!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.max_frames < 0:
            raise TrainError(f"epochs and batch_size must be >= 1, lr > 0, max_frames >= 0 (got {self.epochs}, "
                             f"{self.batch_size}, {self.lr}, {self.max_frames})")
        if not 0 <= self.dropout < 1:
            raise TrainError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def card_sensor(self) -> str:
        return self.sensor if self.modality == "events" else "webcam"

    @property
    def in_channels(self) -> int:
        return {"events": 2, "rgb": 3, "gray": 1}[self.modality]


def make_config(model: str, data: str, out: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the paper's defaults of ``model`` (``MODEL_DEFAULTS``), then ``overrides``
    (``None`` values are ignored)."""
    if model not in MODEL_DEFAULTS:
        raise TrainError(f"model must be one of {MODELS}, got {model!r}")
    vals = dict(MODEL_DEFAULTS[model])
    vals.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(model=model, data=str(data), out=str(out), **vals)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclass
class ClipData:
    """One clip in RAM: its input frames ``x`` (T, C, 64, 64), target frames (cVAE), label, subject."""

    clip_id: str
    subject: str
    label: int
    perform: tuple[int, int]
    x: np.ndarray
    target: np.ndarray | None = None


def _input_key(cfg: TrainConfig) -> str:
    return f"events_{cfg.sensor}" if cfg.modality == "events" else cfg.modality


def load_clips(data: str | os.PathLike, cfg: TrainConfig) -> list[ClipData]:
    """Every clip of the dataset that has the run's input (and target), loaded once into RAM."""
    rows = load_index(data)
    key = _input_key(cfg)
    need_target = cfg.model == "cvae"
    out = []
    for r in rows:
        p = Path(data) / r["file"]
        try:
            with np.load(p) as z:
                if key not in z.files or (need_target and "gray" not in z.files):
                    continue
                x = z[key]
                target = z["gray"] if need_target else None
                perform = cast(tuple[int, int], tuple(int(v) for v in z["perform"]))
        except (OSError, ValueError, KeyError) as err:
            raise TrainError(f"cannot read clip {p}: {err}") from None
        out.append(ClipData(r["clip_id"], r["subject"], int(r["label"]), perform, x, target))
    if not out:
        what = f"{key} and gray (the cVAE's target)" if need_target else key
        raise TrainError(f"no clip of {data} has {what}; build the dataset with that camera")
    return out


def clip_window(t: int, perform: tuple[int, int], max_frames: int, rng: np.random.Generator | None = None
                ) -> tuple[int, int]:
    """``(start, stop)`` of the frames used of a clip of ``t`` windows (module docstring: temporal crop)."""
    if max_frames <= 0 or t <= max_frames:
        return 0, t
    centre = (perform[0] + perform[1]) / 2 if perform[1] > perform[0] else t / 2
    start = int(round(centre - max_frames / 2))
    if rng is not None:
        j = max_frames // 4
        start += int(rng.integers(-j, j + 1)) if j else 0
    start = min(max(start, 0), t - max_frames)
    return start, start + max_frames


def _scale(x: np.ndarray, modality: str) -> np.ndarray:
    if modality == "events":
        return x.astype(np.float32, copy=False)
    return x.astype(np.float32) / np.float32(255.0)


def _batch_clips(clips: Sequence[ClipData], cfg: TrainConfig, rng: np.random.Generator | None):
    """Input tensor (T, B, C, H, W) float32 and labels (B,) of some clips."""
    import torch

    parts = []
    for c in clips:
        a, b = clip_window(len(c.x), c.perform, cfg.max_frames, rng)
        parts.append(_scale(c.x[a:b], cfg.modality))
    t = max(cfg.max_frames, max(len(p) for p in parts)) if cfg.max_frames else max(len(p) for p in parts)
    x = np.zeros((t, len(parts), *parts[0].shape[1:]), np.float32)
    for i, p in enumerate(parts):
        x[: len(p), i] = p
    y = np.asarray([c.label for c in clips], np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def frame_pairs(clips: Sequence[ClipData], cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(conditions (N, 2, H, W) float32, targets (N, 1, H, W) float32 in [0, 1]) of the clips' used frames."""
    cs, xs = [], []
    for c in clips:
        a, b = clip_window(len(c.x), c.perform, cfg.max_frames)
        if c.target is None:
            raise TrainError(f"clip {c.clip_id} has no gray target frames (the cVAE's)")
        cs.append(c.x[a:b].astype(np.float32))
        xs.append(c.target[a:b].astype(np.float32) / np.float32(255.0))
    if not cs:
        return np.zeros((0, 2, 64, 64), np.float32), np.zeros((0, 1, 64, 64), np.float32)
    return np.concatenate(cs), np.concatenate(xs)


# ---------------------------------------------------------------------------------------------
# models and epochs
# ---------------------------------------------------------------------------------------------


def _build(cfg: TrainConfig, size: tuple[int, int]):
    from ros2_evmicro.core.models import AUSNN, C3D, CVAE

    h, w = size
    if cfg.model == "snn":
        return AUSNN(in_channels=cfg.in_channels, height=h, width=w, dropout=cfg.dropout)
    if cfg.model == "c3d":
        return C3D(in_channels=cfg.in_channels, height=h, width=w, dropout=cfg.dropout)
    return CVAE(image_height=h, image_width=w, cond_height=h, cond_width=w)


def _classifier_loss(cfg: TrainConfig, out, y):
    import torch.nn.functional as F

    from ros2_evmicro.core.models import snn_loss

    return snn_loss(out, y) if cfg.model == "snn" else F.cross_entropy(out, y)


def _scores(cfg: TrainConfig, out):
    import torch

    return out if cfg.model == "snn" else torch.softmax(out, dim=1)


def _train_classifier_epoch(model, opt, clips, cfg, rng, dev) -> float:
    model.train()
    order = rng.permutation(len(clips))
    total, n = 0.0, 0
    for i in range(0, len(order), cfg.batch_size):
        batch = [clips[j] for j in order[i:i + cfg.batch_size]]
        x, y = _batch_clips(batch, cfg, rng)
        x, y = x.to(dev), y.to(dev)
        loss = _classifier_loss(cfg, model(x), y)
        _step(model, opt, loss, i // cfg.batch_size)
        total += float(loss.detach()) * len(batch)
        n += len(batch)
    return total / max(n, 1)


def predict_clips(model, clips: Sequence[ClipData], cfg: TrainConfig, dev, batch_size: int = 8
                  ) -> tuple[np.ndarray, float]:
    """Scores (N, 21) in [0, 1] (SNN rates, C3D softmax) of clips (centred crop) and the mean loss."""
    import torch

    model.eval()
    scores, total = [], 0.0
    with torch.inference_mode():
        for i in range(0, len(clips), batch_size):
            batch = list(clips[i:i + batch_size])
            x, y = _batch_clips(batch, cfg, None)
            out = model(x.to(dev))
            total += float(_classifier_loss(cfg, out, y.to(dev))) * len(batch)
            scores.append(_scores(cfg, out).float().cpu().numpy())
    if not scores:
        return np.zeros((0, 21), np.float32), math.nan
    return np.concatenate(scores), total / len(clips)


GRAD_CLIP_NORM = 10.0
"""Gradients are clipped to this global L2 norm before every optimiser step."""


def _step(model, opt, loss, batch: int) -> None:
    """One optimiser step with gradient clipping; a non-finite loss or gradient stops training with a
    TrainError (no step is taken, so the weights stay finite) instead of saving NaN weights."""
    import torch

    if not torch.isfinite(loss.detach()):
        raise TrainError(f"the loss is {float(loss.detach())} at batch {batch}: training diverged; lower --lr "
                         "(or check the data for huge values)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
    if not torch.isfinite(norm):
        raise TrainError(f"non-finite gradient at batch {batch}: training diverged; lower --lr")
    opt.step()


def _train_cvae_epoch(model, opt, pairs, cfg, rng, dev) -> float:
    import torch

    from ros2_evmicro.core.models import cvae_loss

    model.train()
    conds, targets = pairs
    order = rng.permutation(len(conds))
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    total, n = 0.0, 0
    for i in range(0, len(order), cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        c = torch.from_numpy(conds[idx]).to(dev)
        x = torch.from_numpy(targets[idx]).to(dev)
        eps_gen = g if dev.type == "cpu" else None
        x_hat, mu, logvar = model(x, c, generator=eps_gen)
        loss, _, _ = cvae_loss(x_hat, x, mu, logvar, beta=cfg.kl_beta)
        _step(model, opt, loss, i // cfg.batch_size)
        total += float(loss.detach()) * len(idx)
        n += len(idx)
    return total / max(n, 1)


def reconstruct_frames(model, conds: np.ndarray, dev, batch_size: int = 64) -> np.ndarray:
    """cVAE reconstructions (N, 1, H, W) float32 in [0, 1] with z = 0 (the node's inference)."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(conds), batch_size):
            out.append(model.reconstruct(torch.from_numpy(conds[i:i + batch_size]).to(dev)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, *conds.shape[2:]), np.float32)


# ---------------------------------------------------------------------------------------------
# folds, state, outputs
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """Per-fold figures and where the run lives."""

    out: Path
    folds: dict[str, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _folds(cfg: TrainConfig, clips: Sequence[ClipData]) -> list[str]:
    subjects = sorted({c.subject for c in clips})
    if cfg.test_subject:
        if cfg.test_subject not in subjects:
            raise TrainError(f"test subject {cfg.test_subject!r} is not in the dataset ({', '.join(subjects)})")
        return [cfg.test_subject]
    if cfg.folds == "none":
        return ["all"]
    if len(subjects) < 2:
        raise TrainError(f"leave-one-subject-out needs >= 2 subjects, the dataset has {subjects}; "
                         "use --folds none")
    return subjects


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


_RUN_KEYS = ("model", "modality", "sensor", "epochs", "lr", "batch_size", "dropout", "folds", "test_subject",
             "max_frames", "seed", "window_ms", "kl_beta")


def _check_run(out: Path, cfg: TrainConfig, dataset: dict) -> None:
    p = out / "run.json"
    if p.is_file():
        old = json.loads(p.read_text()).get("config", {})
        diffs = [f"{k}: run has {old.get(k)!r}, asked {getattr(cfg, k)!r}" for k in _RUN_KEYS
                 if k in old and old[k] != getattr(cfg, k)]
        if diffs:
            raise TrainError(f"{out} holds a run with other settings ({'; '.join(diffs)}); choose another --out "
                             "or delete it")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(p, json.dumps({"config": asdict(cfg), "dataset": dataset}, indent=1))


def _describe_data(data: str, clips: Sequence[ClipData]) -> dict:
    subjects = sorted({c.subject for c in clips})
    try:
        rows = load_index(data)
        src = "simulated" if rows and all(r.get("source") == "sim" for r in rows) else "recorded"
    except DatasetError:
        src = "unknown"
    return {"path": str(data), "clips": len(clips), "subjects": subjects, "source": src}


def _card(cfg: TrainConfig, model, dataset: dict, metrics: dict[str, float]):
    from ros2_evmicro.core.models import card_for

    norm = "counts" if cfg.modality == "events" else "unit"
    desc = (f"{dataset['source']} dataset {dataset['path']} ({dataset['clips']} clips, subjects "
            f"{', '.join(dataset['subjects'])}); {cfg.model} on {cfg.modality} ({cfg.card_sensor}), "
            f"{cfg.epochs} epochs, lr {cfg.lr:g}, batch {cfg.batch_size}, max_frames {cfg.max_frames}, "
            f"seed {cfg.seed}")
    return card_for(model, normalisation=norm, window_ms=float(cfg.window_ms), sensor=cfg.card_sensor,
                    training_data=desc, metrics={k: float(v) for k, v in metrics.items()})


def _log_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _atomic_text(path, buf.getvalue())


def _run_fold(cfg: TrainConfig, fold: str, fold_idx: int, clips: list[ClipData], dataset: dict, dev,
              on_epoch: Callable[[str, int, dict], None] | None, quiet: bool) -> dict[str, float]:
    import torch
    from tqdm import tqdm

    from ros2_evmicro.core.metrics import accuracy, recon_metrics, topk_accuracy
    from ros2_evmicro.core.models import save_checkpoint

    fdir = Path(cfg.out) / fold
    fdir.mkdir(parents=True, exist_ok=True)
    done = fdir / "fold.json"
    if done.is_file() and (fdir / "model.pt").is_file():
        return json.loads(done.read_text())["metrics"]
    train_c = [c for c in clips if fold == "all" or c.subject != fold]
    test_c = [] if fold == "all" else [c for c in clips if c.subject == fold]
    if not train_c:
        raise TrainError(f"fold {fold}: no training clip")
    size = tuple(train_c[0].x.shape[-2:])
    torch.manual_seed(cfg.seed)
    model = _build(cfg, size).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    history: list[dict] = []
    start = 0
    state_p = fdir / "state.pt"
    if state_p.is_file():
        st = torch.load(state_p, map_location=dev, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        history, start = st["history"], int(st["epoch"])
    is_cvae = cfg.model == "cvae"
    pairs = frame_pairs(train_c, cfg) if is_cvae else None
    test_pairs = frame_pairs(test_c, cfg) if is_cvae else None
    bar = tqdm(range(start, cfg.epochs), desc=f"{cfg.model} {fold}", unit="epoch", disable=quiet, leave=False,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 1_000_003 + fold_idx * 1009 + epoch)
        rng = np.random.default_rng([cfg.seed, fold_idx, epoch])
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"]}
        if pairs is not None and test_pairs is not None:  # the cVAE
            row["train_loss"] = _train_cvae_epoch(model, opt, pairs, cfg, rng, dev)
            if len(test_c):
                rec = reconstruct_frames(model, test_pairs[0], dev)
                row["test_mse"] = float(np.mean((rec - test_pairs[1]) ** 2))
        else:
            row["train_loss"] = _train_classifier_epoch(model, opt, train_c, cfg, rng, dev)
            if len(test_c):
                sc, loss = predict_clips(model, test_c, cfg, dev)
                labels = np.asarray([c.label for c in test_c])
                row.update(test_loss=loss, test_accuracy=accuracy(sc, labels), test_top3=topk_accuracy(sc, labels, 3))
        sched.step()
        row["seconds"] = round(time.perf_counter() - t0, 3)
        history.append(row)
        _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "history": history, "epoch": epoch + 1}, state_p)
        _log_rows(fdir / "log.csv", history)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "test_accuracy", "test_mse")})
        if not quiet:
            bar.write(f"{cfg.model} {fold} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",)))
        if on_epoch is not None:
            on_epoch(fold, epoch + 1, row)
    bar.close()
    metrics: dict[str, float] = {}
    if pairs is not None and test_pairs is not None:  # the cVAE
        if len(test_c):
            rec = reconstruct_frames(model, test_pairs[0], dev)
            metrics = recon_metrics(rec[:, 0], test_pairs[1][:, 0])
            k = np.linspace(0, len(rec) - 1, min(8, len(rec))).astype(int)
            np.savez_compressed(fdir / "predictions.npz", cond=test_pairs[0][k], recon=rec[k], target=test_pairs[1][k])
        metrics["frames_test"] = float(len(test_pairs[0]))
        metrics["frames_train"] = float(len(pairs[0]))
    else:
        if len(test_c):
            sc, _ = predict_clips(model, test_c, cfg, dev)
            labels = np.asarray([c.label for c in test_c])
            metrics = {"accuracy": accuracy(sc, labels), "top3_accuracy": topk_accuracy(sc, labels, 3)}
            np.savez_compressed(fdir / "predictions.npz", scores=sc, labels=labels,
                                clip_ids=np.asarray([c.clip_id for c in test_c]))
        else:
            sc, _ = predict_clips(model, train_c, cfg, dev)
            labels = np.asarray([c.label for c in train_c])
            metrics = {"train_accuracy": accuracy(sc, labels)}
        metrics["clips_test"] = float(len(test_c))
        metrics["clips_train"] = float(len(train_c))
    metrics["test_subject"] = fold  # type: ignore[assignment]
    card_metrics = {k: v for k, v in metrics.items() if isinstance(v, float)}
    save_checkpoint(fdir / "model", model.cpu(), _card(cfg, model, dataset, card_metrics))
    model.to(dev)
    _atomic_text(done, json.dumps({"fold": fold, "metrics": metrics}, indent=1))
    return metrics


def _overall(cfg: TrainConfig, folds: dict[str, dict]) -> dict[str, float]:
    """Pooled figures over every test clip of the folds (micro average), and the mean over folds."""
    from ros2_evmicro.core.metrics import accuracy, topk_accuracy

    out: dict[str, float] = {}
    tested = [f for f in folds if f != "all"]
    if not tested:
        return out
    if cfg.model == "cvae":
        keys = [k for k in ("mse", "rmse", "mae", "psnr", "ssim", "ncc") if k in folds[tested[0]]]
        w = np.asarray([folds[f]["frames_test"] for f in tested], np.float64)
        for k in keys:
            out[k] = float(np.average([folds[f][k] for f in tested], weights=w))
        return out
    sc, lab = [], []
    for f in tested:
        p = Path(cfg.out) / f / "predictions.npz"
        if p.is_file():
            with np.load(p) as z:
                sc.append(z["scores"])
                lab.append(z["labels"])
    if sc:
        s, y = np.concatenate(sc), np.concatenate(lab)
        out["accuracy"] = accuracy(s, y)
        out["top3_accuracy"] = topk_accuracy(s, y, 3)
        out["fold_accuracy_mean"] = float(np.mean([folds[f]["accuracy"] for f in tested]))
        out["fold_accuracy_std"] = float(np.std([folds[f]["accuracy"] for f in tested]))
        out["clips"] = float(len(y))
    return out


def train(cfg: TrainConfig, *, on_epoch: Callable[[str, int, dict], None] | None = None, quiet: bool = False,
          metrics_from: str | None = None) -> TrainResult:
    """Train (or continue) the run of ``cfg``; returns per-fold and overall figures.

    ``on_epoch(fold, epoch, row)`` is called after each epoch (after its state is saved). With
    ``metrics_from`` (another run folder, e.g. the LOSO run of the same model) its overall figures are
    copied onto the final card of a ``folds="none"`` run as ``heldout_*`` metrics.
    """
    import torch

    from ros2_evmicro.core.models import resolve_device

    t0 = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    dev = resolve_device(cfg.device)
    clips = load_clips(cfg.data, cfg)
    sizes = {tuple(c.x.shape[1:]) for c in clips}
    if len(sizes) != 1:
        raise TrainError(f"clips of {cfg.data} have different frame shapes {sorted(sizes)}")
    folds = _folds(cfg, clips)
    dataset = _describe_data(cfg.data, clips)
    out = Path(cfg.out)
    _check_run(out, cfg, dataset)
    res = TrainResult(out)
    for i, fold in enumerate(folds):
        res.folds[fold] = _run_fold(cfg, fold, i, clips, dataset, dev, on_epoch, quiet)
    res.overall = _overall(cfg, res.folds)
    if folds == ["all"]:
        extra = {}
        if metrics_from:
            p = Path(metrics_from) / "results.json"
            try:
                extra = {f"heldout_{k}": float(v) for k, v in json.loads(p.read_text())["overall"].items()}
            except (OSError, KeyError, ValueError) as err:
                raise TrainError(f"cannot read the overall figures of {p}: {err}") from None
        _finish_all(cfg, out, dataset, extra)
    _atomic_text(out / "results.json", json.dumps({"config": asdict(cfg), "folds": res.folds,
                                                   "overall": res.overall}, indent=1, default=str))
    try:
        from ros2_evmicro.core.metrics import plot_curves

        plot_curves({f: _read_log(out / f / "log.csv") for f in folds}, out / "curves.png",
                    title=f"{cfg.model} ({cfg.modality}, {cfg.card_sensor})")
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        pass
    res.seconds = time.perf_counter() - t0
    return res


def _finish_all(cfg: TrainConfig, out: Path, dataset: dict, extra: dict[str, float]) -> None:
    """Copy ``all/model`` to ``RUN/model`` (its card with the LOSO figures when given)."""
    from ros2_evmicro.core.models import load_checkpoint, save_checkpoint

    model, card = load_checkpoint(out / "all" / "model")
    if extra:
        card = replace(card, metrics={**card.metrics, **extra}, sha256="")
        save_checkpoint(out / "model", model, card)
    else:
        for suffix in (".pt", ".card.yaml"):
            shutil.copyfile(out / "all" / f"model{suffix}", out / f"model{suffix}")


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]

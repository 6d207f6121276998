"""Evaluation of a training run (:mod:`ros2_evmicro.core.train`): every fold's checkpoint on its test subject.

Classifiers (SNN, C3D): accuracy and top-3 accuracy per fold and overall (pooled over every test clip), in
the layout of the paper's Table 5 (method, modality, params, accuracy, top-3), and the confusion matrix of
the 21 AUs (PNG). Reconstruction (cVAE): MSE, RMSE, MAE, PSNR, SSIM, NCC of the z = 0 reconstruction
against the webcam's grey face (Table 6 layout; per-image means, pooled over the test frames of all folds),
and the image grid of Figure 5 (input event frame, reconstruction, ground truth).

A ``folds='none'`` run has no held-out subject: it is evaluated on its training clips and the report says
so. Outputs go to ``RUN/eval/``: ``report.md``, ``metrics.json``, ``confusion.png`` or ``recon_grid.png``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ros2_evmicro.core.metrics import (
    accuracy,
    confusion_matrix,
    format_table5,
    format_table6,
    markdown_table,
    plot_confusion,
    plot_recon_grid,
    recon_metrics,
    topk_accuracy,
)
from ros2_evmicro.core.train import TrainConfig, TrainError, frame_pairs, load_clips, predict_clips, reconstruct_frames

__all__ = ["EvalReport", "EvaluateError", "evaluate_run", "format_results", "method_name", "modality_name"]


class EvaluateError(ValueError):
    """A run folder cannot be evaluated (missing run.json or checkpoints, data that does not fit)."""


def method_name(model: str) -> str:
    return {"snn": "SNN (PLIF)", "c3d": "3D-CNN (C3D)", "cvae": "cVAE"}[model]


def modality_name(cfg: TrainConfig) -> str:
    if cfg.modality == "events":
        return f"Events ({cfg.sensor.upper() if cfg.sensor == 'evk4' else 'DAVIS346'})"
    return {"rgb": "RGB (webcam)", "gray": "Gray (webcam)"}[cfg.modality]


@dataclass
class EvalReport:
    """Figures per fold and overall, the markdown report and the files written."""

    run: Path
    config: TrainConfig
    folds: dict[str, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    params: int = 0
    markdown: str = ""
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def table_row(self) -> dict[str, Any]:
        """This run as one row of Table 5 (classifiers) or Table 6 (cVAE)."""
        if self.config.model == "cvae":
            return {"method": method_name("cvae"), "sensor": self.config.sensor.upper()
                    if self.config.sensor == "evk4" else "DAVIS346", **self.overall}
        return {"method": method_name(self.config.model), "modality": modality_name(self.config),
                "params": self.params, "accuracy": self.overall.get("accuracy", float("nan")),
                "top3": self.overall.get("top3_accuracy", float("nan"))}


def _read_config(run: Path) -> TrainConfig:
    p = run / "run.json"
    try:
        d = json.loads(p.read_text())["config"]
        return TrainConfig(**d)
    except FileNotFoundError:
        raise EvaluateError(f"{run} is not a training run (no run.json; train with `evmicro train`)") from None
    except (KeyError, TypeError, ValueError) as err:
        raise EvaluateError(f"{p} is malformed: {err}") from None


def evaluate_run(run: str | os.PathLike, data: str | os.PathLike | None = None, *, device: str = "auto",
                 out: str | os.PathLike | None = None) -> EvalReport:
    """Evaluate every finished fold of ``run`` on ``data`` (default: the run's dataset)."""
    from ros2_evmicro.core.models import CheckpointError, load_checkpoint, param_count, resolve_device

    t0 = time.perf_counter()
    run = Path(run)
    cfg = _read_config(run)
    if data is not None:
        cfg = replace(cfg, data=str(data))
    try:
        clips = load_clips(cfg.data, cfg)
    except TrainError as err:
        raise EvaluateError(str(err)) from None
    dev = resolve_device(device)
    folds = sorted(p.parent.name for p in run.glob("*/model.pt"))
    if not folds:
        raise EvaluateError(f"{run} has no finished fold (no <fold>/model.pt); finish training first")
    rep = EvalReport(run, cfg)
    out_dir = Path(out) if out else run / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    all_scores: list[np.ndarray] = []
    all_labels: list[np.ndarray] = []
    grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (inputs, reconstructions, targets)
    weights: list[int] = []
    for fold in folds:
        try:
            model, _card = load_checkpoint(run / fold / "model", device=dev)
        except CheckpointError as err:
            raise EvaluateError(str(err)) from None
        rep.params = param_count(model)
        test = [c for c in clips if fold == "all" or c.subject == fold]
        if not test:
            continue
        if cfg.model == "cvae":
            conds, targets = frame_pairs(test, cfg)
            rec = reconstruct_frames(model, conds, dev)
            m = recon_metrics(rec[:, 0], targets[:, 0])
            m["frames"] = float(len(conds))
            weights.append(len(conds))
            if grid is None:
                k = _grid_pick(conds, 8)
                grid = (conds[k], rec[k], targets[k])
        else:
            scores, _ = predict_clips(model, test, cfg, dev)
            labels = np.asarray([c.label for c in test])
            m = {"accuracy": accuracy(scores, labels), "top3_accuracy": topk_accuracy(scores, labels, 3),
                 "clips": float(len(test))}
            all_scores.append(scores)
            all_labels.append(labels)
        rep.folds[fold] = m
    if not rep.folds:
        raise EvaluateError(f"no clip of {cfg.data} belongs to the test subjects of {run} ({', '.join(folds)})")
    held_out = folds != ["all"]
    note = "" if held_out else ("\n**No held-out subject** (folds none): figures are on the training clips.\n")
    if cfg.model == "cvae":
        w = np.asarray(weights, np.float64)
        keys = ("mse", "rmse", "mae", "psnr", "ssim", "ncc")
        rep.overall = {k: float(np.average([rep.folds[f][k] for f in rep.folds], weights=w)) for k in keys}
        rep.overall["frames"] = float(w.sum())
        if grid is None:  # every fold with test clips sets it; rep.folds is not empty
            raise EvaluateError(f"no reconstruction to plot for {run}")
        rep.files.append(plot_recon_grid(*grid, out_dir / "recon_grid.png",
                                         title=f"cVAE ({cfg.sensor}): events / reconstruction / ground truth"))
        per_fold = markdown_table(
            ["Test subject", "Frames", "MSE", "PSNR (dB)", "SSIM", "NCC"],
            [[f, int(m["frames"]), f"{m['mse']:.4f}", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}", f"{m['ncc']:.4f}"]
             for f, m in rep.folds.items()], ["l", "r", "r", "r", "r", "r"])
        table = format_table6([rep.table_row()])
    else:
        s, y = np.concatenate(all_scores), np.concatenate(all_labels)
        rep.overall = {"accuracy": accuracy(s, y), "top3_accuracy": topk_accuracy(s, y, 3), "clips": float(len(y))}
        if held_out:
            accs = [m["accuracy"] for m in rep.folds.values()]
            rep.overall.update(fold_accuracy_mean=float(np.mean(accs)), fold_accuracy_std=float(np.std(accs)))
        cm = confusion_matrix(y, s.argmax(axis=1))
        np.save(out_dir / "confusion.npy", cm)
        rep.files.append(plot_confusion(cm, out_dir / "confusion.png",
                                        title=f"{method_name(cfg.model)}, {modality_name(cfg)}: confusion"))
        per_fold = markdown_table(
            ["Test subject", "Clips", "Accuracy", "Top-3"],
            [[f, int(m["clips"]), f"{100 * m['accuracy']:.2f}%", f"{100 * m['top3_accuracy']:.2f}%"]
             for f, m in rep.folds.items()], ["l", "r", "r", "r"])
        table = format_table5([rep.table_row()])
    scheme = "leave-one-subject-out" if len(folds) > 1 else ("all subjects" if not held_out else f"test {folds[0]}")
    rep.markdown = (f"# Evaluation of {run}\n\ndata: `{cfg.data}` ({len(clips)} clips); {scheme}\n{note}\n"
                    f"{table}\nPer fold:\n\n{per_fold}")
    (out_dir / "report.md").write_text(rep.markdown)
    (out_dir / "metrics.json").write_text(json.dumps({"folds": rep.folds, "overall": rep.overall,
                                                      "params": rep.params}, indent=1))
    rep.files += [out_dir / "report.md", out_dir / "metrics.json"]
    rep.seconds = time.perf_counter() - t0
    return rep


def _grid_pick(conds: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to ``n`` frames with the most events, in time order (a grid of empty frames says nothing)."""
    act = conds.reshape(len(conds), -1).sum(axis=1)
    k = np.argsort(-act, kind="stable")[: min(n, len(conds))]
    return np.sort(k)


def _scheme(rep: EvalReport) -> str:
    folds = list(rep.folds)
    if folds == ["all"]:
        return "training clips (no held-out subject)"
    if len(folds) == 1:
        return f"held-out subject {folds[0]}"
    return f"leave-one-subject-out, {len(folds)} folds"


def format_results(reports: list[EvalReport]) -> str:
    """Table 5 of every classifier run and Table 6 of every cVAE run, with how each was tested (markdown)."""
    cls = [r for r in reports if r.config.model != "cvae"]
    rec = [r for r in reports if r.config.model == "cvae"]
    out = []
    if cls:
        out += ["### AU classification (Table 5 layout)", "", format_table5([r.table_row() for r in cls])]
        out += markdown_table(["Method", "Modality", "Tested on", "Clips", "Fold accuracy (mean ± sd)"], [
            [method_name(r.config.model), modality_name(r.config), _scheme(r), int(r.overall.get("clips", 0)),
             (f"{100 * r.overall['fold_accuracy_mean']:.2f}% ± {100 * r.overall['fold_accuracy_std']:.2f}%"
              if "fold_accuracy_mean" in r.overall else "-")] for r in cls], ["l", "l", "l", "r", "r"]).splitlines()
        out.append("")
    if rec:
        out += ["### Face reconstruction (Table 6 layout)", "", format_table6([r.table_row() for r in rec])]
        out += markdown_table(["Method", "Sensor", "Tested on", "Frames"], [
            [method_name("cvae"), r.config.sensor, _scheme(r), int(r.overall.get("frames", 0))] for r in rec],
            ["l", "l", "l", "r"]).splitlines()
        out.append("")
    return "\n".join(out) + "\n"

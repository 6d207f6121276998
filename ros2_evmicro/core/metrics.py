"""Evaluation metrics and the paper's tables and figures.

Classification (Table 5 of the paper): accuracy (top-1) and top-3 accuracy of class scores, confusion
matrix over the 21 AUs.

Reconstruction (Table 6), per image of values in [0, 1], then averaged over the images:

* ``MSE = mean((x - y)^2)``, ``RMSE = sqrt(MSE)``, ``MAE = mean(|x - y|)``;
* ``PSNR = 10 log10(1 / MSE)`` dB (data range 1; an image with ``MSE < 1e-10`` counts as 100 dB, so a
  perfect reconstruction does not make the mean infinite);
* ``SSIM``: :func:`skimage.metrics.structural_similarity` (7x7 uniform window, data range 1);
* ``NCC = sum((x - mx)(y - my)) / sqrt(sum((x - mx)^2) sum((y - my)^2))``, the zero-mean normalised
  cross-correlation in [-1, 1] (0 when either image is constant).

Figures (matplotlib, Agg backend): confusion matrix, reconstruction grid (event frame, reconstruction,
ground truth: Figure 5 of the paper) and training curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ros2_evmicro.core.au import AU_CODES, NUM_AUS

__all__ = [
    "MetricsError",
    "accuracy",
    "confusion_matrix",
    "format_table5",
    "format_table6",
    "mae",
    "markdown_table",
    "mse",
    "ncc",
    "plot_confusion",
    "plot_curves",
    "plot_recon_grid",
    "psnr",
    "recon_metrics",
    "rmse",
    "ssim",
    "topk_accuracy",
]

PSNR_CAP_DB = 100.0


class MetricsError(ValueError):
    """Inputs of a metric have the wrong shape or no element."""


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise MetricsError(f"scores must be (N, classes) and labels (N,), got {s.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= s.shape[1]):
        raise MetricsError(f"labels must lie in 0..{s.shape[1] - 1}")
    return s, y


def topk_accuracy(scores, labels, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (ties broken by the lower index, as
    ``argmax`` does); NaN for no row."""
    s, y = _scores_labels(scores, labels)
    if not len(y):
        return math.nan
    if k < 1:
        raise MetricsError(f"k must be >= 1, got {k}")
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == y[:, None], axis=1)))


def accuracy(scores, labels) -> float:
    """Top-1 accuracy (NaN for no row)."""
    return topk_accuracy(scores, labels, 1)


def confusion_matrix(labels, predictions, num_classes: int = NUM_AUS) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts, rows = true class, columns = predicted class."""
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    p = np.asarray(predictions).astype(np.int64).reshape(-1)
    if y.shape != p.shape:
        raise MetricsError(f"labels and predictions differ in length: {y.shape} vs {p.shape}")
    if len(y) and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= num_classes):
        raise MetricsError(f"classes must lie in 0..{num_classes - 1}")
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


# ---------------------------------------------------------------------------------------------
# reconstruction
# ---------------------------------------------------------------------------------------------


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise MetricsError(f"images must have the same non-empty shape, got {a.shape} and {b.shape}")
    return a, b


def mse(x, y) -> float:
    a, b = _pair(x, y)
    return float(np.mean((a - b) ** 2))


def rmse(x, y) -> float:
    return math.sqrt(mse(x, y))


def mae(x, y) -> float:
    a, b = _pair(x, y)
    return float(np.mean(np.abs(a - b)))


def psnr(x, y, data_range: float = 1.0) -> float:
    """PSNR in dB of one image pair (capped at 100 dB, see the module docstring)."""
    m = mse(x, y)
    if m < 1e-10 * data_range**2:
        return PSNR_CAP_DB
    return float(10.0 * math.log10(data_range**2 / m))


def ssim(x, y, data_range: float = 1.0) -> float:
    """SSIM of one 2-D image pair (scikit-image, 7x7 window; smaller images use their odd side)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(x, y)
    if a.ndim != 2:
        raise MetricsError(f"ssim takes 2-D images, got shape {a.shape}")
    win = min(7, min(a.shape) - (1 - min(a.shape) % 2))
    if win < 3:
        raise MetricsError(f"images of {a.shape} are too small for SSIM (need >= 3x3)")
    return float(structural_similarity(a, b, data_range=data_range, win_size=win))


def ncc(x, y) -> float:
    """Zero-mean normalised cross-correlation in [-1, 1]; 0 when either image is constant."""
    a, b = _pair(x, y)
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else 0.0


def recon_metrics(recon, target, data_range: float = 1.0) -> dict[str, float]:
    """Mean of each metric over a batch of images ``(N, H, W)`` (values in [0, data_range])."""
    r = np.asarray(recon, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if r.shape != t.shape or r.ndim != 3 or not len(r):
        raise MetricsError(f"recon and target must be the same (N, H, W) with N >= 1, got {r.shape}, {t.shape}")
    per: dict[str, list[float]] = {"mse": [], "rmse": [], "mae": [], "psnr": [], "ssim": [], "ncc": []}
    for a, b in zip(r, t, strict=True):
        m = mse(a, b)
        per["mse"].append(m)
        per["rmse"].append(math.sqrt(m))
        per["mae"].append(mae(a, b))
        per["psnr"].append(psnr(a, b, data_range))
        per["ssim"].append(ssim(a, b, data_range))
        per["ncc"].append(ncc(a, b))
    return {k: float(np.mean(v)) for k, v in per.items()}


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence], align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table; ``align`` per column: 'l' or 'r' (default: left for text, right for numbers)."""
    if align is None:
        align = ["r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers))]
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    for r in rows:
        if len(r) != len(headers):
            raise MetricsError(f"row {r} has {len(r)} cells, the table {len(headers)} columns")
        lines.append("| " + " | ".join(_cell(v) for v in r) + " |")
    return "\n".join(lines) + "\n"


def _pct(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def format_table5(rows: Sequence[dict]) -> str:
    """Table 5 of the paper: ``[{method, modality, params, accuracy, top3}]`` (accuracies as fractions)."""
    body = [[r["method"], r["modality"], f"{r['params'] / 1e6:.2f}M", _pct(r["accuracy"]), _pct(r["top3"])]
            for r in rows]
    return markdown_table(["Method", "Modality", "Params", "Accuracy", "Top-3"], body, ["l", "l", "r", "r", "r"])


def format_table6(rows: Sequence[dict]) -> str:
    """Table 6 of the paper: ``[{method, sensor, mse, rmse, mae, psnr, ssim, ncc}]``."""
    body = [[r["method"], r["sensor"], f"{r['mse']:.4f}", f"{r['rmse']:.4f}", f"{r['mae']:.4f}",
             f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['ncc']:.4f}"] for r in rows]
    return markdown_table(["Method", "Sensor", "MSE", "RMSE", "MAE", "PSNR (dB)", "SSIM", "NCC"], body,
                          ["l", "l", "r", "r", "r", "r", "r", "r"])


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, path: str | Path, title: str = "", classes: Sequence[str] = AU_CODES) -> Path:
    """Row-normalised confusion matrix as a PNG (counts written in the cells)."""
    plt = _plt()
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    n = len(classes)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def event_rgb(frame: np.ndarray) -> np.ndarray:
    """RGB float image in [0, 1] of an event frame (2, H, W): ON red, OFF blue, scaled by the maximum."""
    f = np.asarray(frame, dtype=np.float32)
    img = np.zeros((*f.shape[1:], 3), np.float32)
    m = float(f.max()) if f.size else 0.0
    if m > 0:
        img[..., 0] = f[1] / m
        img[..., 2] = f[0] / m
    return img


def plot_recon_grid(conds: np.ndarray, recons: np.ndarray, targets: np.ndarray, path: str | Path,
                    title: str = "") -> Path:
    """Figure 5 of the paper: rows = input event frame, reconstruction, ground truth; one column per sample."""
    plt = _plt()
    n = len(conds)
    if not (n == len(recons) == len(targets)) or n == 0:
        raise MetricsError(f"need the same number (>= 1) of inputs, reconstructions and targets, got "
                           f"{len(conds)}, {len(recons)}, {len(targets)}")
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.0), dpi=100, squeeze=False)
    for j in range(n):
        axes[0, j].imshow(event_rgb(conds[j]))
        axes[1, j].imshow(np.squeeze(recons[j]), cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(np.squeeze(targets[j]), cmap="gray", vmin=0, vmax=1)
        for i in range(3):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    for i, name in enumerate(("events", "reconstruction", "ground truth")):
        axes[i, 0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(logs: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """Training curves (train loss, and test accuracy or test MSE when logged) of each fold."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for fold, rows in logs.items():
        if not rows:
            continue
        ep = [r["epoch"] for r in rows]
        a1.plot(ep, [r["train_loss"] for r in rows], label=fold)
        for key in ("test_accuracy", "test_mse"):
            if key in rows[0]:
                a2.plot(ep, [r[key] for r in rows], label=fold)
                a2.set_ylabel(key.replace("_", " "))
    a1.set_xlabel("epoch")
    a1.set_ylabel("train loss")
    a2.set_xlabel("epoch")
    for a in (a1, a2):
        if a.lines:
            a.legend(fontsize=7)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path

"""Metrics against hand-computed values; Table 5/6 markdown layout; figures are written."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros2_evmicro.core.metrics import (
    MetricsError,
    accuracy,
    confusion_matrix,
    format_table5,
    format_table6,
    mae,
    markdown_table,
    mse,
    ncc,
    plot_confusion,
    plot_curves,
    plot_recon_grid,
    psnr,
    recon_metrics,
    rmse,
    ssim,
    topk_accuracy,
)

A = np.array([[0.0, 0.5], [0.5, 1.0]])
Z = np.zeros((2, 2))


def test_pixel_errors_golden():
    assert mse(A, Z) == pytest.approx(0.375)  # (0 + .25 + .25 + 1) / 4
    assert rmse(A, Z) == pytest.approx(math.sqrt(0.375))
    assert mae(A, Z) == pytest.approx(0.5)
    assert psnr(A, Z) == pytest.approx(10 * math.log10(1 / 0.375))  # 4.2597 dB
    assert psnr(np.full((4, 4), 0.5), np.full((4, 4), 0.6)) == pytest.approx(20.0)  # mse 0.01
    assert psnr(A, A) == 100.0  # capped
    assert psnr(A * 255, Z, data_range=255.0) == pytest.approx(psnr(A, Z))


def test_ncc_and_ssim_golden():
    assert ncc(A, 2 * A + 1) == pytest.approx(1.0)
    assert ncc(A, -A) == pytest.approx(-1.0)
    # a - mean = [[-.5, 0], [0, .5]], b - mean = [[-.25, -.25], [-.25, .75]]: 0.5 / sqrt(0.5 * 0.75)
    assert ncc(A, np.array([[0.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.5 / math.sqrt(0.375))
    assert ncc(A, np.ones((2, 2))) == 0.0  # constant image: defined as 0
    img = np.random.default_rng(3).uniform(0, 1, (16, 16))
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 1 - img) < 0
    assert ssim(np.full((8, 8), 0.2), np.full((8, 8), 0.2)) == pytest.approx(1.0)
    with pytest.raises(MetricsError):
        ssim(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(MetricsError):
        mse(np.zeros(3), np.zeros(4))


def test_recon_metrics_averages_per_image():
    rec = np.stack([np.full((8, 8), 0.5), np.full((8, 8), 0.0)])
    tgt = np.stack([np.full((8, 8), 0.6), np.full((8, 8), 0.0)])
    m = recon_metrics(rec, tgt)
    assert m["mse"] == pytest.approx(0.005)
    assert m["mae"] == pytest.approx(0.05)
    assert m["rmse"] == pytest.approx(0.05)
    assert m["psnr"] == pytest.approx((20.0 + 100.0) / 2)
    assert m["ssim"] <= 1.0 and m["ncc"] == 0.0
    with pytest.raises(MetricsError):
        recon_metrics(np.zeros((0, 8, 8)), np.zeros((0, 8, 8)))


def test_accuracy_topk_confusion():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.2, 0.1], [0.0, 0.0, 0.9]])
    labels = np.array([2, 1, 2])
    assert accuracy(scores, labels) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(1.0)
    assert topk_accuracy(scores, labels, 3) == 1.0
    # ties: the lower index wins, as argmax
    assert accuracy(np.zeros((1, 3)), np.array([0])) == 1.0 and accuracy(np.zeros((1, 3)), np.array([1])) == 0.0
    assert math.isnan(accuracy(np.zeros((0, 3)), np.zeros(0)))
    cm = confusion_matrix(labels, scores.argmax(1), 3)
    np.testing.assert_array_equal(cm, [[0, 0, 0], [1, 0, 0], [0, 1, 1]])
    assert confusion_matrix([], [], 21).shape == (21, 21)
    with pytest.raises(MetricsError):
        accuracy(scores, np.array([0, 3, 1]))
    with pytest.raises(MetricsError):
        confusion_matrix([0, 1], [0], 3)


def test_table5_and_table6_layout():
    t5 = format_table5([{"method": "SNN (PLIF)", "modality": "Events (DAVIS346)", "params": 4_312_470,
                         "accuracy": 0.8182, "top3": 0.95}])
    assert t5 == ("| Method | Modality | Params | Accuracy | Top-3 |\n|---|---|---:|---:|---:|\n"
                  "| SNN (PLIF) | Events (DAVIS346) | 4.31M | 81.82% | 95.00% |\n")
    t6 = format_table6([{"method": "cVAE", "sensor": "EVK4", "mse": 0.01, "rmse": 0.1, "mae": 0.08,
                         "psnr": 20.0, "ssim": 0.5, "ncc": 0.9}])
    assert t6.splitlines()[0] == "| Method | Sensor | MSE | RMSE | MAE | PSNR (dB) | SSIM | NCC |"
    assert t6.splitlines()[2] == "| cVAE | EVK4 | 0.0100 | 0.1000 | 0.0800 | 20.00 | 0.5000 | 0.9000 |"
    assert markdown_table(["a", "n"], [["x", 1234]]) == "| a | n |\n|---|---:|\n| x | 1,234 |\n"
    with pytest.raises(MetricsError):
        markdown_table(["a"], [["x", 1]])


def test_figures_are_written(tmp_path):
    cm = confusion_matrix([0, 5, 5], [0, 5, 4])
    assert plot_confusion(cm, tmp_path / "c.png").stat().st_size > 1000
    conds = np.random.default_rng(0).poisson(1.0, (3, 2, 16, 16)).astype(np.float32)
    imgs = np.random.default_rng(1).uniform(0, 1, (3, 1, 16, 16))
    assert plot_recon_grid(conds, imgs, imgs, tmp_path / "g.png").stat().st_size > 1000
    logs = {"S01": [{"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.1},
                    {"epoch": 2, "train_loss": 0.4, "test_accuracy": 0.2}]}
    assert plot_curves(logs, tmp_path / "k.png").stat().st_size > 1000
    with pytest.raises(MetricsError):
        plot_recon_grid(conds, imgs[:2], imgs, tmp_path / "x.png")

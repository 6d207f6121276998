"""`evmicro dataset build` -> `evmicro train` -> `evmicro evaluate` on a tiny simulated set; resumable
training gives the same weights as an uninterrupted run; cVAE and RGB C3D runs; configuration checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ros2_evmicro.cli import main
from ros2_evmicro.core.evaluate import EvaluateError, evaluate_run
from ros2_evmicro.core.models import load_card, load_checkpoint
from ros2_evmicro.core.train import MODEL_DEFAULTS, TrainError, clip_window, make_config, train

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """2 subjects x 2 AUs (12, 45), DAVIS events + webcam, 1 s takes: 4 clips of about 30 windows."""
    out = tmp_path_factory.mktemp("ds") / "tiny"
    rc = main(["dataset", "build", "--sim", "2", "--aus", "12,45", "--duration-s", "1.0", "--cameras",
               "davis,webcam", "--out", str(out), "--workers", "2", "--quiet"])
    assert rc == 0
    return out


@pytest.mark.slow
def test_build_train_evaluate_cli(data, tmp_path, capsys):
    run = tmp_path / "snn"
    assert main(["train", "snn", "--data", str(data), "--out", str(run), "--epochs", "2", "--max-frames", "6",
                 "--device", "cpu", "--quiet"]) == 0
    assert "fold S01" in capsys.readouterr().out
    cfg = json.loads((run / "run.json").read_text())["config"]
    assert (cfg["lr"], cfg["batch_size"], cfg["dropout"], cfg["epochs"]) == (1e-3, 8, 0.2, 2)
    for fold in ("S01", "S02"):
        log = (run / fold / "log.csv").read_text().splitlines()
        assert log[0].startswith("epoch,lr,train_loss,test_loss,test_accuracy,test_top3") and len(log) == 3
    card = load_card(run / "S01" / "model")
    assert (card.arch, card.sensor, card.normalisation, card.window_ms, card.in_channels) == (
        "plif_snn", "davis", "counts", 33.0, 2)
    assert "simulated" in card.training_data and set(card.metrics) >= {"accuracy", "top3_accuracy"}
    # the AU node's expectations are met
    load_checkpoint(run / "S01" / "model", expect={"sensor": "davis", "window_ms": 33.0,
                                                   "normalisation": "counts", "in_channels": 2})
    res = json.loads((run / "results.json").read_text())
    assert res["overall"]["clips"] == 4.0 and (run / "curves.png").is_file()
    assert main(["evaluate", "--run", str(run), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| Method | Modality | Params | Accuracy | Top-3 |" in text
    assert "| SNN (PLIF) | Events (DAVIS346) | 4.31M |" in text
    assert (run / "eval" / "confusion.png").is_file()
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["overall"]["accuracy"] == pytest.approx(res["overall"]["accuracy"])
    assert m["params"] == 4_312_470


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(data, tmp_path):
    kw = dict(epochs=2, max_frames=6, device="cpu", test_subject="S02", batch_size=2)
    ref = train(make_config("snn", data, tmp_path / "ref", **kw), quiet=True)

    def stop(fold, epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = make_config("snn", data, tmp_path / "cut", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch=stop, quiet=True)
    assert torch.load(tmp_path / "cut/S02/state.pt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "cut/S02/model.pt").exists()
    seen = []
    res = train(cfg, on_epoch=lambda f, e, r: seen.append(e), quiet=True)
    assert seen == [2]  # continued after epoch 1
    a = torch.load(tmp_path / "ref/S02/model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut/S02/model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert res.folds["S02"]["accuracy"] == ref.folds["S02"]["accuracy"]
    # a finished fold is skipped
    seen.clear()
    train(cfg, on_epoch=lambda f, e, r: seen.append(e), quiet=True)
    assert seen == []
    with pytest.raises(TrainError, match="other settings"):
        train(make_config("snn", data, tmp_path / "cut", **{**kw, "epochs": 3}), quiet=True)


@pytest.mark.slow
def test_cvae_and_rgb_c3d(data, tmp_path):
    run = tmp_path / "cvae"
    train(make_config("cvae", data, run, epochs=1, max_frames=6, device="cpu", test_subject="S02"), quiet=True)
    rep = evaluate_run(run, device="cpu")
    assert "| Method | Sensor | MSE | RMSE | MAE | PSNR (dB) | SSIM | NCC |" in rep.markdown
    o = rep.overall
    assert 0 < o["mse"] < 1 and o["rmse"] == pytest.approx(np.sqrt(o["mse"]), rel=0.3) and -1 <= o["ncc"] <= 1
    assert o["frames"] == 2 * 6 and (run / "eval" / "recon_grid.png").is_file()
    card = load_card(run / "S02" / "model")
    assert (card.arch, card.sensor, card.in_channels, card.input_size) == ("cvae", "davis", 2, [64, 64])
    # the RGB baseline: C3D on webcam crops, trained on every subject, with the figures of another run
    loso = tmp_path / "c3d_loso"
    (loso).mkdir()
    (loso / "results.json").write_text(json.dumps({"overall": {"accuracy": 0.5, "top3_accuracy": 0.75}}))
    run2 = tmp_path / "c3d"
    train(make_config("c3d", data, run2, modality="rgb", epochs=1, max_frames=6, device="cpu", folds="none",
                      batch_size=4), quiet=True, metrics_from=str(loso))
    card = load_card(run2 / "model")
    assert (card.arch, card.sensor, card.in_channels, card.normalisation) == ("c3d", "webcam", 3, "unit")
    assert card.metrics["heldout_accuracy"] == 0.5 and "train_accuracy" in card.metrics
    load_checkpoint(run2 / "model")  # checksum of the re-saved card holds
    rep2 = evaluate_run(run2, device="cpu")
    assert "No held-out subject" in rep2.markdown and "RGB (webcam)" in rep2.markdown


def test_config_defaults_match_yaml():
    y = yaml.safe_load((REPO / "config" / "train.yaml").read_text())
    assert y == MODEL_DEFAULTS
    c = make_config("c3d", "d", "o")
    assert (c.lr, c.batch_size, c.epochs) == (1e-4, 8, 100)
    c = make_config("cvae", "d", "o", epochs=None)
    assert (c.lr, c.batch_size, c.epochs) == (1e-3, 16, 100)


def test_bad_configs(data, tmp_path):
    with pytest.raises(TrainError, match="model"):
        make_config("resnet", "d", "o")
    with pytest.raises(TrainError, match="event frames"):
        make_config("cvae", "d", "o", modality="rgb")
    with pytest.raises(TrainError, match="sensor"):
        make_config("snn", "d", "o", sensor="kinect")
    with pytest.raises(TrainError, match="no clip"):
        train(make_config("snn", data, tmp_path / "r", sensor="evk4", epochs=1), quiet=True)
    with pytest.raises(TrainError, match="test subject"):
        train(make_config("snn", data, tmp_path / "r2", test_subject="S09", epochs=1), quiet=True)
    with pytest.raises(EvaluateError, match="not a training run"):
        evaluate_run(tmp_path / "nothing")
    assert main(["train", "snn", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2


def test_clip_window():
    assert clip_window(30, (10, 14), 0) == (0, 30)
    assert clip_window(30, (10, 14), 40) == (0, 30)
    assert clip_window(60, (30, 38), 40) == (14, 54)  # centred on the perform phase (34)
    assert clip_window(60, (2, 4), 40) == (0, 40)  # clamped to the clip
    assert clip_window(60, (55, 59), 40) == (20, 60)
    rng = np.random.default_rng(0)
    starts = {clip_window(60, (30, 38), 40, rng)[0] for _ in range(200)}
    assert starts == set(range(4, 21))  # +- 10 windows of jitter, clamped at 20


def test_shipped_script_uses_existing_options():
    """scripts/train_shipped.sh parses, and every --option it passes exists in `evmicro dataset build`,
    `evmicro train` or `evmicro evaluate` (its end-to-end run with tiny settings is in its header)."""
    import re
    import subprocess

    from ros2_evmicro.cli import build_parser

    script = REPO / "scripts" / "train_shipped.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    known = set()
    for name in ("train", "evaluate"):
        known |= set(sub.choices[name]._option_string_actions)
    ds = next(a for a in sub.choices["dataset"]._actions if a.__class__.__name__ == "_SubParsersAction")
    known |= set(ds.choices["build"]._option_string_actions)
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", script.read_text()))
    assert used and used <= known, sorted(used - known)

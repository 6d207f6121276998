"""Dataset building, training and evaluation costs.

Figures:

- dataset build rate of the simulator path (``build_sim``: render + slice + crop + write), per camera, in
  clip-seconds per wall second; anchor: real time (1.0), i.e. the ratio says how many times faster than the
  takes last (above 1: faster than recording them);
- the processing alone (:func:`~ros2_evmicro.core.dataset.process_clip`: Slicer + face crop + webcam crops
  of an already rendered DAVIS + webcam take), same unit and anchor;
- one training epoch of the SNN, C3D (16 clips of 16 frames, batch 8) and cVAE (256 frames, batch 16) on
  the CPU; anchor: the inference pass over the same data (forward only), so the ratio is the cost of
  training relative to inference;
- ``evaluate_run`` of a one-fold SNN run, per clip.

Usage: ``python -m bench.bench_training`` (``EVMICRO_BENCH_NO_WRITE=1`` for a trial run).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.harness import Row, report
from ros2_evmicro.core.dataset import BuildConfig, build_sim, process_clip, sim_clip_source
from ros2_evmicro.core.train import (
    ClipData,
    _build,
    _train_classifier_epoch,
    _train_cvae_epoch,
    make_config,
    predict_clips,
    reconstruct_frames,
    train,
)

DUR_S = 1.6
AUS = (12, 45)


def _build_rate(tmp: Path, cam: str, **kw) -> tuple[float, float]:
    t0 = time.perf_counter()
    rep = build_sim(tmp / f"ds_{cam}_{len(kw)}", [1], aus=AUS, cameras=(cam,), duration_s=DUR_S, quiet=True, **kw)
    dt = time.perf_counter() - t0
    return rep.clip_seconds / dt, rep.clip_seconds


def _clips(n: int, t: int, ch: int, seed: int = 0) -> list[ClipData]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.poisson(0.3, (t, ch, 64, 64)).astype(np.float32) if ch == 2 else \
            rng.integers(0, 255, (t, ch, 64, 64), dtype=np.uint8)
        tgt = rng.integers(0, 255, (t, 1, 64, 64), dtype=np.uint8)
        out.append(ClipData(f"c{i}", "S01", i % 21, (t // 2 - 2, t // 2 + 2), x, tgt))
    return out


def _best(fn, *args, repeat: int = 2) -> float:
    """Best wall time (s) of ``repeat`` calls of ``fn(*args)``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def _epoch_rows() -> list[Row]:
    rows = []
    dev = torch.device("cpu")
    for model, modality, ch in (("snn", "events", 2), ("c3d", "rgb", 3)):
        cfg = make_config(model, "-", "-", modality=modality, max_frames=16)
        clips = _clips(16, 16, ch)
        torch.manual_seed(0)
        net = _build(cfg, (64, 64))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        # the first passes of each shape are slow (allocator, oneDNN primitives): warm up, then best of 2
        _train_classifier_epoch(net, opt, clips, cfg, np.random.default_rng(0), dev)
        predict_clips(net, clips, cfg, dev)
        train_s = _best(_train_classifier_epoch, net, opt, clips, cfg, np.random.default_rng(1), dev)
        infer_s = _best(predict_clips, net, clips, cfg, dev)
        rows.append(Row(f"{model} training epoch, 16 clips x 16 frames ({modality})", train_s, "s",
                        "inference over the same clips", infer_s, lower_is_better=True,
                        note=f"{train_s / 16 * 1e3:.0f} ms per clip"))
    cfg = make_config("cvae", "-", "-", max_frames=16)
    clips = _clips(16, 16, 2)
    conds = np.concatenate([c.x for c in clips])
    targets = np.concatenate([c.target for c in clips]).astype(np.float32) / 255
    torch.manual_seed(0)
    net = _build(cfg, (64, 64))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    _train_cvae_epoch(net, opt, (conds, targets), cfg, np.random.default_rng(0), dev)
    reconstruct_frames(net, conds, dev)
    train_s = _best(_train_cvae_epoch, net, opt, (conds, targets), cfg, np.random.default_rng(1), dev)
    infer_s = _best(reconstruct_frames, net, conds, dev)
    rows.append(Row("cvae training epoch, 256 frames (batch 16)", train_s, "s", "reconstruction of the same frames",
                    infer_s, lower_is_better=True, note=f"{train_s / 256 * 1e3:.1f} ms per frame"))
    return rows


def main() -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build_sim(tmp / "warm", [1], aus=[45], cameras=("davis",), duration_s=1.0, quiet=True)  # numba, caches
        for cam, kw, label in (("davis", {}, "DAVIS346 events"),
                               ("evk4", {"render_hz": {"evk4": 150.0}}, "EVK4 events (150 Hz render)"),
                               ("webcam", {}, "webcam, face region (webcam_roi)"),
                               ("webcam", {"webcam_roi": False}, "webcam, full 1920x1080 frames")):
            rate, secs = _build_rate(tmp, cam, **kw)
            rows.append(Row(f"dataset build rate, {label}", rate, "clip-s/s", "real time", 1.0,
                            note=f"{len(AUS)} takes, {secs:.1f} s of clips"))
        src = sim_clip_source(1, 12, 1, ("davis", "webcam"), DUR_S)
        cfg = BuildConfig()
        process_clip(src, cfg)
        t0 = time.perf_counter()
        n = 3
        for _ in range(n):
            process_clip(src, cfg)
        secs = (src.t_end_us - src.t_start_us) / 1e6
        rows.append(Row("process_clip (Slicer + crops), DAVIS + webcam", n * secs / (time.perf_counter() - t0),
                        "clip-s/s", "real time", 1.0, note="render excluded"))
        rows += _epoch_rows()
        data = tmp / "ds_davis_0"
        run = tmp / "run"
        train(make_config("snn", data, run, epochs=1, folds="none", max_frames=16, device="cpu"), quiet=True)
        from ros2_evmicro.core.evaluate import evaluate_run

        evaluate_run(run, device="cpu")
        t0 = time.perf_counter()
        rep = evaluate_run(run, device="cpu")
        dt = time.perf_counter() - t0
        n_clips = int(rep.overall["clips"])
        rows.append(Row("evaluate_run (SNN, load + predict + tables + confusion PNG)", dt, "s",
                        note=f"{n_clips} clips, {dt / n_clips * 1e3:.0f} ms per clip"))
    report("Dataset building, training and evaluation (bench_training)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

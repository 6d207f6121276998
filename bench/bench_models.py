"""Per-frame latency of the models as the ROS nodes run them (batch of one, inference mode).

Figures (p50 and p99 over ``--frames`` frames, after a warm-up):

- the streaming SNN step (:class:`AUStreamer`, 'segment' policy, one lane; and 'sliding' with a 30-frame
  window and a 15-frame hop, two lanes), numpy frame in, numpy scores out; anchor: the same model run on
  a whole 30-frame clip (:func:`classify_clip`), per frame;
- the cVAE default decode (:class:`Reconstructor`, 64x64, z = 0), numpy frame in, uint8 image out;
  anchors: the same decode of a batch of 30 frames, per frame, and the paper-size cVAE (289.6M params);
- the C3D baseline on a 30-frame clip, per frame (anchor: the SNN clip).

Goals: SNN step p99 < 5 ms, cVAE decode p99 < 10 ms on the development CPU.

Usage (from the repository root)::

    python -m bench.bench_models            # CPU
    python -m bench.bench_models --cuda     # GPU (synchronises before and after each timed call)
    python -m bench.bench_models --cuda --half

The last line printed is a JSON object with every figure (``--json PATH`` also writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from bench.harness import Row, machine, percentiles, report
from ros2_evmicro.core.models import (
    AUSNN,
    C3D,
    CVAE,
    DEFAULT_CONFIG,
    PAPER_SIZE_CONFIG,
    AUStreamer,
    Reconstructor,
    classify_clip,
    configure_threads,
    cvae_param_count,
    param_count,
    reset_state,
)

CLIP_T = 30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], object], n: int, device: torch.device) -> list[float]:
    """Wall time in ms of ``fn(i)`` for i in 0..n-1, synchronising the GPU around each call."""
    out = []
    for i in range(n):
        _sync(device)
        t0 = time.perf_counter()
        fn(i)
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _spiking_snn(device: torch.device) -> AUSNN:
    """The paper's SNN with weights scaled so that all layers fire (an untrained net is silent)."""
    torch.manual_seed(0)
    m = AUSNN()
    with torch.no_grad():
        m.conv[0].weight.mul_(4)
        m.conv[4].weight.mul_(4)
        m.fc[2].weight.mul_(6)
        m.fc[5].weight.mul_(6)
    return m.to(device).eval()


def _paper_size_decode(device: torch.device, half: bool, rng: np.random.Generator, n: int) -> list[float]:
    """Decode latencies (ms) of the paper-size cVAE; the 1.16 GB model is freed on return."""
    big = Reconstructor(CVAE.from_config(PAPER_SIZE_CONFIG), device, half=half)
    big.warm_up(2)
    shape = (4, 2, PAPER_SIZE_CONFIG.cond_height, PAPER_SIZE_CONFIG.cond_width)
    big_frames = rng.poisson(1.0, size=shape).astype(np.float32)
    return time_calls(lambda i: big.reconstruct(big_frames[i % 4]), n, device)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cuda", action="store_true", help="run on CUDA (cuda:0)")
    ap.add_argument("--half", action="store_true", help="float16 on CUDA")
    ap.add_argument("--frames", type=int, default=400, help="timed frames per streaming figure")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default min(4, cores))")
    ap.add_argument("--json", default=None, help="also write the JSON result to this file")
    ap.add_argument("--no-write", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.cuda and not torch.cuda.is_available():
        sys.exit("--cuda given but torch.cuda.is_available() is False")
    if args.half and not args.cuda:
        sys.exit("--half needs --cuda")
    device = torch.device("cuda:0" if args.cuda else "cpu")
    load_before = os.getloadavg()[0]
    threads = configure_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = rng.poisson(1.0, size=(args.frames, 2, 64, 64)).astype(np.float32)
    clip = frames[:CLIP_T]
    n = args.frames
    res: dict[str, dict] = {}

    # SNN streaming, segment policy (one lane)
    snn = _spiking_snn(device)
    st = AUStreamer(snn, device, reset_policy="segment", half=args.half)
    st.warm_up(5)
    seg = time_calls(lambda i: st.step(frames[i]), n, device)
    # SNN streaming, sliding policy (two lanes)
    sl = AUStreamer(_spiking_snn(device), device, "sliding", window_frames=CLIP_T, hop_frames=CLIP_T // 2,
                    half=args.half)
    sl.warm_up(5)
    sli = time_calls(lambda i: sl.step(frames[i]), n, device)
    # anchor: the same 2-lane step through spikingjelly's own single-step modules (AUSNN._step_modules, the
    # path AUSNN.step takes with autograd or on CUDA), on the same frames
    sj = _spiking_snn(device)
    reset_state(sj)

    @torch.inference_mode()
    def sj_step(i: int) -> torch.Tensor:
        return sj._step_modules(torch.from_numpy(frames[i]).to(device).unsqueeze(0), 2)

    for i in range(5):
        sj_step(i)
    sj_sli = time_calls(sj_step, n, device)
    # SNN clip anchor
    ref = _spiking_snn(device)
    for _ in range(2):
        classify_clip(ref, clip)
    reps = max(5, n // CLIP_T)
    snn_clip = [t / CLIP_T for t in time_calls(lambda i: classify_clip(ref, clip), reps, device)]

    # cVAE default decode
    cv = CVAE.from_config(DEFAULT_CONFIG)
    rec = Reconstructor(cv, device, half=args.half)
    rec.warm_up(5)
    dec = time_calls(lambda i: rec.reconstruct(frames[i]), n, device)
    # cVAE batch anchor (same model, 30 frames in one call)
    batch = torch.from_numpy(clip).to(device)
    if args.half:
        batch = batch.half()
    with torch.inference_mode():
        rec.model.reconstruct(batch)
        dec_batch = [t / CLIP_T for t in time_calls(lambda i: rec.model.reconstruct(batch), reps, device)]
    # paper-size cVAE (289.6M parameters, 1.16 GB float32)
    dec_big = _paper_size_decode(device, args.half, rng, max(10, n // 20))

    # C3D baseline on the clip
    c3d = C3D().to(device).eval()
    with torch.autocast("cuda", dtype=torch.float16) if args.half else torch.autocast("cpu", enabled=False):
        classify_clip(c3d, clip)
        c3d_clip = [t / CLIP_T for t in time_calls(lambda i: classify_clip(c3d, clip), max(5, reps // 2), device)]

    def stats(samples: list[float]) -> dict:
        p50, p99 = percentiles(samples, (50, 99))
        return {"p50_ms": p50, "p99_ms": p99, "mean_ms": float(np.mean(samples)), "n": len(samples)}

    res = {
        "snn_step_segment": stats(seg),
        "snn_step_sliding_2lanes": stats(sli),
        "snn_step_2lanes_spikingjelly_modules": stats(sj_sli),
        "snn_clip30_per_frame": stats(snn_clip),
        "cvae_decode_default": stats(dec),
        "cvae_decode_batch30_per_frame": stats(dec_batch),
        "cvae_decode_paper_size": stats(dec_big),
        "c3d_clip30_per_frame": stats(c3d_clip),
    }
    ok_snn = res["snn_step_segment"]["p99_ms"] < 5.0
    ok_cvae = res["cvae_decode_default"]["p99_ms"] < 10.0
    dev_name = torch.cuda.get_device_name(0) if args.cuda else "cpu"
    load_after = os.getloadavg()[0]
    tag = (f"{dev_name}{' fp16' if args.half else ''}, {threads} threads, "
           f"1-min load {load_before:.1f} before / {load_after:.1f} after (shared machine)")
    sc = res["snn_clip30_per_frame"]["p50_ms"]
    rows = [
        Row("SNN streaming step p50 (segment, 1 lane)", res["snn_step_segment"]["p50_ms"], "ms/frame",
            "SNN 30-frame clip, per frame (p50)", sc, lower_is_better=True, note=tag),
        Row("SNN streaming step p99 (segment, 1 lane)", res["snn_step_segment"]["p99_ms"], "ms/frame",
            "SNN 30-frame clip, per frame (p50)", sc, lower_is_better=True,
            note=f"goal p99 < 5 ms: {'met' if ok_snn else 'NOT met'}"),
        Row("SNN streaming step p50 (sliding 30/15, 2 lanes)", res["snn_step_sliding_2lanes"]["p50_ms"],
            "ms/frame", "SNN 30-frame clip, per frame (p50)", sc, lower_is_better=True),
        Row("SNN streaming step p99 (sliding 30/15, 2 lanes)", res["snn_step_sliding_2lanes"]["p99_ms"],
            "ms/frame", "SNN 30-frame clip, per frame (p50)", sc, lower_is_better=True),
        Row("SNN streaming step p50 (sliding 30/15, 2 lanes)", res["snn_step_sliding_2lanes"]["p50_ms"],
            "ms/frame", "2-lane step through spikingjelly's single-step modules (p50)",
            res["snn_step_2lanes_spikingjelly_modules"]["p50_ms"], lower_is_better=True,
            note="AUSNN.step on CPU without autograd: one compiled pass per PLIF layer, same spikes bit for bit"
            if device.type == "cpu" else "on CUDA AUSNN.step takes spikingjelly's modules itself"),
        Row("cVAE decode p50 (64x64 default, 12.7M params)", res["cvae_decode_default"]["p50_ms"], "ms/frame",
            "same cVAE, batch of 30, per frame (p50)", res["cvae_decode_batch30_per_frame"]["p50_ms"],
            lower_is_better=True),
        Row("cVAE decode p99 (64x64 default, 12.7M params)", res["cvae_decode_default"]["p99_ms"], "ms/frame",
            "paper-size cVAE 168x168 (289.6M params), p99", res["cvae_decode_paper_size"]["p99_ms"],
            lower_is_better=True, note=f"goal p99 < 10 ms: {'met' if ok_cvae else 'NOT met'}"),
        Row("cVAE decode p50 (64x64 default)", res["cvae_decode_default"]["p50_ms"], "ms/frame",
            "paper-size cVAE 168x168, p50", res["cvae_decode_paper_size"]["p50_ms"], lower_is_better=True),
        Row("C3D 30-frame clip, per frame (p50)", res["c3d_clip30_per_frame"]["p50_ms"], "ms/frame",
            "SNN 30-frame clip, per frame (p50)", sc, lower_is_better=True,
            note=f"C3D {param_count(c3d):,} params vs SNN {param_count(ref):,}"),
    ]
    report(f"Models: per-frame latency ({'CUDA' if args.cuda else 'CPU'})", rows,
           command="python -m bench.bench_models" + " ".join([""] + (argv if argv is not None else sys.argv[1:])),
           write=not args.no_write)
    out = {
        "bench": "bench_models",
        "device": dev_name,
        "half": args.half,
        "threads": threads,
        "machine": machine(),
        "torch": str(torch.__version__),
        "frames": n,
        "loadavg_1min": [load_before, load_after],
        "params": {"snn": param_count(ref), "c3d": param_count(c3d), "cvae_default": param_count(cv),
                   "cvae_paper_size": cvae_param_count(PAPER_SIZE_CONFIG)},
        "goals_met": {"snn_step_p99_lt_5ms": ok_snn, "cvae_decode_p99_lt_10ms": ok_cvae},
        "results": res,
    }
    line = json.dumps(out)
    print(line)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(line + "\n")
    return out


if __name__ == "__main__":
    main()

"""Device check of the models on CUDA: correctness against the CPU, then CUDA-vs-CPU timings, in one run.

Checks (each row PASS or FAIL; any FAIL makes the exit code 1, the timings run all the same):

- forward of the PLIF SNN, the C3D and the cVAE on the device against the CPU forward of the same weights,
  in plain fp32 (TF32 switched off for cuDNN convolutions and CUDA matmuls, see :func:`fp32_strict`).
  Tolerances: SNN output spikes identical in at least 99.5% of the ``(t, b, neuron)`` entries and
  ``|d score| <= 0.05`` (a spike flips when a membrane potential sits within float rounding of the
  threshold; whether the spikes were identical is in the note); C3D ``max |d logit| <= 1e-3 * max |logit|``;
  cVAE images ``max |d| <= 1e-4`` (of full scale 1), mu and log sigma^2 ``<= 1e-3 * max |value|``;
- :class:`AUStreamer` on the device, 'segment' and 'sliding' policies, against :func:`classify_clip` of the
  same frames on the same device (``|d score| <= 1e-6``, the tolerance of test/test_models.py);
- each shipped checkpoint ``models/*.pt`` loaded onto the device through :func:`load_checkpoint` (card
  checked against the card's own sensor, window, normalisation, channels and input size; sha256 verified)
  and run on a fixed input: AU scores against the CPU load (SNN tolerances above; streaming = clip
  ``<= 1e-6``), cVAE reconstructions (:class:`Reconstructor`) ``max |d| <= 1e-4`` as float and
  ``<= 1`` grey level as uint8;
- half precision: ``AUStreamer(half=True)``, ``Reconstructor(half=True)`` and C3D under float16 autocast on
  CUDA (bfloat16 autocast of the same models on a CPU-only dry run): it must run and give finite scores in
  [0, 1] / uint8 images; the deviation from fp32 is the figure.

Info rows (no pass/fail): the same model comparisons with the device's default float32 settings (cuDNN
convolutions in TF32 on Ampere and later), i.e. what the ROS nodes get.

Timings, on the device and on this machine's CPU in the same run (anchor; ratio = speed-up of the device):
per-frame streaming latency at batch 1 (SNN :meth:`AUStreamer.step`, cVAE :meth:`Reconstructor.reconstruct`,
p50 and p99), throughput at batch 64 (SNN and C3D clips of 30 frames, cVAE frames), one training step
(forward + backward + Adam, as ``ros2_evmicro.core.train`` runs it, at its batch sizes and ``max_frames``) of
the SNN, the C3D and the cVAE, and the peak CUDA memory of each. Every timed call is bracketed by
``torch.cuda.synchronize`` (``bench.bench_models.time_calls``) after warm-up calls.

Usage (repository root)::

    python -m bench.bench_cuda --device cuda --md-out out/cuda.md --json-out out/cuda.json
    EVMICRO_BENCH_NO_WRITE=1 python -m bench.bench_cuda --device cpu --quick --md-out /tmp/cuda_cpu.md
    python -m bench.bench_cuda --device cuda --probe-plif   # only: does the PLIF CUDA kernel run?

Nothing is appended to docs/benchmarks.md unless ``--append-doc`` is given (and
``EVMICRO_BENCH_NO_WRITE`` is not 1). ``scripts/device_check.sh`` runs this on a GPU machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench.bench_models import CLIP_T, _spiking_snn, _sync, time_calls
from bench.bench_training import _clips
from bench.harness import ROOT, Row, machine, percentiles, report
from ros2_evmicro.core.models import (
    C3D,
    CVAE,
    DEFAULT_CONFIG,
    AUStreamer,
    Reconstructor,
    classify_clip,
    load_card,
    load_checkpoint,
)
from ros2_evmicro.core.models.runtime import fp32_strict
from ros2_evmicro.core.train import (
    _build,
    _train_classifier_epoch,
    _train_cvae_epoch,
    make_config,
)

MODELS_DIR = ROOT / "models"
SPIKE_MISMATCH_MAX = 0.005  # fraction of output spike entries allowed to differ (fp32 rounding at threshold)
SCORE_TOL = 0.05  # |d score| of the SNN, device vs CPU
STREAM_TOL = 1e-6  # streaming vs clip on one device (test/test_models.py)
C3D_RTOL = 1e-3  # max |d logit| / max |logit|
IMAGE_TOL = 1e-4  # cVAE image, float in [0, 1]
LATENT_RTOL = 1e-3  # cVAE mu / logvar, relative to max |value|

_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[bench_cuda {time.perf_counter() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


# -- checks -----------------------------------------------------------------------------------------------
@dataclass
class Check:
    """One correctness figure: ``ok`` True/False (PASS/FAIL) or None (info row)."""

    name: str
    ok: bool | None
    value: float
    unit: str
    tol: str = ""
    detail: str = ""

    @property
    def status(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")

    def row(self) -> Row:
        note = "; ".join(x for x in (f"tol {self.tol}" if self.tol else "", self.detail) if x)
        return Row(f"{self.status}: {self.name}", self.value, self.unit, note=note.replace("|", "/"))


def _precision_flags() -> dict[str, str]:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return {"cudnn.conv.fp32_precision": str(conv.fp32_precision),
                "cuda.matmul.fp32_precision": str(torch.backends.cuda.matmul.fp32_precision)}
    return {"cudnn.allow_tf32": str(torch.backends.cudnn.allow_tf32),
            "cuda.matmul.allow_tf32": str(torch.backends.cuda.matmul.allow_tf32)}


def _poisson(shape: tuple[int, ...], lam: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, size=shape).astype(np.float32)


def _lowp(device: torch.device):
    """(autocast context factory, label) of the half-precision path: float16 on CUDA, bfloat16 on a CPU."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    label = "fp16 autocast" if device.type == "cuda" else "bf16 autocast (CPU dry run)"
    return (lambda: torch.autocast(device.type, dtype=dtype)), label


@torch.inference_mode()
def _snn_compare(ref: torch.nn.Module, dut: torch.nn.Module, x: torch.Tensor, dev: torch.device
                 ) -> tuple[int, int, float, float]:
    """(output spikes that differ, output spikes in all, max |d score|, mean output rate) of an SNN clip
    ``x`` (T, B, C, H, W) run by ``ref`` on the CPU and by ``dut`` on ``dev`` (scores from each model's forward)."""
    sp_ref = ref.forward_spikes(x)
    sp_dut = dut.forward_spikes(x.to(dev)).float().cpu()
    d_score = float((ref(x) - dut(x.to(dev)).float().cpu()).abs().max())
    return int((sp_ref != sp_dut).sum()), sp_ref.numel(), d_score, float(sp_ref.mean())


def _snn_check(name: str, ref, dut, x, dev, need_activity: bool = True, ok_strict: bool = True) -> Check:
    n_diff, n_all, d_score, rate = _snn_compare(ref, dut, x, dev)
    frac = n_diff / n_all
    ok: bool | None = frac <= SPIKE_MISMATCH_MAX and d_score <= SCORE_TOL
    if need_activity and not 0.02 < rate < 0.9:
        ok = False  # a silent (or saturated) network would make the comparison empty
    if not ok_strict:
        ok = None
    same = "output spikes identical" if n_diff == 0 else f"{n_diff} of {n_all} output spikes differ"
    detail = f"{same}, max /d score/ {d_score:.3g}, output rate {rate:.3f}, clip {tuple(x.shape[:2])} (T, B)"
    tol = f"<= {SPIKE_MISMATCH_MAX:.1%} spikes differ and /d score/ <= {SCORE_TOL}" if ok_strict else ""
    return Check(name, ok, frac, "fraction of spikes differing", tol, detail)


def check_models_vs_cpu(dev: torch.device, strict: bool, q: bool) -> list[Check]:
    """SNN, C3D and cVAE forward on ``dev`` against the CPU (strict fp32 checks, or info rows)."""
    flags = ", ".join(f"{k}={v}" for k, v in _precision_flags().items())
    tag = "fp32 (TF32 off)" if strict else f"device default float32 settings ({flags})"
    ctx = fp32_strict() if strict else nullcontext()
    out = []
    with ctx:
        ref = _spiking_snn(torch.device("cpu"))
        dut = copy.deepcopy(ref).to(dev).eval()
        x = torch.from_numpy(_poisson((CLIP_T if not q else 12, 4, 2, 64, 64), 1.0, seed=1))
        out.append(_snn_check(f"SNN forward, {dev.type} vs CPU, {tag}", ref, dut, x, dev, ok_strict=strict))
        del dut

        torch.manual_seed(0)
        c3d = C3D().eval()
        c3d_dut = copy.deepcopy(c3d).to(dev).eval()
        clip = torch.from_numpy(_poisson((16 if not q else 6, 2, 2, 64, 64), 1.0, seed=2))
        with torch.inference_mode():
            lo_ref = c3d(clip)
            lo_dut = c3d_dut(clip.to(dev)).float().cpu()
        scale = float(lo_ref.abs().max())
        rel = float((lo_ref - lo_dut).abs().max()) / max(scale, 1e-12)
        out.append(Check(f"C3D forward logits, {dev.type} vs CPU, {tag}", rel <= C3D_RTOL if strict else None, rel,
                         "max /d logit/ / max /logit/", f"<= {C3D_RTOL:g}" if strict else "",
                         f"max /logit/ {scale:.3g}, {clip.shape[0]}-frame clips, batch 2"))
        del c3d_dut

        torch.manual_seed(0)
        cv = CVAE.from_config(DEFAULT_CONFIG).eval()
        cv_dut = copy.deepcopy(cv).to(dev).eval()
        c = torch.from_numpy(_poisson((8, 2, 64, 64), 1.0, seed=3))
        img = torch.from_numpy(np.random.default_rng(4).random((8, 1, 64, 64), dtype=np.float32))
        z = torch.from_numpy(np.random.default_rng(5).standard_normal((8, DEFAULT_CONFIG.latent_dim),
                                                                      dtype=np.float32))
        with torch.inference_mode():
            rec_ref, rec_dut = cv.reconstruct(c), cv_dut.reconstruct(c.to(dev)).cpu()
            dec_ref, dec_dut = cv.decode(z, c), cv_dut.decode(z.to(dev), c.to(dev)).cpu()
            mu_ref, lv_ref = cv.encode(img, c)
            mu_dut, lv_dut = (t.cpu() for t in cv_dut.encode(img.to(dev), c.to(dev)))
        d_img = max(float((rec_ref - rec_dut).abs().max()), float((dec_ref - dec_dut).abs().max()))
        d_lat = max(float((mu_ref - mu_dut).abs().max()) / max(float(mu_ref.abs().max()), 1e-12),
                    float((lv_ref - lv_dut).abs().max()) / max(float(lv_ref.abs().max()), 1e-12))
        ok = d_img <= IMAGE_TOL and d_lat <= LATENT_RTOL
        out.append(Check(f"cVAE reconstruct/decode/encode, {dev.type} vs CPU, {tag}", ok if strict else None, d_img,
                         "max /d image/", f"image <= {IMAGE_TOL:g}, mu/logvar rel <= {LATENT_RTOL:g}" if strict else "",
                         f"mu/logvar max rel diff {d_lat:.3g}, batch 8"))
    return out


def check_streaming(dev: torch.device, q: bool) -> list[Check]:
    """AUStreamer on ``dev`` equals classify_clip on ``dev`` ('segment' and 'sliding')."""
    out = []
    snn = _spiking_snn(dev)
    t = 10 if q else CLIP_T
    x = _poisson((t, 2, 64, 64), 1.0, seed=8)
    s = AUStreamer(copy.deepcopy(snn), dev, reset_policy="segment")
    s.warm_up()
    d = 0.0
    for i in range(t):
        y = s.step(x[i])
        d = max(d, float(np.abs(y - classify_clip(snn, x[: i + 1])).max()))
    ref = classify_clip(snn, x)
    out.append(Check(f"AUStreamer 'segment' = classify_clip, on {dev.type}", d <= STREAM_TOL, d, "max /d score/",
                     f"<= {STREAM_TOL:g}", f"{t} frames, every prefix compared, final scores sum {ref.sum():.3f}"))
    x = _poisson((15, 2, 64, 64), 1.0, seed=9)
    s = AUStreamer(copy.deepcopy(snn), dev, reset_policy="sliding", window_frames=4, hop_frames=2)
    d, lengths, active = 0.0, [], 0.0
    for i in range(15):
        y = s.step(x[i])
        n = s.last_window_frames
        lengths.append(n)
        ref = classify_clip(snn, x[i - n + 1: i + 1])
        active = max(active, float(ref.max()))
        d = max(d, float(np.abs(y - ref).max()))
    ok = d <= STREAM_TOL and lengths == [1, 2, 3, 4] + [3, 4] * 5 + [3] and active > 0
    out.append(Check(f"AUStreamer 'sliding' 4/2 = classify_clip of its window, on {dev.type}", ok, d,
                     "max /d score/", f"<= {STREAM_TOL:g}", f"window lengths {lengths[:6]}..., max score {active:.2f}"))
    return out


def _ckpt_input(card, t: int, seed: int, batch: int | None = None) -> np.ndarray:
    """A fixed input for a shipped checkpoint: frames (T, C, H, W), or clips (T, B, C, H, W) with ``batch``;
    Poisson(2) counts for 'counts' cards (the shipped DAVIS SNN fires at about 9% there), uniform [0, 1)
    for 'unit' (webcam) cards."""
    shape = (t, card.in_channels, *card.input_size) if batch is None else (t, batch, card.in_channels,
                                                                           *card.input_size)
    if card.normalisation == "unit":
        return np.random.default_rng(seed).random(shape, dtype=np.float32)
    return _poisson(shape, 2.0, seed)


def check_checkpoints(dev: torch.device, q: bool) -> list[Check]:
    """Every models/*.pt through load_checkpoint onto ``dev``, against the CPU load (strict fp32)."""
    out = []
    cards = sorted(MODELS_DIR.glob("*.card.yaml"))
    if not cards:
        return [Check(f"shipped checkpoints in {MODELS_DIR}", False, math.nan, "-", detail="none found")]
    for card_path in cards:
        name = card_path.name[: -len(".card.yaml")]
        card = load_card(card_path)
        if not (MODELS_DIR / f"{name}.pt").is_file():  # a device run carries only what fits its transfer limit
            out.append(Check(f"checkpoint {name}: weights not on this machine (not carried), skipped", None,
                             math.nan, "-"))
            continue
        expect = {"sensor": card.sensor, "window_ms": card.window_ms, "normalisation": card.normalisation,
                  "in_channels": card.in_channels, "input_size": tuple(card.input_size)}
        try:
            m_cpu, _ = load_checkpoint(MODELS_DIR / name, expect=expect, device="cpu")
            m_dev, card_dev = load_checkpoint(MODELS_DIR / name, expect=expect, device=dev)
        except Exception as err:  # noqa: BLE001 - reported as a FAIL row (NaN weights too: load_checkpoint refuses)
            out.append(Check(f"checkpoint {name}: load_checkpoint onto {dev.type}", False, math.nan, "-",
                             detail=f"{type(err).__name__}: {err}"[:300]))
            continue
        on_dev = all(p.device.type == dev.type for p in m_dev.parameters())
        on_dev = on_dev and all(b.device.type == dev.type for b in m_dev.buffers())
        if not on_dev:
            out.append(Check(f"checkpoint {name}: every parameter and buffer on {dev.type}", False, math.nan, "-"))
            continue
        with fp32_strict():
            if card.arch == "plif_snn":
                t = 8 if q else 16
                x = _ckpt_input(card, t, seed=20)
                c = _snn_check(f"checkpoint {name} ({card.arch}, {card.sensor}): AU scores {dev.type} vs CPU, fp32",
                               m_cpu, m_dev, torch.from_numpy(_ckpt_input(card, t, seed=22, batch=4)), dev,
                               need_activity=False)
                top_cpu, top_dev = int(classify_clip(m_cpu, x).argmax()), int(classify_clip(m_dev, x).argmax())
                c.detail += f", top AU {card.classes[top_cpu]} (CPU) / {card.classes[top_dev]} ({dev.type})"
                out.append(c)
                s = AUStreamer(copy.deepcopy(m_dev), dev, reset_policy="segment")
                for i in range(t):
                    y = s.step(x[i])
                d = float(np.abs(y - classify_clip(m_dev, x)).max())
                out.append(Check(f"checkpoint {name}: streaming = classify_clip on {dev.type}", d <= STREAM_TOL, d,
                                 "max /d score/", f"<= {STREAM_TOL:g}", f"{t} frames"))
            elif card.arch == "cvae":
                x = _ckpt_input(card, 8, seed=21)
                with torch.inference_mode():
                    f_cpu = m_cpu.reconstruct(torch.from_numpy(x))
                    f_dev = m_dev.reconstruct(torch.from_numpy(x).to(dev)).cpu()
                d = float((f_cpu - f_dev).abs().max())
                r_cpu, r_dev = Reconstructor(m_cpu, "cpu"), Reconstructor(m_dev, dev)
                u_cpu = np.stack([r_cpu.reconstruct(f) for f in x]).astype(np.int16)
                u_dev = np.stack([r_dev.reconstruct(f) for f in x]).astype(np.int16)
                du = int(np.abs(u_cpu - u_dev).max())
                n_px = int((u_cpu != u_dev).sum())
                out.append(Check(f"checkpoint {name} ({card.arch}, {card.sensor}): reconstructions {dev.type} vs CPU, "
                                 "fp32", d <= IMAGE_TOL and du <= 1, d, "max /d image/",
                                 f"float <= {IMAGE_TOL:g}, uint8 <= 1 level",
                                 f"uint8: max /d/ {du}, {n_px} of {u_cpu.size} pixels differ, mean image "
                                 f"{u_cpu.mean():.1f}; sha256 {card_dev.sha256[:12]} verified"))
            else:
                out.append(Check(f"checkpoint {name}: arch {card.arch!r}", False, math.nan, "-",
                                 detail="no check written for this architecture"))
    return out


def check_half(dev: torch.device, q: bool) -> list[Check]:
    """The half-precision path runs; its deviation from fp32 on the same device is the figure."""
    out = []
    autocast, label = _lowp(dev)
    cuda = dev.type == "cuda"
    snn, card = load_checkpoint(MODELS_DIR / "au_snn_davis", device=dev)
    t = 8 if q else 16
    x = _ckpt_input(card, t, seed=30)
    fp32 = classify_clip(snn, x)
    if cuda:  # the runtime's own half path
        s = AUStreamer(copy.deepcopy(snn), dev, reset_policy="segment", half=True)
        for i in range(t):
            y = s.step(x[i])
        what = "AUStreamer(half=True)"
    else:
        with autocast():
            y = classify_clip(snn, x)
        what = "classify_clip"
    d = float(np.abs(y - fp32).max())
    ok = bool(np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1 and y.shape == fp32.shape)
    out.append(Check(f"SNN au_snn_davis {what}, {label}: runs, finite, in [0, 1]", ok, d, "max /d score/ vs fp32",
                     detail=f"top AU {card.classes[int(np.argmax(y))]} vs fp32 {card.classes[int(np.argmax(fp32))]}"))

    cv_name = "cvae_davis"
    if (MODELS_DIR / "cvae_davis.pt").is_file():
        cv, _ = load_checkpoint(MODELS_DIR / "cvae_davis", device=dev)
    else:  # a device run that could not carry the 50 MB file: the same architecture, random weights
        torch.manual_seed(0)
        cv, cv_name = CVAE().to(dev).eval(), "random-weight cVAE (cvae_davis.pt not carried)"
    c = _poisson((8, 2, 64, 64), 0.5, seed=31)
    r32 = Reconstructor(cv, dev)
    u32 = np.stack([r32.reconstruct(f) for f in c]).astype(np.int16)
    if cuda:
        rh = Reconstructor(copy.deepcopy(cv), dev, half=True)
        uh = np.stack([rh.reconstruct(f) for f in c])
        what = "Reconstructor(half=True)"
    else:
        with torch.inference_mode(), autocast():
            rec = cv.reconstruct(torch.from_numpy(c).to(dev)).float().clamp(0, 1)
        uh = (rec * 255).round().to(torch.uint8).cpu().numpy()[:, 0]
        what = "reconstruct"
    ok = uh.dtype == np.uint8 and uh.shape == u32.shape
    du = np.abs(uh.astype(np.int16) - u32)
    out.append(Check(f"cVAE {cv_name} {what}, {label}: runs, uint8 images", ok, float(du.max()),
                     "max /d grey level/ vs fp32", detail=f"mean /d/ {du.mean():.3f} levels"))

    torch.manual_seed(0)
    c3d = C3D().to(dev).eval()
    clip = _poisson((t, 2, 64, 64), 1.0, seed=32)
    p32 = classify_clip(c3d, clip)
    with autocast():
        ph = classify_clip(c3d, clip)
    ok = bool(np.isfinite(ph).all() and abs(float(ph.sum()) - 1.0) < 1e-3)
    out.append(Check(f"C3D classify_clip, {label}: runs, finite softmax", ok, float(np.abs(ph - p32).max()),
                     "max /d softmax/ vs fp32", detail=f"{t}-frame clip, untrained weights (seed 0)"))
    return out


def probe_plif(dev: torch.device) -> int:
    """Run one PLIF layer (multi-step forward + backward, single-step forward) on ``dev``; 0 when it works."""
    from spikingjelly.activation_based import functional

    impl = functional.neuron_implementation("plif", dev) if dev.type == "cuda" else {"implementation": "cpu"}
    print(f"PLIF implementation on {dev}: {impl}", flush=True)
    snn = _spiking_snn(dev).train()
    x = torch.from_numpy(_poisson((4, 2, 2, 64, 64), 1.0, seed=40)).to(dev)
    snn(x).sum().backward()
    snn.eval()
    with torch.inference_mode():
        snn(x)
        AUStreamer(snn, dev).step(x[0, 0].cpu().numpy())
    _sync(dev)
    print(f"PLIF probe on {dev}: OK", flush=True)
    return 0


# -- timings ----------------------------------------------------------------------------------------------
@dataclass
class Sizes:
    frames: int  # timed streaming frames
    batch: int  # throughput batch
    clip_t: int  # frames per clip (throughput)
    reps: int  # timed throughput calls
    warm: int  # warm-up throughput calls
    train_reps: int  # timed training steps
    train_warm: int
    max_frames: int | None  # training clip length (None: train.py's default)


def _sizes(dev: torch.device, quick: bool) -> Sizes:
    if quick:
        return Sizes(frames=30, batch=4, clip_t=8, reps=2, warm=1, train_reps=2, train_warm=1, max_frames=8)
    if dev.type == "cuda":
        return Sizes(frames=300, batch=64, clip_t=CLIP_T, reps=10, warm=2, train_reps=20, train_warm=3,
                     max_frames=None)
    return Sizes(frames=150, batch=64, clip_t=CLIP_T, reps=2, warm=1, train_reps=3, train_warm=1, max_frames=None)


def _stats(samples: list[float]) -> dict:
    p50, p99 = percentiles(samples, (50, 99))
    return {"p50_ms": p50, "p99_ms": p99, "mean_ms": float(np.mean(samples)), "n": len(samples)}


def _peak_reset(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_mib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def time_device(dev: torch.device, sz: Sizes) -> dict[str, dict]:
    """Every timed figure on ``dev`` (latencies in ms, rates per second, peak CUDA memory in MiB)."""
    res: dict[str, dict] = {}
    frames = _poisson((sz.frames, 2, 64, 64), 1.0, seed=50)

    def section(key: str, fn: Callable[[], dict]) -> None:
        _log(f"timing {key} on {dev}")
        try:
            _peak_reset(dev)
            r = fn()
            r["peak_cuda_mib"] = _peak_mib(dev)
            res[key] = r
        except Exception as err:  # noqa: BLE001 - reported as a FAIL row, the other timings go on
            traceback.print_exc()
            res[key] = {"error": f"{type(err).__name__}: {err}"[:300]}

    def snn_step() -> dict:
        st = AUStreamer(_spiking_snn(dev), dev, reset_policy="segment")
        st.warm_up(5)
        return _stats(time_calls(lambda i: st.step(frames[i]), sz.frames, dev))

    def cvae_decode() -> dict:
        torch.manual_seed(0)
        rec = Reconstructor(CVAE.from_config(DEFAULT_CONFIG), dev)
        rec.warm_up(5)
        return _stats(time_calls(lambda i: rec.reconstruct(frames[i]), sz.frames, dev))

    def throughput(model: torch.nn.Module, x: torch.Tensor, call) -> dict:
        x = x.to(dev)
        with torch.inference_mode():
            for _ in range(sz.warm):
                call(model, x)
            _sync(dev)
            ms = time_calls(lambda i: call(model, x), sz.reps, dev)
        n = x.shape[1] if x.ndim == 5 else x.shape[0]
        return {"per_s": n / (float(np.median(ms)) / 1e3), "median_ms": float(np.median(ms)), "n": len(ms)}

    clip = torch.from_numpy(_poisson((sz.clip_t, sz.batch, 2, 64, 64), 1.0, seed=51))

    def train_step(model_name: str) -> dict:
        cfg = make_config(model_name, "-", "-", max_frames=sz.max_frames)
        t = cfg.max_frames
        torch.manual_seed(0)
        net = _build(cfg, (64, 64)).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        rng = np.random.default_rng(0)
        if model_name == "cvae":
            clips = _clips(max(1, -(-cfg.batch_size // t)), t, 2, seed=52)
            conds = np.concatenate([c.x for c in clips])[: cfg.batch_size]
            targets = (np.concatenate([c.target for c in clips]).astype(np.float32) / 255)[: cfg.batch_size]
            shape = f"batch {cfg.batch_size} frames"

            def step(i: int) -> float:
                return _train_cvae_epoch(net, opt, (conds, targets), cfg, rng, dev)
        else:
            clips = _clips(cfg.batch_size, t, 2, seed=52)
            shape = f"batch {cfg.batch_size} x {t} frames"

            def step(i: int) -> float:
                return _train_classifier_epoch(net, opt, clips, cfg, rng, dev)
        for i in range(sz.train_warm):
            step(i)
        ms = time_calls(step, sz.train_reps, dev)
        return {"per_s": 1e3 / float(np.median(ms)), "median_ms": float(np.median(ms)), "n": len(ms), "shape": shape,
                "lr": cfg.lr}

    section("snn_step", snn_step)
    section("cvae_decode", cvae_decode)

    def snn_tp() -> dict:
        return throughput(_spiking_snn(dev), clip, lambda m, x: m(x))

    def c3d_tp() -> dict:
        torch.manual_seed(0)
        return throughput(C3D().to(dev).eval(), clip, lambda m, x: m(x))

    def cvae_tp() -> dict:
        torch.manual_seed(0)
        return throughput(CVAE.from_config(DEFAULT_CONFIG).to(dev).eval(), clip[0], lambda m, x: m.reconstruct(x))

    section("snn_throughput", snn_tp)
    section("c3d_throughput", c3d_tp)
    section("cvae_throughput", cvae_tp)
    for name in ("snn", "c3d", "cvae"):
        section(f"{name}_train_step", lambda name=name: train_step(name))
    return res


def _timing_rows(dev_res: dict, cpu_res: dict, dev_label: str, cpu_label: str, sz: Sizes, sz_cpu: Sizes
                 ) -> tuple[list[Row], int]:
    rows, errors = [], 0
    anchor = f"same on CPU ({cpu_label})"

    def get(res: dict, key: str, field: str) -> float | None:
        v = res.get(key, {}).get(field)
        return None if v is None else float(v)

    def add(key: str, field: str, figure: str, unit: str, lower: bool, note: str = "") -> None:
        nonlocal errors
        err = dev_res.get(key, {}).get("error") or cpu_res.get(key, {}).get("error")
        if err:
            errors += 1
            rows.append(Row(f"FAIL: {figure}", math.nan, unit, note=f"error: {err}".replace("|", "/")))
            return
        v = get(dev_res, key, field)
        rows.append(Row(figure, math.nan if v is None else v, unit, anchor, get(cpu_res, key, field),
                        lower_is_better=lower, note=note))

    add("snn_step", "p50_ms", "SNN streaming step p50 (AUStreamer, batch 1, segment)", "ms/frame", True,
        f"{dev_label}; {sz.frames} frames ({sz_cpu.frames} on CPU) after 5 warm-up")
    add("snn_step", "p99_ms", "SNN streaming step p99 (AUStreamer, batch 1, segment)", "ms/frame", True)
    add("cvae_decode", "p50_ms", "cVAE reconstruction p50 (Reconstructor, batch 1, 64x64)", "ms/frame", True)
    add("cvae_decode", "p99_ms", "cVAE reconstruction p99 (Reconstructor, batch 1, 64x64)", "ms/frame", True)
    shape = f"batch {sz.batch} x {sz.clip_t} frames"
    add("snn_throughput", "per_s", f"SNN clip throughput ({shape})", "clips/s", False,
        f"median of {sz.reps} calls after {sz.warm} warm-up (CPU: {sz_cpu.reps} after {sz_cpu.warm})")
    add("c3d_throughput", "per_s", f"C3D clip throughput ({shape})", "clips/s", False)
    add("cvae_throughput", "per_s", f"cVAE reconstruction throughput (batch {sz.batch} frames)", "frames/s", False)
    for name, label in (("snn", "SNN"), ("c3d", "C3D"), ("cvae", "cVAE")):
        key = f"{name}_train_step"
        shp = dev_res.get(key, {}).get("shape", "")
        add(key, "per_s", f"{label} training step ({shp}, Adam)", "steps/s", False,
            f"core.train epoch fn on one batch; median of {sz.train_reps} after {sz.train_warm} warm-up "
            f"(CPU: {sz_cpu.train_reps} after {sz_cpu.train_warm})")
    for key, label in (("snn_throughput", f"SNN forward {shape}"), ("c3d_throughput", f"C3D forward {shape}"),
                       ("snn_train_step", "SNN training step"), ("c3d_train_step", "C3D training step"),
                       ("cvae_train_step", "cVAE training step")):
        mib = get(dev_res, key, "peak_cuda_mib")
        if mib is not None:
            rows.append(Row(f"peak CUDA memory, {label}", mib, "MiB", note="torch.cuda.max_memory_allocated"))
    return rows, errors


# -- main -------------------------------------------------------------------------------------------------
def _run(checks: list[Check], name: str, fn: Callable[[], list[Check]]) -> None:
    _log(f"check: {name}")
    try:
        checks.extend(fn())
    except Exception as err:  # noqa: BLE001 - a crashed check is a FAIL row, the run goes on
        traceback.print_exc()
        checks.append(Check(name, False, math.nan, "-", detail=f"crashed: {type(err).__name__}: {err}"[:300]))


def _versions(dev: torch.device) -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "torch": str(torch.__version__), "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
           "SJ_PLIF_CUDA_IMPLEMENTATION": os.environ.get("SJ_PLIF_CUDA_IMPLEMENTATION", "auto")}
    for pkg in ("spikingjelly", "numpy", "loguru"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if dev.type == "cuda":
        from spikingjelly.activation_based import functional

        try:
            out["plif_impl"] = functional.neuron_implementation("plif", dev)
        except Exception as err:  # noqa: BLE001
            out["plif_impl"] = f"{type(err).__name__}: {err}"
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(dev)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="device under test: cuda, cuda:N or cpu (dry run)")
    ap.add_argument("--quick", action="store_true", help="small sizes and few repetitions (CPU dry run)")
    ap.add_argument("--md-out", default=None, help="write the markdown tables here")
    ap.add_argument("--json-out", default=None, help="write every figure as JSON here")
    ap.add_argument("--cpu-threads", type=int, default=None,
                    help="torch threads for the CPU reference and anchor (default: all cores; 1 with --quick)")
    ap.add_argument("--append-doc", action="store_true", help="also append the tables to docs/benchmarks.md")
    ap.add_argument("--skip-timings", action="store_true", help="checks only")
    ap.add_argument("--skip-checks", action="store_true",
                    help="timings only (the checks ran in another call, e.g. beside a training job)")
    ap.add_argument("--probe-plif", action="store_true", help="only run a PLIF layer on the device (exit 0 = OK)")
    ap.add_argument("--plif-fallback", default="", help="(device_check.sh) the probe failed with this message")
    args = ap.parse_args(argv)
    argv_s = argv if argv is not None else sys.argv[1:]
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device} but torch.cuda.is_available() is False (torch {torch.__version__})")
        return 2
    if args.probe_plif:
        return probe_plif(dev)
    cores = os.cpu_count() or 1
    threads = args.cpu_threads or (1 if args.quick else cores)
    torch.set_num_threads(threads)
    cpu_label = f"{threads} torch threads of {cores} cores"
    versions = _versions(dev)
    dev_label = str(versions["gpu"]) if dev.type == "cuda" else "CPU dry run (device = cpu)"
    _log(f"device {dev} ({dev_label}), CPU reference {cpu_label}, {versions}")
    default_flags = _precision_flags()

    checks: list[Check] = []
    if args.plif_fallback:
        checks.append(Check("PLIF CUDA kernel (spikingjelly auto selection) in the probe", False, math.nan, "-",
                            detail=f"{args.plif_fallback}; this run uses SJ_PLIF_CUDA_IMPLEMENTATION="
                                   f"{versions['SJ_PLIF_CUDA_IMPLEMENTATION']}"))
    if not args.skip_checks:
        _run(checks, "models vs CPU (fp32)", lambda: check_models_vs_cpu(dev, strict=True, q=args.quick))
        _run(checks, "models vs CPU (device default precision)",
             lambda: check_models_vs_cpu(dev, False, args.quick))
        _run(checks, "streaming", lambda: check_streaming(dev, args.quick))
        _run(checks, "shipped checkpoints", lambda: check_checkpoints(dev, args.quick))
        _run(checks, "half precision", lambda: check_half(dev, args.quick))
    if dev.type == "cuda":
        _sync(dev)
    n_fail = sum(c.ok is False for c in checks)
    n_pass = sum(c.ok is True for c in checks)
    command = "python -m bench.bench_cuda " + " ".join(argv_s)
    text = report(f"CUDA device check: correctness on {dev_label} (bench_cuda)", [c.row() for c in checks],
                  command=command, write=args.append_doc)
    text += f"\nchecks: {n_pass} PASS, {n_fail} FAIL; versions: {json.dumps(versions)}\n"

    dev_res: dict = {}
    cpu_res: dict = {}
    sz, sz_cpu = _sizes(dev, args.quick), _sizes(torch.device("cpu"), args.quick)
    timing_errors = 0

    def write(text: str, done: bool) -> None:
        """The markdown and JSON so far (written after the checks too, in case the timings are cut short)."""
        summary = (f"bench_cuda: {n_pass} checks PASS, {n_fail} FAIL, {timing_errors} timing errors, "
                   f"{time.perf_counter() - _T0:.0f} s{'' if done else ' (timings not finished)'}")
        if done:
            print(summary)
        if args.md_out:
            Path(args.md_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.md_out).write_text(f"{text}\n{summary}\n")
        if args.json_out:
            out = {"bench": "bench_cuda", "command": command, "device": str(dev), "device_name": dev_label,
                   "machine": machine(), "cpu_threads": threads, "versions": versions,
                   "default_fp32_flags": default_flags, "quick": args.quick,
                   "sizes": asdict(sz), "sizes_cpu": asdict(sz_cpu),
                   "checks": [asdict(c) | {"status": c.status} for c in checks],
                   "timings": {"device": dev_res, "cpu": cpu_res},
                   "summary": {"pass": n_pass, "fail": n_fail, "timing_errors": timing_errors, "done": done,
                               "elapsed_s": time.perf_counter() - _T0}}
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps(out, indent=1, default=str) + "\n")

    write(text, done=args.skip_timings)
    if not args.skip_timings:
        t0 = time.perf_counter()
        dev_res = time_device(dev, sz)
        cpu_res = time_device(torch.device("cpu"), sz_cpu)
        rows, timing_errors = _timing_rows(dev_res, cpu_res, dev_label, cpu_label, sz, sz_cpu)
        _log(f"timings took {time.perf_counter() - t0:.0f} s")
        text += "\n" + report(f"CUDA device check: {dev_label} vs CPU timings (bench_cuda)", rows, command=command,
                              write=args.append_doc)
        write(text, done=True)
    return 1 if n_fail or timing_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

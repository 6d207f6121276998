"""Inference runtime for the ROS nodes (no rclpy here): device choice, streaming AU scores, clip
classification and cVAE reconstruction, each with batch of one under ``torch.inference_mode``.

Threads. Batch-of-one inference on 64x64 frames gains little from more than a few intra-op threads, while
every extra thread competes with the ROS executor, the event slicer and the drivers on the same machine.
:func:`configure_threads` (called once by a node at start-up, not at import) therefore sets
``min(4, cores)`` intra-op threads by default; on the 2-core development machine that is 2.

Streaming reset policies of :class:`AUStreamer` (``N`` = ``window_frames``, ``h`` = ``hop_frames``):

- ``'segment'``: one state. :meth:`AUStreamer.reset` is called at each protocol segment start (the node
  does it on a ``protocol/marker`` message); the score after each frame is the mean firing rate of each
  class's voters over all frames since that reset, i.e. exactly ``classify_clip`` of those frames.
  ``window_frames`` is not used.
- ``'sliding'``: ``N / h`` staggered states ("lanes") run as the batch of one single-step call (the
  first convolution, which has no state, runs once per frame). Lane ``i`` restarts from a fresh state at
  frames ``t`` (counted from the last :meth:`reset`) with ``t = i*h (mod N)``, and keeps the sum of its
  voted output spikes since then. The score after each frame is the running mean of the oldest lane,
  so it is exactly ``classify_clip`` of the last ``n`` frames with ``N - h < n <= N`` (``n = N`` every
  ``h`` frames, and ``n`` = all frames during the first ``N``). ``h = 1`` gives the exact sliding window
  of ``N`` frames at the cost of ``N`` lanes; ``h = N`` gives tumbling windows with one lane. The
  default ``h = N // 2`` costs two lanes. No state survives more than ``N`` frames, so nothing leaks
  from one window into windows that do not contain those frames.

Half precision (``half=True``, off by default) is for CUDA only: the SNN runs under
``torch.autocast(float16)`` (its membrane state then follows the float16 input, and spikingjelly takes its
torch reference path, as it does for any non-float32 state; spikes may differ from float32 near the
threshold) and the cVAE is converted to float16; scores and images come back as float32 / uint8 either
way. Checked on CPU with bfloat16 autocast only; the CUDA run is ``python -m bench.bench_models --cuda
--half``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from ros2_evmicro.core.models.snn import AUSNN, ModelInputError, reset_lanes, reset_state

if TYPE_CHECKING:
    from ros2_evmicro.core.models.cvae import CVAE

__all__ = [
    "AUStreamer",
    "DeviceError",
    "Reconstructor",
    "classify_clip",
    "configure_threads",
    "resolve_device",
]

RESET_POLICIES = ("segment", "sliding")


class DeviceError(RuntimeError):
    """The requested compute device does not exist on this machine or cannot be used as asked."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` -> torch.device."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {spec!r} requested but CUDA is not available (torch {torch.__version__}); "
                "use 'cpu' or 'auto'"
            )
        try:
            dev = torch.device(s)
        except RuntimeError as err:
            raise DeviceError(f"bad device {spec!r}: {err}") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    raise DeviceError(f"unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (default ``min(4, cores)``, see the module docstring); returns it."""
    if n is None:
        n = min(4, os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextmanager
def fp32_strict() -> Iterator[None]:
    """Plain IEEE float32 for cuDNN convolutions and CUDA matmuls (no TF32), restored on exit.

    Uses torch's per-backend ``fp32_precision`` flags where they exist (torch >= 2.9; mixing them with the
    legacy ``allow_tf32`` flags is an error there), the legacy flags otherwise.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    mm = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):
        # (after this, torch's legacy ``allow_tf32`` getters raise: nothing here reads them)
        flags = [f for f in (conv, mm) if hasattr(f, "fp32_precision")]
        old = [f.fp32_precision for f in flags]
        for f in flags:
            f.fp32_precision = "ieee"
        try:
            yield
        finally:
            for f, v in zip(flags, old, strict=True):
                f.fp32_precision = v
    else:
        old_legacy = (torch.backends.cudnn.allow_tf32, mm.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        mm.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, mm.allow_tf32 = old_legacy


def _precision(device: torch.device, half: bool) -> AbstractContextManager:
    """float16 autocast with ``half``; else, on CUDA, plain IEEE float32 (:func:`fp32_strict`).

    A spike is a threshold on a membrane potential, so the rounding of TF32 convolutions (cuDNN's default for
    float32 on Ampere and later) flips a few percent of the output spikes against the CPU, and makes a
    frame-by-frame stream differ from the same frames as one clip (cuDNN picks other kernels for other batch
    shapes): measured on an H200, 3 % of output spikes and 0.03 in AU score (docs/benchmarks.md). Inference is
    cheap at these sizes, so the runtime keeps IEEE float32 unless half precision is asked for.
    """
    if half:
        return torch.autocast("cuda", dtype=torch.float16)
    return fp32_strict() if device.type == "cuda" else nullcontext()


def _check_half(device: torch.device, half: bool) -> None:
    if half and device.type != "cuda":
        raise DeviceError(f"half precision needs a CUDA device, got {device}")


def _as_frames(frames: np.ndarray | torch.Tensor, shape: tuple[int, int, int], rank: int) -> torch.Tensor:
    t = torch.as_tensor(frames)
    if t.ndim != rank or tuple(t.shape[-3:]) != shape:
        lead = "(T, " if rank == 4 else "("
        raise ModelInputError(
            f"expected frames {lead}{shape[0]}, {shape[1]}, {shape[2]}) (channels first; transpose a "
            f"(H, W, C) image message), got {tuple(t.shape)}"
        )
    return t.float()


@torch.inference_mode()
def classify_clip(
    model: nn.Module, frames: np.ndarray | torch.Tensor, device: str | torch.device | None = None
) -> np.ndarray:
    """Scores ``(num_classes,)`` float32 in [0, 1] of one clip ``(T, C, H, W)`` (batch of one).

    SNN: mean firing rate of each class's voters over the clip. C3D: softmax of the logits. An empty
    clip (``T = 0``) gives zeros (no evidence for any class).
    """
    dev = _model_device(model) if device is None else resolve_device(device)
    hp = getattr(model, "hparams", {})
    shape = (int(hp.get("in_channels", 0)), int(hp.get("height", 0)), int(hp.get("width", 0)))
    x = _as_frames(frames, shape, 4)
    n_cls = int(hp.get("num_classes", 21))
    if x.shape[0] == 0:
        return np.zeros(n_cls, np.float32)
    model.eval()
    with _precision(dev, False):
        out = model(x.unsqueeze(1).to(dev))[0]
    if getattr(model, "output_kind", "rates") == "logits":
        out = torch.softmax(out.float(), dim=-1)
    return out.float().cpu().numpy()


class AUStreamer:
    """Frame-by-frame AU scores from the PLIF SNN with the membrane state kept between frames.

    Args:
        model: an :class:`AUSNN` (it is moved to ``device`` and put in eval mode; give each streamer its
            own model object, as :meth:`AUSNN.forward` clears the state a stream relies on).
        device: see :func:`resolve_device`.
        reset_policy: ``'segment'`` or ``'sliding'`` (module docstring).
        window_frames: ``N``, frames per window for ``'sliding'`` (30 frames = 1 s at 33 ms).
        hop_frames: ``h``, a divisor of ``N`` (default ``N // 2``, at least 1).
        half: float16 autocast on CUDA.
    """

    def __init__(
        self,
        model: AUSNN,
        device: str | torch.device = "auto",
        reset_policy: str = "segment",
        window_frames: int = 30,
        hop_frames: int | None = None,
        half: bool = False,
    ) -> None:
        if reset_policy not in RESET_POLICIES:
            raise ValueError(f"reset_policy must be one of {RESET_POLICIES}, got {reset_policy!r}")
        if window_frames < 1:
            raise ValueError(f"window_frames must be >= 1, got {window_frames}")
        hop = max(1, window_frames // 2) if hop_frames is None else hop_frames
        if reset_policy == "sliding" and (hop < 1 or window_frames % hop):
            raise ValueError(f"hop_frames must divide window_frames={window_frames}, got {hop}")
        self.device = resolve_device(device)
        _check_half(self.device, half)
        self.half = half
        self.model = model.to(self.device).eval()
        self.reset_policy = reset_policy
        self.window_frames = window_frames
        self.hop_frames = hop
        self.lanes = window_frames // hop if reset_policy == "sliding" else 1
        self._shape = (model.in_channels, model.height, model.width)
        self.reset()

    def reset(self) -> None:
        """Start afresh (segment start): clear the membrane state and the accumulated rates."""
        reset_state(self.model)
        self._t = 0
        self._sum = torch.zeros(self.lanes, self.model.num_classes, device=self.device)
        self._count = torch.zeros(self.lanes, dtype=torch.long)
        self.last_window_frames = 0

    @torch.inference_mode()
    def step(self, frame: np.ndarray | torch.Tensor) -> np.ndarray:
        """Scores ``(num_classes,)`` float32 in [0, 1] after one more frame ``(C, H, W)``."""
        x = _as_frames(frame, self._shape, 3).unsqueeze(0).to(self.device, non_blocking=True)
        if self.lanes > 1 and self._t > 0:
            restart = torch.tensor(
                [(self._t - i * self.hop_frames) % self.window_frames == 0 for i in range(self.lanes)]
            )
            if bool(restart.any()):
                reset_lanes(self.model, restart)
                self._sum[restart.to(self.device)] = 0.0
                self._count[restart] = 0
        with _precision(self.device, self.half):
            spikes = self.model.step(x, lanes=self.lanes)
        self._sum += self.model.vote_rates(spikes.float())
        self._count += 1
        self._t += 1
        oldest = int(torch.argmax(self._count))
        n = int(self._count[oldest])
        self.last_window_frames = n
        return (self._sum[oldest] / n).cpu().numpy().astype(np.float32, copy=False)

    def warm_up(self, n: int = 3) -> None:
        """Run ``n`` blank frames (allocations, kernel choice), then reset: the first real frame is fast."""
        zeros = np.zeros(self._shape, np.float32)
        for _ in range(max(n, self.lanes + 1)):
            self.step(zeros)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.reset()


class Reconstructor:
    """Grayscale face from one event frame with the cVAE (``z = 0``), as a uint8 image."""

    def __init__(self, cvae: nn.Module, device: str | torch.device = "auto", half: bool = False) -> None:
        self.device = resolve_device(device)
        _check_half(self.device, half)
        self.half = half
        model = cast("CVAE", cvae)  # duck-typed: a module with CVAE's ``cfg`` and ``reconstruct``
        self.model = model.to(self.device).eval()
        if half:
            self.model = self.model.half()
        cfg = model.cfg
        self._shape = (cfg.cond_channels, cfg.cond_height, cfg.cond_width)

    @torch.inference_mode()
    def reconstruct(self, frame: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """uint8 image ``(H, W)`` (``(H, W, C)`` for a multi-channel cVAE) from a frame ``(2, Hc, Wc)``;
        ``z = 0``, or ``z ~ N(0, I)`` from ``generator`` (on the model's device) when one is given."""
        c = _as_frames(frame, self._shape, 3).unsqueeze(0).to(self.device, non_blocking=True)
        if self.half:
            c = c.half()
        rec = self.model.reconstruct(c, generator)[0]
        img = (rec.float().clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8).cpu().numpy()
        return img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))

    def warm_up(self, n: int = 3) -> None:
        """Decode ``n`` blank frames so that the first real frame is not slow."""
        zeros = np.zeros(self._shape, np.float32)
        for _ in range(n):
            self.reconstruct(zeros)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

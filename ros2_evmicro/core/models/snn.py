"""The AU classifier of the paper: a spiking CNN of Parametric LIF neurons (spikingjelly 2.0).

Architecture (Sec. 4 of Mastropasqua et al. 2025, after Fang et al. 2021, "Incorporating Learnable
Membrane Time Constant to Enhance Learning of Spiking Neural Networks")::

    2 x [Conv2d 3x3, 32 ch, stride 1, pad 1, no bias - BatchNorm2d - PLIF - MaxPool 2x2]
    Flatten
    Dropout 0.2 - Linear(32 * H/4 * W/4 -> 512) - PLIF
    Dropout 0.2 - Linear(512 -> 210) - PLIF
    voting: AvgPool1d(10, stride 10) over the 210 output neurons -> 21 classes

PLIF neuron (one learnable scalar ``w`` per layer, ``1/tau = sigmoid(w)``, ``tau`` initialised to 2,
hard reset to ``V_reset = 0``, threshold 1, ``decay_input=True``)::

    H[t] = V[t-1] + sigmoid(w) * (X[t] - (V[t-1] - V_reset))
    S[t] = Heaviside(H[t] - V_th)          (backward: arctan surrogate, alpha = 2)
    V[t] = H[t] * (1 - S[t]) + V_reset * S[t]

The convolutions carry no bias (the BatchNorm shift replaces it, as in spikingjelly's PLIF example); with
a 2x64x64 input the network has exactly 4,312,470 parameters.

Outputs: the score of class ``k`` is the mean firing rate of its 10 voting neurons over the ``T`` frames
of the clip, a number in [0, 1]. Training loss: MSE between the scores and the one-hot label
(:func:`snn_loss`).

Time handling: :meth:`AUSNN.forward` runs a whole clip ``(T, B, C, H, W)`` in spikingjelly's multi-step
mode (convolutions over ``T*B`` images, neurons iterate over ``T``) and leaves no state behind.
:meth:`AUSNN.step` runs one frame ``(B, C, H, W)`` in single-step mode and keeps the membrane potentials
between calls, for streaming. All hidden state goes through :func:`reset_state` (spikingjelly's
``functional.reset_net``) and nowhere else. In eval mode, ``T`` calls of :meth:`step` from a reset state
give the same spikes as one :meth:`forward` over the same frames (a test pins this).

Only torch operators are needed: on CPU spikingjelly uses its torch reference; on CUDA it picks its
CUDA/Triton kernel when available and the torch reference otherwise (environment variable
``SJ_PLIF_CUDA_IMPLEMENTATION=torch`` forces the reference). No cupy.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

from ros2_evmicro.core.au import NUM_AUS

__all__ = ["AUSNN", "ModelInputError", "reset_state", "reset_lanes", "snn_loss"]


class ModelInputError(ValueError):
    """A tensor given to a model has the wrong rank, channel count or size."""


def reset_state(model: nn.Module) -> None:
    """Clear every hidden state of a spikingjelly network (membrane potentials, dropout masks).

    The one place where spikingjelly's module-held state is cleared; call it between clips, at a
    segment start, or before switching batch size.
    """
    functional.reset_net(model)


def reset_lanes(model: nn.Module, lanes: torch.Tensor) -> None:
    """Reset the membrane potential of some batch entries ("lanes") only, keeping the others.

    ``lanes`` is a bool tensor of shape ``(B,)``; lanes marked True go back to ``V_reset``, exactly the
    state after :func:`reset_state`. Used by the sliding-window streamer, which runs staggered windows
    as the batch of one single-step call.
    """
    for m in model.modules():
        if isinstance(m, neuron.BaseNode):
            v = m.v
            if isinstance(v, torch.Tensor):
                shape = (-1,) + (1,) * (v.ndim - 1)
                reset_value = 0.0 if m.v_reset is None else float(m.v_reset)
                m.v = torch.where(lanes.to(v.device).view(shape), torch.full_like(v, reset_value), v)


@numba.njit(cache=True, nogil=True)
def _plif_kernel(x, v, q, threshold, reset, spike):  # pragma: no cover - compiled
    """One PLIF step in place, all in float32: ``x`` (N,) input shared by every lane, or (L*N,) one per
    lane; ``v`` (L*N,) membrane potentials (updated); ``spike`` (L*N,) output."""
    n = x.size
    shared = n < v.size
    for lane in range(v.size // n):
        o = lane * n
        xo = 0 if shared else o
        for j in range(n):
            vi = v[o + j]
            h = vi + (x[xo + j] - (vi - reset)) * q
            fire = h - threshold >= np.float32(0.0)
            spike[o + j] = np.float32(1.0) if fire else np.float32(0.0)
            v[o + j] = reset if fire else h


def _plif_step(node: neuron.ParametricLIFNode, x: torch.Tensor, lanes: int = 1) -> torch.Tensor:
    """One inference step of a PLIF neuron layer (decay_input, hard reset) on float32 CPU input, ``lanes``
    states fed by the same ``x`` (batch of one) when ``lanes > 1``: the arithmetic of spikingjelly's torch
    reference, ``H = V + (X - (V - V_reset)) * sigmoid(w)`` in float32 (no fused multiply-add), spike where
    ``H - V_th >= 0``, then ``V = V_reset`` where it spiked and ``H`` elsewhere. One compiled pass instead of
    eight tensor operations; the new ``V`` is stored in ``node.v`` as spikingjelly keeps it."""
    shape = (x.shape[0] * lanes, *x.shape[1:])
    reset = np.float32(node.v_reset)
    v = node.v
    if not isinstance(v, torch.Tensor):  # a reset state: spikingjelly keeps the float V_reset
        v = torch.full(shape, float(reset), dtype=torch.float32)
    elif tuple(v.shape) != shape:
        raise ModelInputError(f"membrane state {tuple(v.shape)} does not fit a step of shape {shape}: call "
                              "reset_state when the batch size or the lane count changes")
    else:
        v = v.to(torch.float32).contiguous()
    spike = torch.empty(shape, dtype=torch.float32)
    q = np.float32(node.w.detach().float().sigmoid().item())
    _plif_kernel(x.float().contiguous().numpy().reshape(-1), v.numpy().reshape(-1), q,
                 np.float32(node.v_threshold), reset, spike.numpy().reshape(-1))
    node.v = v
    return spike


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2 (even sizes): the same values as ``max_pool2d`` without its index bookkeeping."""
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _plif(init_tau: float, detach_reset: bool) -> neuron.ParametricLIFNode:
    return neuron.ParametricLIFNode(
        init_tau=init_tau,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(),
        detach_reset=detach_reset,
        step_mode="m",
    )


class AUSNN(nn.Module):
    """PLIF spiking CNN for the 21 Action Units (see the module docstring for the maths).

    Args:
        in_channels: 2 for event frames (OFF, ON counts), 3 for RGB or 1 for grayscale frames.
        height, width: input size in pixels; both must be multiples of 4 (two 2x2 max-pools).
        channels: convolution width (32 in the paper).
        hidden: width of the first fully connected layer (512).
        num_classes: number of AUs (21).
        voters: output neurons per class (10), averaged by the voting layer.
        dropout: dropout probability before each linear layer (0.2); spikingjelly's dropout keeps one
            mask for a whole clip.
        init_tau: initial membrane time constant in frames (2.0, so ``1/tau = 0.5``).
        detach_reset: cut the gradient through the reset path (True, as in spikingjelly's PLIF example).
    """

    arch_name = "plif_snn"
    output_kind = "rates"

    def __init__(
        self,
        in_channels: int = 2,
        height: int = 64,
        width: int = 64,
        channels: int = 32,
        hidden: int = 512,
        num_classes: int = NUM_AUS,
        voters: int = 10,
        dropout: float = 0.2,
        init_tau: float = 2.0,
        detach_reset: bool = True,
    ) -> None:
        super().__init__()
        if height % 4 or width % 4 or height <= 0 or width <= 0:
            raise ModelInputError(f"AUSNN input size must be positive multiples of 4, got {height}x{width}")
        if in_channels <= 0:
            raise ModelInputError(f"in_channels must be positive, got {in_channels}")
        self.hparams = dict(
            in_channels=in_channels, height=height, width=width, channels=channels, hidden=hidden,
            num_classes=num_classes, voters=voters, dropout=dropout, init_tau=float(init_tau),
            detach_reset=detach_reset,
        )
        self.in_channels, self.height, self.width = in_channels, height, width
        self.num_classes, self.voters = num_classes, voters
        self.conv = nn.Sequential(
            layer.Conv2d(in_channels, channels, 3, stride=1, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(channels, step_mode="m"),
            _plif(float(init_tau), detach_reset),
            layer.MaxPool2d(2, 2, step_mode="m"),
            layer.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(channels, step_mode="m"),
            _plif(float(init_tau), detach_reset),
            layer.MaxPool2d(2, 2, step_mode="m"),
        )
        self.fc = nn.Sequential(
            layer.Flatten(step_mode="m"),
            layer.Dropout(dropout, step_mode="m"),
            layer.Linear(channels * (height // 4) * (width // 4), hidden, step_mode="m"),
            _plif(float(init_tau), detach_reset),
            layer.Dropout(dropout, step_mode="m"),
            layer.Linear(hidden, num_classes * voters, step_mode="m"),
            _plif(float(init_tau), detach_reset),
        )
        self.vote = nn.AvgPool1d(voters, voters)
        self._step_mode = "m"

    # -- helpers ---------------------------------------------------------------------------------------
    def _set_mode(self, mode: str) -> None:
        if mode != self._step_mode:
            functional.set_step_mode(self, mode)
            self._step_mode = mode

    def _check(self, x: torch.Tensor, rank: int, what: str) -> None:
        if x.ndim != rank or tuple(x.shape[-3:]) != (self.in_channels, self.height, self.width):
            raise ModelInputError(
                f"AUSNN.{what} expects {'(T, B, ' if rank == 5 else '(B, '}"
                f"{self.in_channels}, {self.height}, {self.width}), got {tuple(x.shape)}"
            )

    def vote_rates(self, spikes: torch.Tensor) -> torch.Tensor:
        """Class scores ``(..., num_classes)`` from output spikes or rates ``(..., num_classes*voters)``."""
        lead = spikes.shape[:-1]
        return self.vote(spikes.reshape(-1, 1, spikes.shape[-1])).reshape(*lead, self.num_classes)

    # -- clip (multi-step) -----------------------------------------------------------------------------
    def forward_spikes(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Output spikes ``(T, B, num_classes*voters)`` of a clip ``(T, B, C, H, W)``, from a reset state.

        State is cleared before and after, so no clip leaks into the next one (nor into a stream).
        """
        self._check(x_seq, 5, "forward")
        self._set_mode("m")
        reset_state(self)
        try:
            return self.fc(self.conv(x_seq))
        finally:
            reset_state(self)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Class scores ``(B, num_classes)`` in [0, 1]: mean firing rate over the ``T`` frames of a clip."""
        return self.vote_rates(self.forward_spikes(x_seq).mean(dim=0))

    # -- streaming (single-step) ----------------------------------------------------------------------
    def step(self, x: torch.Tensor, lanes: int = 1) -> torch.Tensor:
        """Advance the network by one frame ``(B, C, H, W)``; returns this frame's output spikes
        ``(B, num_classes*voters)`` and keeps the membrane potentials for the next call.

        With ``lanes > 1`` and ``B == 1`` the one frame feeds ``lanes`` independent states (batch
        entries, see :func:`reset_lanes`): the stateless first convolution and BatchNorm run once and are
        broadcast, so the output is ``(lanes, num_classes*voters)``.

        Call :func:`reset_state` before the first frame of a stream (and whenever the batch changes).
        """
        self._check(x, 4, "step")
        if lanes != 1 and (x.shape[0] != 1 or lanes < 1):
            raise ModelInputError(f"AUSNN.step with lanes={lanes} needs one frame, got batch {x.shape[0]}")
        if x.device.type == "cpu" and not self.training and not torch.is_grad_enabled():
            return self._step_inference(x, lanes)
        return self._step_modules(x, lanes)

    def _step_modules(self, x: torch.Tensor, lanes: int) -> torch.Tensor:
        """:meth:`step` through spikingjelly's own single-step modules (training, CUDA; the reference the CPU
        inference step is checked and timed against)."""
        self._set_mode("s")
        if lanes == 1:
            return self.fc(self.conv(x))
        h = self.conv[1](self.conv[0](x)).expand(lanes, -1, -1, -1).contiguous()
        for m in list(self.conv)[2:]:
            h = m(h)
        return self.fc(h)

    def _step_inference(self, x: torch.Tensor, lanes: int) -> torch.Tensor:
        """:meth:`step` for CPU inference (eval mode, no autograd): the same layers and the same arithmetic as
        spikingjelly's single-step path, without its per-layer dispatch (a 2-lane step 1.6x faster on the
        2-core development machine, docs/benchmarks.md "Models", 2026-11-28). Spikes and membrane potentials
        are bit-identical to that path (test_models.py pins it); the state stays in the spikingjelly
        neurons, so :func:`reset_state` and :func:`reset_lanes` apply unchanged. Dropout is the identity in
        eval mode and is skipped."""
        self._set_mode("s")  # the convolutions, BatchNorms and linears below are spikingjelly layers
        c, f = self.conv, self.fc
        h = _pool2(_plif_step(c[2], c[1](c[0](x)), lanes))
        h = _pool2(_plif_step(c[6], c[5](c[4](h))))
        h = _plif_step(f[3], f[2](h.flatten(1)))
        return _plif_step(f[6], f[5](h))


def snn_loss(scores: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_AUS) -> torch.Tensor:
    """MSE between firing-rate scores ``(B, num_classes)`` and one-hot labels (class indices ``(B,)``)."""
    return F.mse_loss(scores, F.one_hot(labels.long(), num_classes).to(scores.dtype))

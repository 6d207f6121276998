"""Shared pieces of the inference nodes: checkpoint loading against the node's parameters, drop counting."""

from __future__ import annotations

from typing import Any

from ros2_evmicro.core.params import ParamError
from ros2_evmicro.paths import resolve_model

_CARD_NORM = {"none": "counts", "max": "max", "log1p": "log1p", "clip": "clip"}


def load_for_node(p: Any, *, in_channels: int | None = 2):
    """(model, card, path) for the node parameters ``p`` (checkpoint, device, sensor, window_ms,
    normalization); a card that disagrees raises :class:`ParamError` with every mismatch listed."""
    from ros2_evmicro.core.models.checkpoint import CheckpointError, load_checkpoint

    try:
        path = resolve_model(p.checkpoint)
    except FileNotFoundError as err:
        raise ParamError(str(err)) from None
    expect: dict[str, Any] = {"sensor": p.sensor, "window_ms": float(p.window_ms),
                              "normalisation": _CARD_NORM[p.normalization]}
    if in_channels is not None:
        expect["in_channels"] = in_channels
    try:
        model, card = load_checkpoint(path, expect=expect, device=p.device)
    except CheckpointError as err:
        raise ParamError(str(err)) from None
    return model, card, path


class DropCounter:
    """Counts frames that never reached the model, from gaps in the frame stamps (window start times)."""

    def __init__(self, window_ms: float):
        self.window_ns = int(window_ms * 1e6)
        self.last_ns: int | None = None
        self.dropped = 0

    def see(self, stamp_ns: int) -> int:
        new = 0
        if self.last_ns is not None and stamp_ns > self.last_ns:
            gap = round((stamp_ns - self.last_ns) / self.window_ns) - 1
            new = max(0, gap)
        if self.last_ns is None or stamp_ns > self.last_ns:
            self.last_ns = stamp_ns
        self.dropped += new
        return new

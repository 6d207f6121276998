"""Shared pieces of the inference nodes: checkpoint loading against the node's parameters, the bounded frame
subscription with drop counting, and inference-time statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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


class FrameIntake:
    """The ``frames`` subscription of an inference node: only ``queue_depth`` frames are kept (when the model
    falls behind, the newest win), every frame is counted, and frames that never reached the model are
    counted as ``dropped_frames`` on diagnostics. ``on_frame(msg, stamp_ns)`` gets each delivered frame."""

    def __init__(self, node: Any, on_frame: Callable[[Any, int], None]):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = node
        self.on_frame = on_frame
        self.drops = DropCounter(node.p.window_ms)
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         depth=node.p.queue_depth)
        node.create_subscription(Image, "frames", node.guard(self._receive, "frames"), qos)

    def _receive(self, msg: Any) -> None:
        from ros2_evmicro.ros.convert import stamp_to_ns

        stamp = stamp_to_ns(msg.header.stamp)
        new = self.drops.see(stamp)
        if new:
            self.node.diag.count("dropped_frames", new)
        self.node.diag.count("frames")
        self.on_frame(msg, stamp)


def record_ms(diag: Any, name: str, samples: list[float], value_ms: float) -> None:
    """Append a timing sample (bounded history) and publish its p50/p99 as ``<name>_p50``/``<name>_p99``."""
    samples.append(value_ms)
    if len(samples) > 2000:
        del samples[:1000]
    recent = samples[-500:]
    diag.set(f"{name}_p50", float(np.percentile(recent, 50)))
    diag.set(f"{name}_p99", float(np.percentile(recent, 99)))

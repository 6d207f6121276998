"""Shared pieces of the inference nodes: checkpoint loading against the node's parameters, the bounded frame
subscription with drop counting, the inference worker thread, and inference-time statistics."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ros2_evmicro.core.params import ParamError
from ros2_evmicro.paths import resolve_model
from ros2_evmicro.ros.node import EvmicroNode

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


class InferenceWorker:
    """One thread that runs an inference node's model work, off the executor thread.

    Why: on one executor a model step in a subscription callback holds up every other callback of the process
    for its whole duration, and the executor runs ready callbacks in no fixed node order: in ``evmicro demo``
    the cVAE step often ran before the SNN step of the same frame and added its whole duration to the AU
    latency. torch releases the GIL, so a model on its own thread runs beside the executor. Measured on the
    2-core machine (docs/driver_monitor.md, "Where the models run"): the cVAE on its thread lowered event->AU;
    the SNN on a thread as well gained nothing and dropped frames, so only the reconstruction node uses one by
    default.

    Jobs run in submission order. Frame jobs (``droppable``) are bounded: when ``depth`` of them are already
    waiting, the oldest waiting one is discarded (the newest frames win, as with the subscription's
    KEEP_LAST queue); other jobs (protocol markers) are never discarded, so a segment reset stays between the
    frames it separates. A job that raises is reported through ``on_error`` and the worker goes on.

    ``nice`` > 0 lowers the thread's scheduling priority (Linux): the reconstruction node's worker yields the
    cores to the AU path when both want them (docs/benchmarks.md, notes of 2026-11-28 afternoon).
    """

    def __init__(self, name: str, depth: int, on_error: Callable[[BaseException], None] | None = None,
                 nice: int = 0):
        if depth < 1:
            raise ValueError(f"worker queue depth must be >= 1, got {depth}")
        self.depth = depth
        self.nice = int(nice)
        self.nice_error = ""
        self.on_error = on_error
        self.discarded = 0
        self._jobs: deque[tuple[bool, Callable[[], None]]] = deque()
        self._cv = threading.Condition()
        self._busy = False
        self._stop = False
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None], droppable: bool = True) -> int:
        """Queue ``job``; returns how many waiting frame jobs it displaced (0 or more)."""
        with self._cv:
            if self._stop:
                return 0
            displaced = 0
            if droppable:
                waiting = [i for i, (d, _) in enumerate(self._jobs) if d]
                for i in reversed(waiting[: max(0, len(waiting) - self.depth + 1)]):
                    del self._jobs[i]
                    displaced += 1
            self._jobs.append((droppable, job))
            self.discarded += displaced
            self._cv.notify()
        return displaced

    def _run(self) -> None:
        if self.nice:
            try:  # Linux: a thread's own nice value (raising it needs no privilege)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except (OSError, AttributeError) as err:
                self.nice_error = str(err)
        self._started.set()
        while True:
            with self._cv:
                while not self._jobs and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                _, job = self._jobs.popleft()
                self._busy = True
            try:
                job()
            except Exception as err:  # noqa: BLE001 - one bad job must not end the worker
                if self.on_error is not None:
                    self.on_error(err)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def wait_started(self, timeout_s: float = 1.0) -> bool:
        """Wait until the thread has set itself up (its priority); True when it has."""
        return self._started.wait(timeout_s)

    def idle(self) -> bool:
        """True when no job is waiting or running."""
        with self._cv:
            return not self._jobs and not self._busy

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until :meth:`idle` (True) or ``timeout_s`` passed (False)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._jobs and not self._busy, timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Discard waiting jobs, let a running one finish (up to ``timeout_s``) and end the thread."""
        with self._cv:
            self._stop = True
            self._jobs.clear()
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)


class FrameIntake:
    """The ``frames`` subscription of an inference node: only ``queue_depth`` frames are kept (when the model
    falls behind, the newest win), every frame is counted, and frames that never reached the model are
    counted as ``dropped_frames`` on diagnostics. ``on_frame(msg, stamp_ns)`` gets each delivered frame, on
    the executor thread, or on ``worker``'s thread when one is given (the worker's bound is ``queue_depth``
    too; frames it discards show as ``dropped_frames`` like the others, from the gaps in the stamps)."""

    def __init__(self, node: Any, on_frame: Callable[[Any, int], None], worker: InferenceWorker | None = None):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = node
        self.on_frame = on_frame
        self.worker = worker
        self.drops = DropCounter(node.p.window_ms)
        self._process_guarded = node.guard(lambda item: self._process(*item), "frames")
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         depth=node.p.queue_depth)
        node.create_subscription(Image, "frames", node.guard(self._receive, "frames"), qos)

    def _receive(self, msg: Any) -> None:
        from ros2_evmicro.ros.convert import stamp_to_ns

        item = (msg, stamp_to_ns(msg.header.stamp))
        self.node.diag.count("frames")
        if self.worker is None:
            self._process(*item)
        else:
            self.worker.submit(lambda: self._process_guarded(item))

    def _process(self, msg: Any, stamp: int) -> None:
        new = self.drops.see(stamp)
        if new:
            self.node.diag.count("dropped_frames", new)
        self.on_frame(msg, stamp)


def make_worker(node: Any) -> InferenceWorker | None:
    """The node's :class:`InferenceWorker` when its ``inference_thread`` parameter is on, else None."""
    if not node.p.inference_thread:
        return None

    def on_error(err: BaseException) -> None:
        node.diag.count("bad_jobs")
        node.get_logger().error(f"inference job failed: {err}", throttle_duration_sec=2.0)

    worker = InferenceWorker(f"{node.get_name()}_inference", node.p.queue_depth, on_error, nice=node.p.worker_nice)
    if worker.nice and worker.wait_started() and worker.nice_error:
        node.get_logger().warning(f"cannot lower the inference thread's priority: {worker.nice_error}")
    return worker


class InferenceNode(EvmicroNode):
    """Base of the AU and reconstruction nodes: their ``frames`` intake and, with ``inference_thread``, the
    worker thread that runs the model, stopped with the node."""

    worker: InferenceWorker | None = None

    def start_intake(self, on_frame: Callable[[Any, int], None]) -> None:
        """Subscribe ``frames`` (call once the model is ready): ``on_frame(msg, stamp_ns)`` per frame."""
        self.worker = make_worker(self)
        self.intake = FrameIntake(self, on_frame, self.worker)

    def destroy_node(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        super().destroy_node()


def record_ms(diag: Any, name: str, samples: list[float], value_ms: float) -> None:
    """Append a timing sample (bounded history) and publish its p50/p99 as ``<name>_p50``/``<name>_p99``."""
    samples.append(value_ms)
    if len(samples) > 2000:
        del samples[:1000]
    recent = samples[-500:]
    diag.set(f"{name}_p50", float(np.percentile(recent, 50)))
    diag.set(f"{name}_p99", float(np.percentile(recent, 99)))

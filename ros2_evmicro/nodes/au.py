"""AU node: ``frames`` (32FC2 event frames) -> ``evmicro/au`` (JointState, 21 AU scores) with the PLIF SNN.

Modes:
- ``stream`` (default, live): the SNN steps once per frame, membrane state kept (``AUStreamer``). Reset policy
  ``sliding``: each score is the mean firing rate over the last ``window_frames`` frames (staggered state
  lanes restarted every ``hop_frames``); ``segment``: the state is reset at every protocol segment start
  (``protocol/marker``) and the score is the running mean since then.
- ``clip`` (the paper's evaluation): frames of one protocol segment (phase ``clip_phase``) are collected and the
  whole clip is classified when the segment ends; one message per segment.

Inference runs in the frame callback (the lowest event->AU latency measured), or on the node's worker thread
with ``inference_thread`` (see :class:`~ros2_evmicro.nodes._inference.InferenceWorker`); protocol markers then
go through the same worker, in order with the frames. The subscription and the worker keep only
``queue_depth`` frames each, so when the model falls behind the newest frames win, and the skipped frames are
counted (from gaps in the window stamps) as ``dropped_frames`` on diagnostics.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from ros2_evmicro.core.au import AU_CODES
from ros2_evmicro.nodes._inference import InferenceNode, load_for_node, record_ms
from ros2_evmicro.ros.convert import au_to_msg, frames_from_msg, marker_from_msg
from ros2_evmicro.ros.node import FRAMES_QOS, SENSOR_QOS, run_node
from ros2_evmicro.specs.au import SPEC


class AUNode(InferenceNode):
    SPEC = SPEC

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        from ros2_evmicro.core.models.runtime import AUStreamer, configure_threads

        p = self.p
        configure_threads(p.threads)
        self.model, self.card, path = load_for_node(p)
        self.streamer = AUStreamer(self.model, p.device, reset_policy=p.reset_policy,
                                   window_frames=p.window_frames, hop_frames=min(p.hop_frames, p.window_frames),
                                   half=p.half)
        if p.warm_up:
            self.streamer.warm_up()
        self.get_logger().info(f"AU SNN {path} on {self.streamer.device} ({p.mode}, {p.reset_policy})")
        self.pub = self.create_publisher(JointState, "evmicro/au", FRAMES_QOS)
        self.start_intake(self.on_frame)
        self._on_marker_guarded = self.guard(self.on_marker, "marker")
        self.create_subscription(String, "protocol/marker", self._receive_marker, SENSOR_QOS)
        self.clip: list[np.ndarray] = []
        self.clip_stamp = 0
        self.collecting = False
        self.frame_id = ""
        self.infer_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.n_out = 0

    def _receive_marker(self, msg: String) -> None:
        if self.worker is None:
            self._on_marker_guarded(msg)
        else:  # in order with the frames queued before it, and never discarded
            self.worker.submit(lambda: self._on_marker_guarded(msg), droppable=False)

    def on_marker(self, msg: String) -> None:
        m = marker_from_msg(msg)
        phase = m.get("phase", "")
        if self.p.mode == "stream":
            if self.p.reset_policy == "segment" and phase == self.p.clip_phase:
                self.streamer.reset()
            return
        if phase == self.p.clip_phase:
            self.clip, self.collecting = [], True
        elif self.collecting:
            self.collecting = False
            self._classify_clip()

    def _classify_clip(self) -> None:
        from ros2_evmicro.core.models.runtime import classify_clip

        if not self.clip:
            return
        t0 = time.perf_counter()
        scores = classify_clip(self.model, np.stack(self.clip))
        record_ms(self.diag, "inference_ms", self.infer_ms, (time.perf_counter() - t0) * 1e3)
        self._publish(scores, self.clip_stamp)
        self.diag.set("clip_frames", len(self.clip))
        self.clip = []

    def on_frame(self, msg: Image, stamp: int) -> None:
        frame = frames_from_msg(msg)
        self.frame_id = msg.header.frame_id
        if self.p.mode == "clip":
            if self.collecting:
                self.clip.append(frame)
                self.clip_stamp = stamp
            return
        t0 = time.perf_counter()
        scores = self.streamer.step(frame)
        step_ms = (time.perf_counter() - t0) * 1e3
        self._publish(scores, stamp)  # first: the statistics below are not on the latency path
        record_ms(self.diag, "inference_ms", self.infer_ms, step_ms)

    def _publish(self, scores: np.ndarray, stamp_ns: int) -> None:
        self.pub.publish(au_to_msg(scores, stamp_ns, self.frame_id))
        self.n_out += 1
        # latency: window end (stamp + window) to publish, on the node's clock
        record_ms(self.diag, "latency_window_end_to_au_ms", self.latency_ms,
                  (self.now_ns() - stamp_ns) / 1e6 - self.p.window_ms)
        self.diag.count("scores")
        self.diag.set("top_au", AU_CODES[int(np.argmax(scores))])


NODE = AUNode


def main(args=None) -> int:
    return run_node(AUNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

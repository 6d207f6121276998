"""Reconstruction node: ``frames`` (32FC2 event frames) -> ``evmicro/face_recon`` (mono8) with the cVAE.

The decode is deterministic (z = 0) unless ``sample`` is on; the output header is the input frame's header, so
``message_filters`` ExactTime pairs reconstructions with their frames. Like the AU node it keeps only
``queue_depth`` frames: when the model falls behind, the newest frames win and the skipped ones are counted.
The cVAE runs on the node's worker thread (``inference_thread``, on by default): in a process shared with the
slicer and the AU node it then never holds up the latency-critical AU scores (rclpy's executor runs ready
callbacks in no fixed node order, and the cVAE before the SNN added its whole step to the AU latency).
"""

from __future__ import annotations

import time
from typing import Any

from sensor_msgs.msg import Image

from ros2_evmicro.nodes._inference import InferenceNode, load_for_node, record_ms
from ros2_evmicro.ros.convert import frames_from_msg, image_to_msg
from ros2_evmicro.ros.node import FRAMES_QOS, run_node
from ros2_evmicro.specs.recon import SPEC


class ReconNode(InferenceNode):
    SPEC = SPEC

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        import torch

        from ros2_evmicro.core.models.runtime import Reconstructor, configure_threads

        p = self.p
        configure_threads(p.threads)
        self.model, self.card, path = load_for_node(p)
        self.recon = Reconstructor(self.model, p.device, half=p.half)
        self.generator = None
        if p.sample:
            self.generator = torch.Generator(device=self.recon.device)
            self.generator.manual_seed(p.seed)
        if p.warm_up:
            self.recon.warm_up()
        self.get_logger().info(f"cVAE {path} on {self.recon.device}")
        self.pub = self.create_publisher(Image, "evmicro/face_recon", FRAMES_QOS)
        self.n_in = 0
        self.infer_ms: list[float] = []
        self.start_intake(self.on_frame)

    def on_frame(self, msg: Image, stamp: int) -> None:
        self.n_in += 1
        if (self.n_in - 1) % self.p.every_n:
            return
        frame = frames_from_msg(msg)
        t0 = time.perf_counter()
        img = self.recon.reconstruct(frame, self.generator)
        record_ms(self.diag, "inference_ms", self.infer_ms, (time.perf_counter() - t0) * 1e3)
        out = image_to_msg(img, "mono8" if img.ndim == 2 else "bgr8")
        out.header = msg.header
        self.pub.publish(out)
        self.diag.count("reconstructions")


NODE = ReconNode


def main(args=None) -> int:
    return run_node(ReconNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

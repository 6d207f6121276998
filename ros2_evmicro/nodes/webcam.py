"""Webcam driver node: bgr8 frames from a V4L2 camera (stamped at capture and mapped to ROS time) or a video
file, published as ``image_raw``, ``camera_info`` and ``time_reference`` (one pairing per frame).
``native_record_path``: the frames are also written to an MJPG AVI file."""

from __future__ import annotations

from pathlib import Path

from ros2_evmicro.core.sources import WebcamSource
from ros2_evmicro.core.stream import FrameItem, Source, SourceError
from ros2_evmicro.ros.driver import DriverNode
from ros2_evmicro.ros.node import run_node
from ros2_evmicro.specs.webcam import SPEC


class VideoWriter:
    """Write bgr8 frame items to an MJPG AVI (OpenCV)."""

    def __init__(self, path: str, width: int, height: int, fps: float):
        import cv2

        p = Path(path)
        if p.is_dir():
            p = p / "webcam.avi"
        self.path = p
        self._w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (int(width), int(height)))
        if not self._w.isOpened():
            raise SourceError(f"cannot write video to {p}")

    def write(self, items: list) -> None:
        for it in items:
            if isinstance(it, FrameItem):
                self._w.write(it.image)

    def close(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None


class WebcamNode(DriverNode):
    SPEC = SPEC
    STREAMS = ("image_raw", "time_reference")
    HAS_EVENTS = False

    def open_source(self) -> Source:
        p = self.p
        if p.source == "file":
            if not p.path:
                raise SourceError("source:=file needs path:=VIDEO_FILE")
            return WebcamSource(p.path, live=False)
        return WebcamSource(p.device, width=p.width or 1920, height=p.height or 1080, fps=p.fps, fourcc=p.fourcc,
                            exposure=p.exposure, live=True)

    def open_native_writer(self, source: Source):
        fps = float(source.info.meta.get("fps", self.p.fps))
        return VideoWriter(self.p.native_record_path, source.info.width, source.info.height, fps)


NODE = WebcamNode


def main(args=None) -> int:
    return run_node(WebcamNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

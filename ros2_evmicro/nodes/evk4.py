"""Prophesee EVK4 driver node: a live camera (Metavision SDK / OpenEB), a RAW file (EVT 3.0 / 2.0) or an
``event_camera_msgs/EventPacket`` bag, published as ``events`` (PointCloud2), ``triggers``, ``camera_info`` and
``time_reference``.

Biases, event rate control, ROI and the trigger input are applied when the camera opens and live when their
parameters change. ``native_record_path``: a live camera logs its own RAW bytes (``log_raw_data``); other
sources are written as EVT 3.0 RAW by the project's encoder.
"""

from __future__ import annotations

from typing import Any

from ros2_evmicro.core.sources import (
    EVK4_BIASES,
    EventPacketBagSource,
    Evt3FileWriter,
    MetavisionCameraSource,
    RawFileSource,
)
from ros2_evmicro.core.stream import Source, SourceError
from ros2_evmicro.nodes.davis import NativeHandle
from ros2_evmicro.ros.driver import DriverNode
from ros2_evmicro.ros.node import run_node
from ros2_evmicro.specs.evk4 import CAMERA_SETTINGS, SPEC


class Evk4Node(DriverNode):
    SPEC = SPEC

    def settings(self, keys=CAMERA_SETTINGS) -> dict[str, Any]:
        """Camera settings from the parameters, in the source's terms (erc_rate in events/s)."""
        out: dict[str, Any] = {}
        for k in keys:
            v = self.p[k]
            if k == "erc_rate_mev_s":
                out["erc_rate"] = int(round(v * 1e6))
            elif k == "roi":
                out["roi"] = list(v) if int(v[2]) > 0 and int(v[3]) > 0 else []
            else:
                out[k] = v
        return out

    def open_source(self) -> Source:
        p = self.p
        if p.source == "file":
            if not p.path:
                raise SourceError("source:=file needs path:=FILE.raw")
            return RawFileSource(p.path, width=p.width, height=p.height)
        if p.source == "bag":
            if not p.path:
                raise SourceError("source:=bag needs path:=BAG_FOLDER")
            return EventPacketBagSource(p.path, topic=p.bag_topic)
        s = self.settings()
        biases = {k: s[k] for k in EVK4_BIASES if s[k] != 0}
        return MetavisionCameraSource(p.serial, biases=biases, erc_rate=s["erc_rate"], roi=s["roi"] or None,
                                      trigger_in=s["trigger_in"])

    def open_native_writer(self, source: Source):
        path = self.p.native_record_path
        if isinstance(source, MetavisionCameraSource):
            out = source.start_raw_log(path)
            self.get_logger().info(f"logging the camera's RAW data to {out}")
            return NativeHandle(source.stop_raw_log)
        info = source.info
        writer = Evt3FileWriter(path, info.width, info.height, info.serial)
        self.get_logger().info(f"recording EVT 3.0 RAW to {writer.path}")
        return writer

    def on_parameters_changed(self, changed: dict[str, Any]) -> None:
        keys = [k for k in changed if k in CAMERA_SETTINGS]
        src = self.source
        if not keys or not isinstance(src, MetavisionCameraSource):
            return
        try:
            done = src.apply(self.settings(keys))
        except SourceError as err:
            raise ValueError(str(err)) from None
        self.get_logger().info(f"applied camera settings {done}")


NODE = Evk4Node


def main(args=None) -> int:
    return run_node(Evk4Node, args)


if __name__ == "__main__":
    raise SystemExit(main())

"""DAVIS346 driver node: a live camera (dv-processing), an AEDAT4 file or a DV network stream, published as
``events`` (PointCloud2), ``image_raw`` (mono8), ``imu``, ``triggers``, ``camera_info`` and ``time_reference``.

Camera settings (biases, exposure, noise filter, ROI) are applied when the camera opens and live when their
parameters change; with ``native_record_path`` every stream is also written to an AEDAT4 file by dv-processing.
"""

from __future__ import annotations

from typing import Any

from ros2_evmicro.core.sources import Aedat4FileSource, DavisCameraSource, DvNetworkSource
from ros2_evmicro.core.stream import Source, SourceError
from ros2_evmicro.ros.driver import DriverNode
from ros2_evmicro.ros.node import run_node
from ros2_evmicro.specs.davis import CAMERA_SETTINGS, SPEC


class NativeHandle:
    """What the driver base holds for a native recording done inside the source: ``write`` is a no-op (the
    source writes what it reads), ``close`` finishes the file."""

    def __init__(self, close):
        self._close = close

    def write(self, items: list) -> None:
        """Nothing to do: the source records as it reads."""

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


class DavisNode(DriverNode):
    SPEC = SPEC
    STREAMS = ("events", "image_raw", "imu", "triggers", "time_reference")

    def settings(self, keys=CAMERA_SETTINGS) -> dict[str, Any]:
        """Current camera settings from the parameters (values that mean "camera default" left out)."""
        out = {k: self.p[k] for k in keys}
        if out.get("exposure_us", 0) < 0:
            out.pop("exposure_us")
        if out.get("roi") is not None and int(out["roi"][2]) == 0:
            out["roi"] = []
        return out

    def open_source(self) -> Source:
        p = self.p
        if p.source == "file":
            if not p.path:
                raise SourceError("source:=file needs path:=FILE.aedat4")
            return Aedat4FileSource(p.path, noise_filter_us=p.noise_filter_us)
        if p.source == "network":
            src = DvNetworkSource(p.host, p.port)
            if p.noise_filter_us:
                src.set_noise_filter(p.noise_filter_us)
            return src
        settings = self.settings()
        if not settings.get("roi"):
            settings.pop("roi", None)
        return DavisCameraSource(p.serial, settings=settings)

    def open_native_writer(self, source: Source):
        start = getattr(source, "start_native", None)
        if start is None:
            raise SourceError(f"{type(source).__name__} cannot record AEDAT4")
        start(self.p.native_record_path)
        self.get_logger().info(f"recording AEDAT4 to {source.native_path}")
        return NativeHandle(source.stop_native)

    def on_parameters_changed(self, changed: dict[str, Any]) -> None:
        keys = [k for k in changed if k in CAMERA_SETTINGS]
        src = self.source
        if not keys or src is None:
            return
        try:
            if isinstance(src, DavisCameraSource):
                done = src.apply(self.settings(keys))
                self.get_logger().info(f"applied camera settings {done}")
            elif "noise_filter_us" in keys and hasattr(src, "set_noise_filter"):
                src.set_noise_filter(self.p.noise_filter_us)
        except SourceError as err:
            raise ValueError(str(err)) from None


NODE = DavisNode


def main(args=None) -> int:
    return run_node(DavisNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

"""The parameters every camera driver shares (imported by ``specs.davis``, ``specs.evk4``, ``specs.webcam``
and by :mod:`ros2_evmicro.ros.driver`); no rclpy, so the specs stay importable everywhere."""

from __future__ import annotations

from ros2_evmicro.core.params import Param

__all__ = ["driver_params"]


WATERMARK_HELP = ("also end an event packet at every multiple of this period of ROS time and follow it with a "
                  "watermark (an events packet without events): the slicer then closes the window that just ended "
                  "at once, instead of waiting for a later event and its late tolerance; set it to the slicer's "
                  "window_ms (0 = no watermarks)")


def driver_params(frame_id: str, sources: tuple[str, ...], default_source: str, width: int = 0,
                  height: int = 0, events: bool = True) -> tuple[Param, ...]:
    """The shared driver parameters; ``width``/``height`` are the camera's default sensor size (0: ask the
    source); ``events``: the camera streams events (adds ``watermark_grid_ms``)."""
    ev = (Param("watermark_grid_ms", 33.0, WATERMARK_HELP, "ms", (0.0, 1000.0)),) if events else ()
    return ev + (
        Param("source", default_source, "where data comes from", choices=sources, dynamic=False),
        Param("path", "", "file to play when source is a file (AEDAT4, RAW, bag, video)", dynamic=False),
        Param("serial", "", "camera serial number (empty: first camera found)", dynamic=False),
        Param("frame_id", frame_id, "optical frame of the camera", dynamic=False),
        Param("packet_period_ms", 10.0, "device time covered by one event packet", "ms", (0.1, 1000.0)),
        Param("playback_rate", 1.0, "file playback speed (1 = real time, 0 = as fast as possible)", "x",
              (0.0, 1000.0)),
        Param("loop", False, "restart the file at its end"),
        Param("width", int(width), "sensor width when the source does not say (0 = from the source)", "px",
              (0, 65535), dynamic=False),
        Param("height", int(height), "sensor height when the source does not say (0 = from the source)", "px",
              (0, 65535), dynamic=False),
        Param("calibration_file", "", "YAML calibration (intrinsics for camera_info)", dynamic=False),
        Param("native_record_path", "", "also write the vendor-native file here while publishing (empty: off)",
              dynamic=False),
        Param("clock_window_s", 20.0, "device->ROS clock fit window", "s", (1.0, 3600.0), dynamic=False),
        Param("wait_for_subscribers_s", 0.0, "recorded sources: wait up to this long for subscribers to the "
              "camera's topics before playing (0 = start at once)", "s", (0.0, 3600.0), dynamic=False),
        Param("reconnect_s", 2.0, "retry period when a live camera is missing or unplugged", "s", (0.1, 60.0)),
    )

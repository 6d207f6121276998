"""Parameters of the dashboard of the live demo (composite view, video, summary, end of run)."""

from typing import Any

from ros2_evmicro.core.params import Param, ParamSpec


class _TriState(Param):
    """A string choice that also takes booleans: ``show:=true`` on the command line arrives as a bool."""

    def check(self, value: Any) -> Any:
        if isinstance(value, bool):
            value = "true" if value else "false"
        return super().check(value)


SPEC = ParamSpec(
    "dashboard",
    (
        Param("camera", "davis", "event camera namespace: reads /<camera>/frames, frames_preview, image_raw and "
              "face_roi", dynamic=False),
        Param("out_dir", "evmicro_demo", "folder for dashboard.mp4 and the summary (empty: write nothing)",
              dynamic=False),
        Param("duration_s", 0.0, "finish after this long (0: only when the input ends)", "s", (0.0, None)),
        Param("startup_timeout_s", 90.0, "finish when no AU message arrived at all this long after start (0: never)",
              "s", (0.0, None)),
        Param("idle_timeout_s", 3.0, "finish when no AU message came this long after the first one (0: never)",
              "s", (0.0, None)),
        Param("rate_hz", 10.0, "composites per second (also the video frame rate)", "Hz", (0.5, 60.0),
              dynamic=False),
        Param("width", 1280, "composite width", "px", (640, 3840), dynamic=False),
        Param("height", 720, "composite height", "px", (360, 2160), dynamic=False),
        _TriState("show", "auto", "show a window: auto (when a display is present), true or false",
              choices=("auto", "true", "false"), dynamic=False),
        Param("video", True, "write dashboard.mp4 (mp4v) to out_dir", dynamic=False),
        Param("window_ms", 33.0, "event window of a frame: event->AU latency = receive - (stamp + window_ms)",
              "ms", (0.0, 10000.0)),
        Param("strip_s", 10.0, "time span of the AU strip chart", "s", (1.0, 600.0)),
        Param("history_s", 3600.0, "AU history kept for the timeline plot of the summary", "s", (10.0, 86400.0),
              dynamic=False),
        Param("on_threshold", 0.5, "score at which an AU counts as recognised (log line, summary segment)", "",
              (0.0, 1.0), dynamic=False),
        Param("off_threshold", 0.35, "score below which a recognised AU ends (hysteresis)", "", (0.0, 1.0),
              dynamic=False),
        Param("min_active_frames", 2, "consecutive samples above on_threshold before an AU is recognised",
              "samples", (1, 100), dynamic=False),
        Param("log_aus", True, "log one line per recognised AU and per alert"),
        Param("max_alerts", 5, "alerts listed on the dashboard", "", (1, 50)),
    ),
    "Composes the event frame, the face, the cVAE reconstruction, AU bars and strip chart, alerts and latency "
    "into evmicro/dashboard (bgr8), writes dashboard.mp4 and a summary to out_dir, and ends the demo when "
    "duration_s has passed or the AU input has stopped.",
)

"""Dashboard node of the live demo: composite view, video, live log, summary, and the end of the run.

Subscribes ``/<camera>/frames`` (32FC2 event frames), ``/<camera>/frames_preview`` (bgr8, optional),
``/<camera>/image_raw`` + ``/<camera>/face_roi`` (APS frames of a DAVIS, optional), ``evmicro/au``,
``evmicro/face_recon``, ``evmicro/alerts`` and ``/diagnostics``. Every ``1 / rate_hz`` s it composes
:func:`ros2_evmicro.core.dashboard.compose_dashboard`, publishes it on ``evmicro/dashboard`` (bgr8), appends
it to ``<out_dir>/dashboard.mp4`` and shows it in a window when a display is present. At close it writes
``summary.json``, ``summary.md`` and ``timeline.png`` to ``out_dir``.

Latency, as measured here (node clock, i.e. ROS time, or bag time with ``use_sim_time``):
``event->AU`` = receive time of an ``evmicro/au`` message - (its ``header.stamp`` + ``window_ms``): the
header stamp is the start of the frame's event window (sensor time mapped to ROS time by the driver), so
``stamp + window_ms`` is the time of the window's last event, and the figure covers slicing, transport and
inference up to this node, not the driver's own delay before stamping. ``event->recon`` is the same for
``evmicro/face_recon``. Other nodes' figures are read from ``/diagnostics`` keys ``latency_<stage>_ms_p50``
and ``..._p99``.

Finishing: :attr:`finished` becomes True once ``duration_s`` (> 0) has passed since start, or when no AU
message came for ``idle_timeout_s`` after at least one did (the input ended); the in-process runner then
stops; run as its own process (``dashboard_node``), the node then shuts its context down and exits.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PolygonStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from ros2_evmicro.core.dashboard import AuHistory, StampMatcher, compose_dashboard, latency_stats, write_summary
from ros2_evmicro.core.monitor import LEVELS, AuActivity, au_label, format_event
from ros2_evmicro.ros.convert import (
    au_from_msg,
    box_from_polygon,
    frames_from_msg,
    image_from_msg,
    image_to_msg,
    stamp_to_ns,
)
from ros2_evmicro.ros.node import FRAMES_QOS, SENSOR_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.dashboard import SPEC

_LAT_KEY = re.compile(r"^latency_(.+)_ms_p(50|99)$")
_MONITORS = {"evmicro/drowsiness": "drowsiness", "evmicro/distraction": "distraction"}
_KEEP_LAT = 100_000  # latency samples kept for the summary


class DashboardNode(EvmicroNode):
    SPEC = SPEC
    exit_when_finished = False  # the console script sets it: shut the context down when finished

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.p
        cam = "/" + p.camera.strip("/")
        self.finished = False
        self.finish_reason = ""
        self._closed = False
        self.t_start = time.monotonic()
        self.t0_ns: int | None = None  # first AU stamp: t = 0 of the dashboard
        self.last_stamp: int | None = None  # newest AU stamp
        self.last_au_rx: float | None = None
        self.au_rx: deque[float] = deque(maxlen=120)
        self.history = AuHistory(p.history_s)
        self.activity = AuActivity(p.on_threshold, p.off_threshold, p.min_active_frames)
        self.segments: list[tuple[float, float, str, float]] = []
        self.alerts: list[dict[str, Any]] = []
        self.lat = {"event->AU": deque(maxlen=_KEEP_LAT), "event->recon": deque(maxlen=_KEEP_LAT)}
        self.lat_other: dict[str, list[float]] = {}
        self.source_lag_ms: dict[str, float] = {}  # a simulator's lag behind real time: last and max
        self.levels: dict[str, str] = {}
        self.level_notes: dict[str, str] = {}
        self.drop_au, self.drop_recon = StampMatcher(), StampMatcher()
        self.windows_shed: dict[str, int] = {}  # per slicer (diagnostics name): windows shed under load
        self.frame_sum: np.ndarray | None = None  # events since the last composite
        self.frame_last: np.ndarray | None = None
        self.acc: np.ndarray | None = None  # decaying event accumulation (face fallback)
        self.preview: np.ndarray | None = None
        self.preview_rx = 0.0
        self.aps: np.ndarray | None = None
        self.roi: tuple[float, float, float, float] | None = None
        self.recon: np.ndarray | None = None
        self.n = {"frames": 0, "au": 0, "recon": 0, "alerts": 0, "composites": 0}
        self.compose_ms: deque[float] = deque(maxlen=300)
        self.writer = None
        self.out_dir = Path(p.out_dir).expanduser() if p.out_dir else None
        self.show = self._want_window()
        self.pub = self.create_publisher(Image, "evmicro/dashboard", FRAMES_QOS)
        g = self.guard
        self.create_subscription(Image, f"{cam}/frames", g(self.on_frames, "frames"), FRAMES_QOS)
        self.create_subscription(Image, f"{cam}/frames_preview", g(self.on_preview, "preview"), FRAMES_QOS)
        self.create_subscription(Image, f"{cam}/image_raw", g(self.on_aps, "image"), SENSOR_QOS)
        self.create_subscription(PolygonStamped, f"{cam}/face_roi", g(self.on_roi, "face_roi"), FRAMES_QOS)
        self.create_subscription(JointState, "evmicro/au", g(self.on_au, "au"), FRAMES_QOS)
        self.create_subscription(Image, "evmicro/face_recon", g(self.on_recon, "recon"), FRAMES_QOS)
        self.create_subscription(String, "evmicro/alerts", g(self.on_alert, "alert"), 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", g(self.on_diagnostics, "diagnostics"), 50)
        self.timer = self.create_timer(1.0 / p.rate_hz, self.tick)

    # -- inputs ---------------------------------------------------------------------------------------------
    def _rel_s(self, t_ns: int) -> float:
        return (t_ns - self.t0_ns) / 1e9 if self.t0_ns is not None else 0.0

    def on_frames(self, msg: Image) -> None:
        f = frames_from_msg(msg)
        self.n["frames"] += 1
        stamp = stamp_to_ns(msg.header.stamp)
        self.drop_au.frame(stamp)
        self.drop_recon.frame(stamp)
        if self.frame_sum is None or self.frame_sum.shape != f.shape:
            self.frame_sum = f.astype(np.float32, copy=True)
        else:
            self.frame_sum += f
        tot = f[0] + f[1]
        if self.acc is None or self.acc.shape != tot.shape:
            self.acc = tot.astype(np.float32, copy=True)
        else:
            self.acc *= 0.85
            self.acc += tot

    def on_preview(self, msg: Image) -> None:
        self.preview = np.array(image_from_msg(msg))
        self.preview_rx = time.monotonic()

    def on_aps(self, msg: Image) -> None:
        self.aps = np.array(image_from_msg(msg))

    def on_roi(self, msg: PolygonStamped) -> None:
        self.roi = box_from_polygon(msg)

    def on_au(self, msg: JointState) -> None:
        rx = self.now_ns()
        scores = au_from_msg(msg)
        stamp = stamp_to_ns(msg.header.stamp)
        self.last_au_rx = time.monotonic()
        self.au_rx.append(self.last_au_rx)
        self.n["au"] += 1
        if self.t0_ns is None:
            self.t0_ns = stamp
        self.lat["event->AU"].append((rx - stamp) / 1e6 - self.p.window_ms)
        self.drop_au.output(stamp)
        self.last_stamp = stamp if self.last_stamp is None else max(stamp, self.last_stamp)
        t = self._rel_s(stamp)
        self.history.append(t, scores)
        onsets, ended = self.activity.update(stamp, np.clip(scores, 0.0, 1.0))
        for o in onsets:
            if self.p.log_aus:
                self.get_logger().info(f"t={self._rel_s(o.start_ns):.1f}s {au_label(o.index)} ({o.score:.2f})")
        for a in ended:
            self.segments.append((self._rel_s(a.start_ns), self._rel_s(a.end_ns), a.code, a.peak))

    def on_recon(self, msg: Image) -> None:
        rx = self.now_ns()
        self.recon = np.array(image_from_msg(msg))
        stamp = stamp_to_ns(msg.header.stamp)
        self.n["recon"] += 1
        self.lat["event->recon"].append((rx - stamp) / 1e6 - self.p.window_ms)
        self.drop_recon.output(stamp)

    def on_alert(self, msg: String) -> None:
        ev = json.loads(msg.data)
        if not isinstance(ev, dict):
            raise ValueError("an alert must be a JSON object")
        if self.t0_ns is not None and isinstance(ev.get("t_ns"), int):
            ev["t"] = self._rel_s(ev["t_ns"])
        self.alerts.append(ev)
        if len(self.alerts) > 10000:
            del self.alerts[:1000]
        self.n["alerts"] += 1
        if self.p.log_aus:
            self.get_logger().info(f"ALERT {format_event(ev)}")

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        me = self.diag.name
        for st in msg.status:
            if st.name in _MONITORS:
                level = st.level[0] if isinstance(st.level, bytes | bytearray) else int(st.level)
                self.levels[_MONITORS[st.name]] = LEVELS[level] if level < len(LEVELS) else "STALE"
                reason = next((kv.value for kv in st.values if kv.key == "reason"), st.message)
                self.level_notes[_MONITORS[st.name]] = "" if level == 0 or level > 2 else reason
                continue
            if st.name == me:
                continue
            src = st.name.split("/")[-1]
            for kv in st.values:
                if kv.key == "windows_shed":  # the slicer's load shedding (max_backlog_ms): windows never sliced
                    try:
                        self.windows_shed[src] = int(kv.value)
                    except ValueError:
                        pass
                    continue
                lag = kv.key == "behind_real_time_ms"  # the simulated rig cannot keep up: stamps lag wall time
                m = None if lag else _LAT_KEY.match(kv.key)
                if not lag and m is None:
                    continue
                try:
                    v = float(kv.value)
                except ValueError:
                    continue
                if m is None:
                    self.source_lag_ms["last"] = v
                    self.source_lag_ms["max"] = max(v, self.source_lag_ms.get("max", 0.0))
                    continue
                key = f"{src}: {m.group(1)}"
                pair = self.lat_other.setdefault(key, [float("nan"), float("nan")])
                pair[0 if m.group(2) == "50" else 1] = v

    # -- output ---------------------------------------------------------------------------------------------
    def _want_window(self) -> bool:
        if self.p.show == "false":
            return False
        if self.p.show == "auto" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False
        return True

    def _face(self) -> tuple[np.ndarray | None, str]:
        if self.preview is not None and time.monotonic() - self.preview_rx < 1.0:
            return self.preview, "face (preview)"
        if self.aps is not None:
            img = self.aps
            if self.roi is not None:
                h, w = img.shape[:2]
                x0, y0, x1, y1 = self.roi
                x0, y0 = max(0, int(x0)), max(0, int(y0))
                x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
                if x1 - x0 >= 4 and y1 - y0 >= 4:
                    return img[y0:y1, x0:x1], "face (APS crop)"
            return img, "face (APS)"
        if self.acc is not None:
            a = self.acc
            scale = max(float(np.percentile(a[a > 0], 99)) if np.any(a > 0) else 1.0, 1e-6)
            return np.clip(a * (255.0 / scale), 0, 255).astype(np.uint8), "face (events, accumulated)"
        return None, "face"

    def latency_table(self) -> dict[str, tuple[float, float]]:
        out = {}
        for k, d in self.lat.items():
            if d:
                recent = list(d)[-300:]
                s = latency_stats(recent)
                out[k] = (s["p50"], s["p99"])
        for k, (p50, p99) in self.lat_other.items():
            out[k] = (p50, p99)
        return out

    def fps(self) -> float:
        if len(self.au_rx) < 2:
            return float("nan")
        span = self.au_rx[-1] - self.au_rx[0]
        if time.monotonic() - self.au_rx[-1] > 1.0 or span <= 0:
            return 0.0 if span > 0 else float("nan")
        return (len(self.au_rx) - 1) / span

    def compose(self) -> np.ndarray:
        p = self.p
        hist, times = self.history.last(p.strip_s + 1.0)
        face, face_title = self._face()
        frame = self.frame_sum if self.frame_sum is not None else self.frame_last
        img = compose_dashboard(
            frame, face, self.recon, hist, times, self.alerts[-p.max_alerts:], self.fps(), self.latency_table(),
            (p.width, p.height), levels=self.levels or None, level_notes=self.level_notes,
            strip_s=p.strip_s, on_threshold=p.on_threshold, face_title=face_title, max_alerts=p.max_alerts)
        if self.frame_sum is not None:
            self.frame_last, self.frame_sum = self.frame_sum, None
        return img

    def tick(self) -> None:
        if self._closed:
            return
        t0 = time.perf_counter()
        img = self.compose()
        self.compose_ms.append((time.perf_counter() - t0) * 1e3)
        self.n["composites"] += 1
        self.pub.publish(image_to_msg(img, "bgr8", self.now_ns(), "dashboard"))
        self._write_video(img)
        self._show(img)
        self.drop_au.settle()
        self.drop_recon.settle()
        self._update_diag()
        self._check_finished()

    def _write_video(self, img: np.ndarray) -> None:
        if not (self.p.video and self.out_dir is not None):
            return
        if self.writer is None:
            import cv2

            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = str(self.out_dir / "dashboard.mp4")
            self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(self.p.rate_hz),
                                          (img.shape[1], img.shape[0]))
            if not self.writer.isOpened():
                self.get_logger().error(f"cannot open the video writer for {path}; no video is written")
                self.writer = False
        if self.writer:
            self.writer.write(img)

    def _show(self, img: np.ndarray) -> None:
        if not self.show:
            return
        import cv2

        try:
            cv2.imshow("evmicro dashboard", img)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as err:
            self.get_logger().warning(f"cannot show the dashboard window ({err}); continuing without it")
            self.show = False
            return
        if key in (ord("q"), 27):
            self._finish("closed by the user (q/Esc)")

    def _update_diag(self) -> None:
        d = self.diag
        for k, v in self.n.items():
            d.set(f"{k}_received" if k != "composites" else k, v)
        d.set("au_rate_hz", self.fps())
        if self.compose_ms:
            d.set("compose_ms_p50", float(np.median(self.compose_ms)))
        for k, name in (("event->AU", "event_to_au"), ("event->recon", "event_to_recon")):
            if self.lat[k]:
                s = latency_stats(list(self.lat[k])[-300:])
                d.set(f"latency_{name}_ms_p50", s["p50"])
                d.set(f"latency_{name}_ms_p99", s["p99"])
        d.set("dropped_frames_au", self.drop_au.dropped)
        d.set("dropped_frames_recon", self.drop_recon.dropped)

    def _check_finished(self) -> None:
        if self.finished:
            return
        now = time.monotonic()
        if self.p.duration_s > 0 and now - self.t_start >= self.p.duration_s:
            self._finish(f"duration_s={self.p.duration_s:g} reached")
        elif (self.p.idle_timeout_s > 0 and self.last_au_rx is not None
              and now - self.last_au_rx >= self.p.idle_timeout_s):
            self._finish(f"no AU message for {self.p.idle_timeout_s:g} s: input ended")
        elif (self.p.startup_timeout_s > 0 and self.last_au_rx is None
              and now - self.t_start >= self.p.startup_timeout_s):
            self.diag.status("ERROR", "no AU scores arrived")
            self._finish(f"no AU message at all within startup_timeout_s={self.p.startup_timeout_s:g} s "
                         "(is the camera streaming and a face in view?)")

    def _finish(self, reason: str) -> None:
        self.finished = True
        self.finish_reason = reason
        self.get_logger().info(f"dashboard finished: {reason}")
        if self.exit_when_finished:
            self.context.try_shutdown()

    # -- end ------------------------------------------------------------------------------------------------
    def summary_info(self) -> dict[str, Any]:
        t = self.history.times
        return {
            "camera": self.p.camera,
            "duration_s": round(float(t[-1] - t[0]), 3) if len(t) else 0.0,
            "wall_s": round(time.monotonic() - self.t_start, 3),
            "finished": self.finish_reason or "stopped",
            **{f"{k}_received" if k != "composites" else k: v for k, v in self.n.items()},
            "compose_ms_p50": round(float(np.median(self.compose_ms)), 3) if self.compose_ms else None,
            "video": str(self.out_dir / "dashboard.mp4") if self.writer else "",
            "final_levels": dict(self.levels),
            "source_behind_real_time_ms": dict(self.source_lag_ms),
            "windows_shed_by_slicer": sum(self.windows_shed.values()),
        }

    def close(self) -> None:
        """Release the video, write the summary (once)."""
        if self._closed:
            return
        self._closed = True
        self.timer.cancel()
        if self.last_stamp is not None:
            for a in self.activity.flush(self.last_stamp):
                self.segments.append((self._rel_s(a.start_ns), self._rel_s(a.end_ns), a.code, a.peak))
        self.drop_au.settle(final=True)
        self.drop_recon.settle(final=True)
        if self.writer:
            self.writer.release()
        if self.show:
            try:
                import cv2

                cv2.destroyAllWindows()
            except Exception:  # noqa: BLE001 - closing a window must not stop the summary
                pass
        if self.out_dir is None:
            return
        dropped = {}
        if self.n["au"]:
            dropped["frames without AU scores"] = self.drop_au.dropped
        if self.n["recon"]:
            dropped["frames without reconstruction"] = self.drop_recon.dropped
        lat = {k: list(v) for k, v in self.lat.items() if v}
        try:
            paths = write_summary(self.out_dir, segments=self.segments, alerts=self.alerts, latency_ms=lat,
                                  dropped_frames=dropped, au_history=self.history.scores,
                                  au_times=self.history.times, info=self.summary_info())
        except Exception as err:  # noqa: BLE001 - report, never lose the shutdown
            self.get_logger().error(f"could not write the summary to {self.out_dir}: {err}")
            return
        self.get_logger().info(f"summary written: {', '.join(str(p) for p in paths.values())}")


class _StandaloneDashboard(DashboardNode):
    """The console script's node: ends its process when finished (launch then shuts the graph down)."""

    exit_when_finished = True


NODE = DashboardNode


def main(args=None) -> int:
    return run_node(_StandaloneDashboard, args)


if __name__ == "__main__":
    raise SystemExit(main())

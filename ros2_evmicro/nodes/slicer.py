"""Slicer node: a camera's events -> fixed windows of event time -> face-cropped ON/OFF count frames.

Subscribes ``events`` (PointCloud2 of the contract), ``face_roi`` (PolygonStamped, pixels of this camera) and
``camera_info`` (latched; gives the sensor size, which a PointCloud2 does not carry; event packets that come
before it are held, up to :data:`HOLD_MAX_PACKETS` / :data:`HOLD_MAX_EVENTS`, and sliced once it comes). Publishes
``frames``
(``32FC2`` (crop, crop, 2): channel 0 OFF, 1 ON, Eq. 1 of the paper) once per closed window, with
``header.stamp`` = window start, and optionally ``frames_preview`` (bgr8).

Time: the events' ``t`` is ROS time in microseconds (``header.stamp`` + relative time, mapped from the sensor
clock by the driver), and every decision here (window grid, late events, which face box applies to a
window, box age) uses those message times, so a bag replayed with ``use_sim_time`` gives the same frames as
the live run. Windows lie on the grid ``k * window_ms`` of that clock; a window closes when an event at or
after ``window end + late_tolerance_ms`` arrives (so a gap in the stream is filled with empty frames when
the next events come, up to ``max_empty_windows``), or when a watermark (an events packet without events,
:func:`~ros2_evmicro.ros.convert.watermark_msg`) says that every event before its stamp has been published:
the drivers send one at each window boundary (``watermark_grid_ms``), so a window closes as soon as it ends
instead of waiting for the tolerance and for the packet that carries a later event. The one wall-clock figure
is the latency ``latency_window_to_publish_ms`` = (node clock at publish) - (window end), i.e. wall time now minus the
window's end mapped to wall time (the node clock is the wall clock live; with ``use_sim_time`` it is the
bag clock). It includes the late tolerance and the wait for the packet that closes the window;
``latency_packet_to_publish_ms`` is the node's own share: from the closing packet's callback to publish (a
frame goes out as soon as its window closes, before the rest of that packet is counted).

Load shedding (``max_backlog_ms`` > 0, for live cameras; the live demo graph sets it): each events packet's
backlog (wall clock at the callback minus the DDS source timestamp of its publish) feeds a
:class:`~ros2_evmicro.core.shedding.LoadShedder`; when the backlog keeps rising the node is overloaded and counts
only 1 of every N windows (the others are dropped whole: no frame, ``windows_shed``), so that the frames it does
publish are current. A stall (the backlog falls again) sheds nothing.

Face box for a window: with ``roi_mode`` 'topic', the newest box stamped at or before the window's end (or
the oldest one kept, when all are newer); a box older than ``roi_timeout_s`` is still held but reported
stale (WARN); before any box arrives the central box is used (WARN). The crop box moves only when the face box
leaves a dead band of ``roi_deadband`` times its side, or the face settles elsewhere
(:class:`~ros2_evmicro.core.roi.SteadyBox`): the crops then match the SNN's training crops, whose box stays put
over a take.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

import cv2
import numpy as np
from geometry_msgs.msg import PolygonStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ros2_evmicro.core.face import FaceError, normalize_frames, square_box
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.core.roi import Box, RoiHistory, center_box, crop_counts, crop_region
from ros2_evmicro.core.shedding import LoadShedder
from ros2_evmicro.core.slicer import Frame, Slicer
from ros2_evmicro.ros.convert import (
    box_from_polygon,
    events_from_msg,
    frames_to_msg,
    image_to_msg,
    is_watermark,
    stamp_to_ns,
)
from ros2_evmicro.ros.node import EVENTS_QOS, FRAMES_QOS, LATCHED_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.slicer import SPEC

__all__ = ["RoiHistory", "SlicerNode", "center_box", "crop_counts", "main", "preview_image", "warm_up"]

# ---------------------------------------------------------------------------------------------
# pure helpers (no ROS types)
# ---------------------------------------------------------------------------------------------


def preview_image(frame: np.ndarray, scale: int = 4) -> np.ndarray:
    """bgr8 view of a ``(2, H, W)`` count frame: ON in red, OFF in blue, scaled by the frame's maximum,
    upscaled ``scale`` times (nearest neighbour)."""
    f = np.asarray(frame, dtype=np.float32)
    h, w = f.shape[1:]
    img = np.zeros((h, w, 3), np.uint8)
    m = float(f.max()) if f.size else 0.0
    if m > 0:
        g = 255.0 / m
        img[..., 2] = np.clip(f[1] * g, 0, 255).astype(np.uint8)
        img[..., 0] = np.clip(f[0] * g, 0, 255).astype(np.uint8)
    if scale > 1:
        img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    return img


_WARM = False

HOLD_MAX_PACKETS = 1000
"""Packets kept while the sensor size is unknown (10 s of 10 ms packets)."""
HOLD_MAX_EVENTS = 5_000_000
"""Events kept while the sensor size is unknown (60 MB of PointCloud2 data; 0.25 s of EVK4 at 20 Mev/s)."""


def warm_up() -> None:
    """Load the slicer's compiled kernels and OpenCV's resize once per process (the first call otherwise
    stalls the first event packet by a few hundred ms)."""
    global _WARM
    if _WARM:
        return
    from ros2_evmicro.core.events import make_events
    from ros2_evmicro.core.wire import events_to_wire

    ev = make_events([1, 2], [1, 2], [0, 1], [0, 1500])
    for views in (False, True):
        s = Slicer(8, 8, 1000, 0, frame_views=views)
        s.push(ev)
        s.push(events_to_wire(ev, 0)[0], t_offset_us=2000)  # the wire-view kernel the node uses
        s.flush()
    crop_counts(np.ones((2, 8, 8), np.uint16), (1.0, 1.0, 5.0, 5.0), 3, 0.2)
    crop_counts(np.ones((2, 8, 8), np.uint16), (1.0, 1.0, 5.0, 5.0), 16, 0.2)
    _WARM = True


# ---------------------------------------------------------------------------------------------
# node
# ---------------------------------------------------------------------------------------------


class SlicerNode(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.p
        self.window_us = max(1, int(round(p.window_ms * 1000)))
        self.late_tolerance_us = int(round(p.late_tolerance_ms * 1000))
        if (p.width == 0) != (p.height == 0):
            raise ParamError(f"node {self.get_name()}: set both width and height (or neither: camera_info), "
                             f"got {p.width}x{p.height}")
        self._check_roi(p)
        self.slicer: Slicer | None = None
        self.size_source = ""
        self.frame_id = ""
        self.rois = RoiHistory(deadband=p.roi_deadband)
        self._held: list[PointCloud2] = []  # packets that came before the sensor size (camera_info)
        self._held_events = 0
        self.roi_source = ""
        self.lat_ms: deque[float] = deque(maxlen=2000)
        self.proc_ms: deque[float] = deque(maxlen=2000)
        self.backlog_ms: deque[float] = deque(maxlen=2000)  # events packets: publish (DDS source time) -> callback
        self.shedder = LoadShedder(p.max_backlog_ms, p.window_ms) if p.max_backlog_ms > 0 else None
        self._shed_every = 1
        self._shed_reported = 0  # windows_shed as last put on diagnostics
        self._t_first_ns: int | None = None  # wall clock of the first events packet's callback
        self._n_frames_diag = 0
        self.pub_frames = self.create_publisher(Image, "frames", FRAMES_QOS)
        self.pub_preview = self.create_publisher(Image, "frames_preview", FRAMES_QOS)
        if p.width and p.height:
            self._make_slicer(p.width, p.height, "parameters")
        else:
            self.diag.status("WARN", "sensor size unknown: waiting for camera_info (or set width/height)")
        self.sub_events = self.create_subscription(PointCloud2, "events",
                                                   self.guard_info(self.on_events, "events"), EVENTS_QOS)
        self.sub_roi = self.create_subscription(PolygonStamped, "face_roi", self.guard(self.on_roi, "face_roi"),
                                                FRAMES_QOS)
        self.sub_info = self.create_subscription(CameraInfo, "camera_info",
                                                 self.guard(self.on_camera_info, "camera_info"), LATCHED_QOS)

    # -- parameters ----------------------------------------------------------------------------------
    def _check_roi(self, p) -> None:
        if p.roi_mode == "fixed":
            try:
                square_box(p.roi_box, 0.0)
            except FaceError as err:
                raise ParamError(f"roi_mode 'fixed' needs roi_box [x0, y0, x1, y1] with x1 > x0, y1 > y0: {err}"
                                 ) from None

    def on_parameters_changed(self, changed: dict) -> None:
        if "roi_mode" in changed or "roi_box" in changed:
            self._check_roi(self.p)
        if "roi_deadband" in changed:
            self.rois.steady.deadband = float(self.p.roi_deadband)
        if {"roi_mode", "roi_box", "center_box_fraction", "crop_margin"} & set(changed):
            self._set_count_region()

    def _set_count_region(self) -> None:
        """With a crop that does not move (roi_mode center or fixed) only its pixels are counted: the frames are
        the same and the counting skips the rest of the sensor (at 20 Mev/s on 1280x720 it is most of the
        node's work). The face box of roi_mode 'topic' is known only when a window closes: everything counts.
        Windows open when the crop changes count the new region from then on."""
        if self.slicer is None:
            return
        p = self.p
        w, h = self.slicer.size.width, self.slicer.size.height
        region = None
        if p.roi_mode == "center":
            region = crop_region(center_box(w, h, p.center_box_fraction), p.crop_margin, w, h)
        elif p.roi_mode == "fixed":
            region = crop_region(tuple(p.roi_box), p.crop_margin, w, h)
        if region is not None and (region[2] <= region[0] or region[3] <= region[1]):
            region = None  # a crop outside the sensor: count everything (the crop is empty anyway)
        self.slicer.set_region(region)
        r = self.slicer.region
        self.diag.set("counted_region", f"{r[0]},{r[1]},{r[2]},{r[3]}")

    # -- sensor size ---------------------------------------------------------------------------------
    def _make_slicer(self, width: int, height: int, source: str) -> None:
        warm_up()
        self.slicer = Slicer(width, height, self.window_us, self.late_tolerance_us, dtype=np.uint16,
                             on_invalid=self.p.on_invalid, max_empty_windows=self.p.max_empty_windows,
                             frame_views=True)
        self.size_source = source
        self._set_count_region()
        self.roi_source = ""  # the next frame sets the ROI status again
        self.diag.set("sensor", f"{width}x{height} ({source})")
        self.diag.status("OK", f"slicing {width}x{height} into {self.p.window_ms:g} ms windows")

    def on_camera_info(self, msg: CameraInfo) -> None:
        w, h = int(msg.width), int(msg.height)
        if w <= 0 or h <= 0:
            raise ValueError(f"camera_info gives a sensor size of {w}x{h}")
        if self.slicer is not None and (self.slicer.size.width, self.slicer.size.height) == (w, h):
            return
        if self.size_source == "parameters":
            s = self.slicer.size
            self.get_logger().warning(f"camera_info says {w}x{h} but the width/height parameters say "
                                      f"{s.width}x{s.height}; keeping the parameters", once=True)
            return
        if self.slicer is not None:
            self.get_logger().warning(f"sensor size changed to {w}x{h}: the open windows are dropped")
        self._make_slicer(w, h, "camera_info")
        self._release_held()

    # -- packets that come before the sensor size -----------------------------------------------------
    def _hold(self, msg: PointCloud2, n_events: int) -> None:
        """Keep a packet that came before camera_info (DDS may match the events topic first): it is sliced, in
        order, once the size is known. Beyond HOLD_MAX_PACKETS / HOLD_MAX_EVENTS packets are dropped (counted)."""
        self.diag.count("packets_waiting_for_size")
        self.diag.count("events_waiting_for_size", n_events)
        if len(self._held) < HOLD_MAX_PACKETS and self._held_events + n_events <= HOLD_MAX_EVENTS:
            self._held.append(msg)
            self._held_events += n_events
            self.get_logger().info("events arrive before the sensor size (no camera_info yet, width/height 0): "
                                   "holding them until it comes", throttle_duration_sec=5.0)
        else:
            self.diag.count("packets_dropped_waiting_for_size")
            self.get_logger().error(f"still no camera_info after {len(self._held)} packets: packet dropped (set "
                                    "width/height, or check the driver's camera_info)", throttle_duration_sec=5.0)

    def _release_held(self) -> None:
        held, self._held, self._held_events = self._held, [], 0
        for msg in held:
            self.on_events(msg)
        if held:
            self.get_logger().info(f"sliced the {len(held)} packets that came before camera_info")

    # -- inputs --------------------------------------------------------------------------------------
    def on_roi(self, msg: PolygonStamped) -> None:
        box = box_from_polygon(msg)
        square_box(box, 0.0)  # FaceError for an empty or non-finite box
        self.rois.add(stamp_to_ns(msg.header.stamp), tuple(float(v) for v in box))
        self.diag.count("face_rois")

    def on_events(self, msg: PointCloud2, info: dict | None = None) -> None:
        """An events packet; ``info`` is rclpy's message info (None for packets held for the sensor size)."""
        t_in = time.perf_counter()
        backlog_ms = None
        src_ns = int(info.get("source_timestamp") or 0) if info is not None else 0
        if src_ns:
            now_ns = time.time_ns()
            if self._t_first_ns is None:
                self._t_first_ns = now_ns
            backlog_ms = (now_ns - src_ns) / 1e6
            self.backlog_ms.append(backlog_ms)
            if src_ns < self._t_first_ns:
                backlog_ms = None  # queued before this node ran at all (start-up): not load, counted as it comes
        # zero-copy view of the message buffer (relative t): the slicer adds the stamp itself
        events = events_from_msg(msg, copy=False)
        if self.slicer is None:
            self._hold(msg, len(events))
            return
        self.frame_id = msg.header.frame_id
        if is_watermark(msg):
            self._on_watermark(stamp_to_ns(msg.header.stamp), t_in)
            return
        toff = stamp_to_ns(msg.header.stamp) // 1000
        if self.shedder is not None and backlog_ms is not None and len(events):
            self._shed(events, toff, backlog_ms)
        st = self.slicer.stats
        dropped0 = st.n_dropped_late
        # on_invalid 'raise': EventError, the guard drops the packet. Each frame is published as soon as its
        # window closes, before the rest of the packet is counted (Slicer.push_iter); the frames are views of
        # the slicer's buffers, valid until the next push: each is cropped and published here, at once.
        n_frames, failed = self._publish_all(self.slicer.push_iter(events, t_offset_us=toff), t_in)
        late = st.n_dropped_late > dropped0
        if late:
            self.diag.count("late_packets")
        self.diag.count("packets")
        self.diag.count("events", len(events))
        if n_frames or late or st.windows_shed != self._shed_reported:
            self._update_diag()
        if failed is not None:
            raise failed

    def _shed(self, events: np.ndarray, toff: int, backlog_ms: float) -> None:
        """Load shedding (``max_backlog_ms``): the windows of this packet that the shedder drops are not counted
        and give no frame; the AU node counts them as dropped frames."""
        k0 = self.slicer.window_index(int(events["t"][0]) + toff)
        k1 = self.slicer.window_index(int(events["t"][-1]) + toff)
        if k0 is None or k1 is None:  # the first packet fixes the window grid: nothing to decide yet
            return
        for k in self.shedder.on_message(k0, max(k0, k1), backlog_ms):
            self.slicer.shed(k)
        every = self.shedder.every
        if every != self._shed_every:
            self._shed_every = every
            self.diag.set("shed_every", every)
            if every > 1:
                self.get_logger().warning(
                    f"falling behind the events (a packet waited {backlog_ms:.0f} ms): counting 1 of every {every} "
                    "windows to stay current (max_backlog_ms)", throttle_duration_sec=5.0)
                self.diag.status("WARN", f"overloaded: counting 1 of every {every} windows (max_backlog_ms)")
            else:
                self.diag.status("OK", "keeping up again: counting every window")

    def _on_watermark(self, stamp_ns: int, t_in: float) -> None:
        """An events packet without events: the driver has published every event before ``stamp_ns``, so the
        windows that ended by then close now (the late tolerance is for streams without watermarks)."""
        self.diag.count("watermarks")
        if (stamp_ns // 1000) % self.window_us:
            self.diag.count("watermarks_off_grid")
            self.get_logger().warning(
                f"event watermarks are not on this slicer's {self.p.window_ms:g} ms window grid: set the driver's "
                "watermark_grid_ms to window_ms, or windows close only at the next watermark after their end",
                once=True)
        n_frames, failed = self._publish_all(self.slicer.complete(stamp_ns // 1000), t_in)
        if n_frames or self.slicer.stats.windows_shed != self._shed_reported:
            self._update_diag()
        if failed is not None:
            raise failed

    # -- output --------------------------------------------------------------------------------------
    def _publish_all(self, frames: Iterable[Frame], t_in: float) -> tuple[int, Exception | None]:
        """Publish each frame as it comes; a failure does not stop the rest (the slicer must count the whole
        packet) and is returned, for the caller to raise once its accounting is done (the guard reports it).
        Returns (frames seen, first failure)."""
        n = 0
        failed: Exception | None = None
        for f in frames:
            try:
                self._publish(f, t_in)
            except Exception as err:  # noqa: BLE001 - publish and count the rest, then report
                failed = failed or err
            n += 1
        return n, failed

    def roi_for(self, frame: Frame) -> tuple[Box, float, str]:
        """(box, margin, source) of the crop of ``frame``; source is 'full', 'fixed', 'center', 'topic',
        'held' (older than roi_timeout_s) or 'center_fallback' (no face box yet)."""
        p = self.p
        w, h = self.slicer.size.width, self.slicer.size.height
        mode = p.roi_mode
        if mode == "full":
            return (0.0, 0.0, float(w), float(h)), 0.0, "full"
        if mode == "fixed":
            return tuple(p.roi_box), p.crop_margin, "fixed"
        if mode == "topic":
            t_end_ns = frame.t_end_us * 1000
            hit = self.rois.at(t_end_ns)
            if hit is not None:
                box, stamp = hit
                age_s = max(t_end_ns - stamp, 0) / 1e9
                self.diag.set("roi_age_s", round(age_s, 3))
                stale = p.roi_timeout_s > 0 and age_s > p.roi_timeout_s
                return box, p.crop_margin, "held" if stale else "topic"
            return center_box(w, h, p.center_box_fraction), p.crop_margin, "center_fallback"
        return center_box(w, h, p.center_box_fraction), p.crop_margin, "center"

    def _publish(self, frame: Frame, t_in: float) -> None:
        p = self.p
        box, margin, source = self.roi_for(frame)
        crop = crop_counts(frame.counts, box, p.crop_size_px, margin)
        if p.normalization != "none":
            crop = normalize_frames(crop, p.normalization, clip_value=p.clip_value)
        frame_id = p.frame_id or self.frame_id
        stamp_ns = frame.t_start_us * 1000
        self.pub_frames.publish(frames_to_msg(crop, stamp_ns, frame_id))
        self.proc_ms.append((time.perf_counter() - t_in) * 1e3)
        self.lat_ms.append((self.now_ns() - frame.t_end_us * 1000) / 1e6)
        if p.preview:
            self.pub_preview.publish(image_to_msg(preview_image(crop, p.preview_scale), "bgr8", stamp_ns, frame_id))
        self.diag.count("windows")
        if frame.n_events == 0:
            self.diag.count("empty_windows")
        self._set_roi_source(source)

    def _set_roi_source(self, source: str) -> None:
        if source == self.roi_source:
            return
        self.roi_source = source
        self.diag.set("roi_source", source)
        if source == "center_fallback":
            self.diag.status("WARN", "no face box received yet on face_roi: cropping the central box")
        elif source == "held":
            self.diag.status("WARN", f"face box older than roi_timeout_s={self.p.roi_timeout_s:g} s: holding it")
        else:
            self.diag.status("OK", f"cropping the {source} box")

    def _update_diag(self) -> None:
        st = self.slicer.stats
        d = self.diag
        d.set("events_per_window_mean", round(st.events_per_window_mean, 1))
        d.set("events_per_window_last", st.last_events_per_window)
        d.set("dropped_late_events", st.n_dropped_late)
        d.set("late_merged_events", st.n_late_merged)
        d.set("invalid_events", st.n_invalid)
        d.set("windows_skipped", st.windows_skipped)
        if self.shedder is not None:
            self._shed_reported = st.windows_shed
            d.set("windows_shed", st.windows_shed)
            d.set("shed_every", self.shedder.every)
        self._n_frames_diag += 1
        if self._n_frames_diag % 5 == 1 and self.lat_ms:  # percentiles of the last 2000 windows, every 5th time
            lat = np.percentile(np.fromiter(self.lat_ms, float), (50, 99))
            proc = np.percentile(np.fromiter(self.proc_ms, float), (50, 99))
            d.set("latency_window_to_publish_ms_p50", float(lat[0]))
            d.set("latency_window_to_publish_ms_p99", float(lat[1]))
            d.set("latency_packet_to_publish_ms_p50", float(proc[0]))
            d.set("latency_packet_to_publish_ms_p99", float(proc[1]))
            if self.backlog_ms:
                bl = np.percentile(np.fromiter(self.backlog_ms, float), (50, 99))
                d.set("events_backlog_ms_p50", float(bl[0]))
                d.set("events_backlog_ms_p99", float(bl[1]))


NODE = SlicerNode


def main(args=None) -> int:
    return run_node(SlicerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

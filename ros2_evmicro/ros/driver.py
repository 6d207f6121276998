"""Base of the camera driver nodes: a reader thread pulls items from a source, maps device time to ROS time
and publishes the contract's topics.

Live sources: every event chunk's first timestamp is paired with its arrival time and fed to a
:class:`~ros2_evmicro.core.clock.ClockSync`; stamps are the fitted mapping. Recorded sources: a
:class:`~ros2_evmicro.core.clock.Pacer` releases items at ``playback_rate`` and stamps are the start time plus
the recording's device-time offsets. Either way the raw pairing goes out on ``time_reference``.

Faults never end in a traceback: a source that cannot be opened or fails mid-stream is reported on the log and
on ``/diagnostics`` (ERROR with the reason); live sources are reopened every ``reconnect_s``; files end with
every complete event published and the damage reported.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from rclpy.duration import Duration
from sensor_msgs.msg import CameraInfo, Image, Imu, PointCloud2, TimeReference

from ros2_evmicro.core.clock import ClockSync, Pacer
from ros2_evmicro.core.stream import EventsItem, FrameItem, ImuItem, Packetizer, Source, SourceError, TriggerItem
from ros2_evmicro.ros.convert import (
    camera_info_msg,
    events_to_msg,
    image_to_msg,
    ns_to_stamp,
    time_reference_msg,
    warm_up,
    watermark_msg,
)
from ros2_evmicro.ros.node import EVENTS_QOS, LATCHED_QOS, SENSOR_QOS, EvmicroNode
from ros2_evmicro.specs._driver import driver_params

__all__ = ["DriverNode", "driver_params"]


class DriverNode(EvmicroNode):
    """Subclasses implement :meth:`open_source` (and optionally :meth:`open_native_writer`)."""

    HAS_EVENTS = True
    # topics a recorded source waits for subscribers on (wait_for_subscribers_s)
    STREAMS: tuple[str, ...] = ("events", "triggers", "time_reference")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.finished = False
        self.ended = False
        self.source: Source | None = None
        self.native = None
        self.pub_events = None
        if self.HAS_EVENTS:
            self.pub_events = self.create_publisher(PointCloud2, "events", EVENTS_QOS)
            warm_up()  # the packing kernel now, not on the first packet (convert.warm_up)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", LATCHED_QOS)
        self.pub_tref = self.create_publisher(TimeReference, "time_reference", SENSOR_QOS)
        self.pub_trig = self.create_publisher(TimeReference, "triggers", SENSOR_QOS)
        self.pub_image: Any = None
        self.pub_imu: Any = None
        self.counts = {"events": 0, "packets": 0, "watermarks": 0, "frames": 0, "imu": 0, "triggers": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.get_name()}_reader", daemon=True)
        self._thread.start()

    # -- to implement ---------------------------------------------------------------------------------------
    def open_source(self) -> Source:
        raise NotImplementedError

    def open_native_writer(self, source: Source):
        """An object with ``write(items)`` and ``close()`` writing the vendor file, or None."""
        return None

    # -- publishing -----------------------------------------------------------------------------------------
    def image_publisher(self):
        if self.pub_image is None:
            self.pub_image = self.create_publisher(Image, "image_raw", SENSOR_QOS)
        return self.pub_image

    def imu_publisher(self):
        if self.pub_imu is None:
            self.pub_imu = self.create_publisher(Imu, "imu", SENSOR_QOS)
        return self.pub_imu

    def _camera_info(self, width: int, height: int) -> CameraInfo:
        K = D = None
        if self.p.calibration_file:
            from ros2_evmicro.core.face import load_calibration

            cal = load_calibration(self.p.calibration_file)
            cam = cal.get("cameras", {}).get(self.get_namespace().strip("/") or self.get_name(), {})
            K, D = cam.get("K"), cam.get("D")
        return camera_info_msg(width, height, self.now_ns(), self.p.frame_id, K, D)

    def _publish_events(self, pkt: np.ndarray, stamp_ns: int) -> None:
        msg = events_to_msg(pkt, stamp_ns=stamp_ns, t_ref_us=int(pkt["t"][0]), frame_id=self.p.frame_id)
        self.pub_events.publish(msg)
        n = len(pkt)
        self.counts["events"] += n
        self.counts["packets"] += 1
        self.diag.count("events", n)
        self.diag.count("packets")
        self.diag.set("stamp_to_now_ms", (self.now_ns() - stamp_ns) / 1e6)

    # -- the reader thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.source = self.open_source()
            except (SourceError, OSError, ValueError) as err:
                self.diag.status("ERROR", f"cannot open source: {err}")
                self.get_logger().error(f"cannot open {self.p.source} source: {err}", throttle_duration_sec=10.0)
                if self.p.source in ("camera", "device", "network"):
                    self._stop.wait(self.p.reconnect_s)
                    continue
                self.ended = True
                return
            info = self.source.info
            self.pub_info.publish(self._camera_info(info.width, info.height))
            if self.p.native_record_path and self.native is None:
                try:
                    self.native = self.open_native_writer(self.source)
                except (OSError, ValueError, SourceError) as err:
                    self.get_logger().error(f"native recording disabled: {err}")
                    self.diag.status("WARN", f"native recording disabled: {err}")
            if not info.live and self.p.wait_for_subscribers_s > 0:
                self._wait_for_subscribers(self.p.wait_for_subscribers_s)
            self.diag.status("OK", f"streaming from {self.p.source} ({info.width}x{info.height}, {info.serial})")
            try:
                again = self._stream(self.source)
            except (SourceError, OSError, ValueError) as err:
                again = info.live
                self.diag.status("ERROR", f"source failed: {err}")
                self.get_logger().error(f"{self.p.source} source failed: {err}")
            finally:
                src, self.source = self.source, None  # settings changed from now on apply at the next open
                try:
                    src.close()
                except Exception:  # noqa: BLE001 - closing a broken device must not raise
                    pass
            if not again or self._stop.is_set():
                break
            self._stop.wait(self.p.reconnect_s if info.live else 0.0)
        self.ended = True

    def _wait_for_subscribers(self, timeout_s: float) -> bool:
        """Recorded sources: wait until every publisher of :attr:`STREAMS` has a subscriber, or ``timeout_s``
        passes, or one second after the main topic (the first of STREAMS) got its subscriber."""
        pubs = [self.pub_events] if self.HAS_EVENTS else []
        for name in self.STREAMS:
            pub = {"image_raw": self.image_publisher, "imu": self.imu_publisher, "triggers": lambda: self.pub_trig,
                   "time_reference": lambda: self.pub_tref}.get(name)
            if pub is not None:
                pubs.append(pub())
        t_end = time.monotonic() + timeout_s
        main_seen = False
        while not self._stop.is_set() and time.monotonic() < t_end:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            if not main_seen and pubs and pubs[0].get_subscription_count() > 0:
                main_seen = True  # the main topic is subscribed: the other topics get one more second
                t_end = min(t_end, time.monotonic() + 1.0)
            self._stop.wait(0.01)
        return False

    def _stream(self, source: Source) -> bool:
        """Publish until the source ends; True when it should be reopened (loop, or a live camera lost)."""
        info = source.info
        live = info.live
        clock = ClockSync(window_s=self.p.clock_window_s)
        pacer = Pacer(self.p.playback_rate)
        t0_ros = self.now_ns()
        grid_ns = int(round(self.p.watermark_grid_ms * 1e6)) if self.HAS_EVENTS else 0
        floor_ns = [0]  # the last watermark: no packet after it may be stamped earlier
        last_flush = time.monotonic()
        # recorded data as fast as possible: wait for reliable subscribers' acknowledgements every half queue
        # depth, so a burst (hundreds of IMU samples, a big file) never overruns their keep-last history
        flow = not live and self.p.playback_rate == 0
        unacked: dict[int, int] = {}

        def sent(pub) -> None:
            if not flow:
                return
            k = id(pub)
            unacked[k] = unacked.get(k, 0) + 1
            if unacked[k] >= max(1, pub.qos_profile.depth // 2):
                pub.wait_for_all_acked(Duration(seconds=1.0))
                unacked[k] = 0

        def stamp_of(t_us: int) -> int:
            if live:
                return clock.to_host_ns(t_us)
            if pacer.dev0 is None:
                pacer.start(t_us)
            return t0_ros + (int(t_us) - int(pacer.dev0)) * 1000

        def host_of(t_us: int) -> int:
            """ROS time of device time ``t_us`` for the watermark grid: :func:`stamp_of`, but live from the clock
            fit itself (``stamp_of`` would move the monotonic clamp of the stamps)."""
            return clock.fit.host_ns(t_us) if live and clock.fit is not None else stamp_of(t_us)

        def next_cut(t_us: int) -> int:
            """The device time of the first window boundary (a multiple of watermark_grid_ms of ROS time) after
            ``t_us``: the inverse of :func:`host_of` (live: of the clock fit; a file: of the fixed offset)."""
            b = (host_of(t_us) // grid_ns + 1) * grid_ns
            if live and clock.fit is not None:
                d = clock.fit.dev_us(b)
            else:  # host_of has started the pacer
                d = int(pacer.dev0) + -(-(b - t0_ros) // 1000)  # type: ignore[arg-type]
            return max(d, int(t_us) + 1)

        packer = Packetizer(int(self.p.packet_period_ms * 1000), cuts=next_cut if grid_ns > 0 else None)

        def pace(t_us: int) -> bool:
            if live:
                return True
            while not pacer.wait(t_us):
                if self._stop.is_set():
                    return False
            return not self._stop.is_set()

        def emit(pkt: np.ndarray) -> None:
            if len(pkt) == 0 or not pace(int(pkt["t"][0])):
                return
            stamp = max(stamp_of(int(pkt["t"][0])), floor_ns[0])
            self._publish_events(pkt, stamp)
            sent(self.pub_events)
            self.pub_tref.publish(time_reference_msg(self.now_ns(), int(pkt["t"][0]), info.serial, self.p.frame_id))
            sent(self.pub_tref)

        def watermark(cut_us: int) -> None:
            """Every event before device time ``cut_us`` is out: say so (the slicer closes its window now)."""
            if not pace(cut_us):
                return
            # the grid point the cut was made for (a live clock fit may have moved a few us since)
            w = max((host_of(cut_us) + grid_ns // 2) // grid_ns * grid_ns, floor_ns[0])
            floor_ns[0] = w
            self.pub_events.publish(watermark_msg(w, self.p.frame_id))
            sent(self.pub_events)
            self.counts["watermarks"] += 1
            self.diag.count("watermarks")

        try:
            while not self._stop.is_set():
                items = source.read(0.05)
                if items is None:  # end of file
                    emit(packer.flush())
                    problem = getattr(source, "damage", None)
                    if problem:
                        self.diag.status("WARN", f"file damaged: {problem}")
                        self.get_logger().warning(f"{self.p.path}: {problem}; every complete event was published")
                    else:
                        self.diag.status("OK", "end of file")
                    return bool(self.p.loop)
                now = self.now_ns()
                for it in items:
                    if isinstance(it, EventsItem):
                        ev = it.events
                        if len(ev) == 0:
                            continue
                        if live:
                            clock.add(int(ev["t"][0]), now)
                        for pkt, cut in packer.push_marked(ev):
                            emit(pkt)
                            if cut is not None:
                                watermark(cut)
                    elif isinstance(it, FrameItem):
                        if not pace(it.t_us):
                            return False
                        if live and (not self.HAS_EVENTS or clock.fit is None):
                            clock.add(it.t_us, now)  # frame-only cameras pair their frames with arrival times
                        enc = it.encoding
                        stamp = stamp_of(it.t_us)
                        self.image_publisher().publish(image_to_msg(it.image, enc, stamp, self.p.frame_id))
                        sent(self.pub_image)
                        if not self.HAS_EVENTS:
                            self.pub_tref.publish(time_reference_msg(self.now_ns(), int(it.t_us), info.serial,
                                                                     self.p.frame_id))
                            sent(self.pub_tref)
                        self.counts["frames"] += 1
                        self.diag.count("frames")
                    elif isinstance(it, ImuItem):
                        if not pace(it.t_us):
                            return False
                        if live and clock.fit is None:
                            clock.add(it.t_us, now)
                        self.imu_publisher().publish(self._imu_msg(it, stamp_of(it.t_us)))
                        sent(self.pub_imu)
                        self.counts["imu"] += 1
                        self.diag.count("imu")
                    elif isinstance(it, TriggerItem):
                        if live and clock.fit is None:
                            clock.add(it.t_us, now)
                        # hardware trigger edges: header.stamp = mapped ROS time, time_ref = device time
                        edge = f"{info.serial}/ch{it.channel}/{'rise' if it.value else 'fall'}"
                        self.pub_trig.publish(time_reference_msg(stamp_of(it.t_us), int(it.t_us), edge,
                                                                 self.p.frame_id))
                        sent(self.pub_trig)
                        self.counts["triggers"] += 1
                        self.diag.count("triggers")
                if self.native is not None and items:
                    self.native.write(items)
                # a live stream that pauses must not hold back its last partial packet
                if live and packer.pending and time.monotonic() - last_flush > self.p.packet_period_ms / 1000:
                    emit(packer.flush())
                if items:
                    last_flush = time.monotonic()
                if live and clock.fit is not None:
                    self.diag.set("clock_drift_ppm", clock.fit.drift_ppm)
        finally:
            # a source that failed (unplugged camera, read error) still delivers the events it had read
            if packer.pending and not self._stop.is_set():
                try:
                    emit(packer.flush())
                except Exception as err:  # noqa: BLE001 - never mask the source's own error
                    self.get_logger().error(f"could not publish the last packet: {err}")
        return False

    def _imu_msg(self, it: ImuItem, stamp_ns: int) -> Imu:
        m = Imu()
        m.header.stamp = ns_to_stamp(stamp_ns)
        m.header.frame_id = self.p.frame_id.replace("_optical", "_imu")
        a, g = np.asarray(it.accel, dtype=float), np.asarray(it.gyro, dtype=float)
        m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (float(v) for v in a)
        m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(v) for v in g)
        m.orientation_covariance[0] = -1.0  # no orientation estimate
        return m

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self.native is not None:
            try:
                self.native.close()
            finally:
                self.native = None

"""Session recorder: the session topics, raw (no deserialisation), into a rosbag2 MCAP with session.yaml and
markers.csv.

Topics: ``topics`` when given, else for each camera in ``cameras`` its ``events``, ``camera_info``,
``time_reference`` and ``face_roi``, plus ``/davis/image_raw``, ``/davis/imu``, ``/webcam/image_raw``,
``/protocol/marker`` and ``/diagnostics``. Each topic's type is discovered from the graph when its first
publisher appears (checked every ``discovery_period_s``), and the subscription's QoS follows the publishers
(reliable unless one is best-effort, transient-local when all are), as ``ros2 bag record`` does.

Messages are written with their receive time (the node's clock, so bag time under ``use_sim_time``) into
chunks of ``chunk_size_kb``; a timer closes the pending chunk every ``flush_period_s``, so a killed recorder
loses at most that much (``evmicro bag repair`` recovers the rest). ``split: segment`` starts a new bag file
at each countdown marker. The free disk space is checked at start (refuse below ``min_free_gb``) and every
``disk_check_period_s`` (stop cleanly, ERROR on /diagnostics). ``close()`` (Ctrl-C, SIGTERM, end of the graph)
flushes and writes the MCAP summary, metadata.yaml and session.yaml.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ros2_evmicro import __version__
from ros2_evmicro.core.bagio import BagError, BagWriter, qos_profile
from ros2_evmicro.core.session import MarkerTable, SessionInfo, free_gb, new_session_dir
from ros2_evmicro.ros.node import EvmicroNode, run_node
from ros2_evmicro.specs.recorder import SPEC

__all__ = ["NODE", "Recorder", "default_topics", "main"]


def default_topics(cameras: list[str], markers_topic: str = "/protocol/marker") -> list[str]:
    """The session topics recorded for a camera list (order: per camera, then the shared ones)."""
    out: list[str] = []
    for cam in cameras:
        out += [f"/{cam}/events", f"/{cam}/camera_info", f"/{cam}/time_reference"]
    if "davis" in cameras:
        out += ["/davis/image_raw", "/davis/imu"]
    if "webcam" in cameras:
        out.append("/webcam/image_raw")
    out += [f"/{cam}/face_roi" for cam in cameras]
    out += [markers_topic, "/diagnostics"]
    seen: set[str] = set()
    return [t for t in out if not (t in seen or seen.add(t))]


def _msg_class(type_name: str):
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class Recorder(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.p
        given = [t for t in p.topics if t]
        cams = [c for c in p.cameras if c]
        self.topics = (
            [t if t.startswith("/") else "/" + t for t in given]
            if given
            else default_topics(cams, p.markers_topic)
        )
        self.writer: BagWriter | None = None
        self.markers: MarkerTable | None = None
        self.info: SessionInfo | None = None
        self.folder: Path | None = None
        self.subs: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.recording = False
        self.finished = False
        self.done_seen = False
        self.last_error = ""
        self._last_flush = time.monotonic()
        self._unsupported: set[str] = set()
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/stop", self._srv_stop)
        self.discovery_timer = self.create_timer(p.discovery_period_s, self._discover)
        self.flush_timer = self.create_timer(min(p.flush_period_s, 1.0), self._flush_tick)
        self.disk_timer = self.create_timer(p.disk_check_period_s, self._check_disk)
        self.diag.set("recording", False)
        if p.autostart:
            ok, msg = self.start()
            if not ok:
                self.get_logger().error(msg)

    # -- start / stop -------------------------------------------------------------------------------------
    def start(self) -> tuple[bool, str]:
        """Open a new session folder and subscribe; returns (success, message)."""
        p = self.p
        if self.recording:
            return False, f"already recording into {self.folder}"
        free = free_gb(p.out_dir)
        self.diag.set("free_gb", round(free, 2))
        if free < p.min_free_gb:
            msg = (
                f"refusing to record: {free:.1f} GiB free under {p.out_dir}, "
                f"below min_free_gb {p.min_free_gb}"
            )
            self.diag.status("ERROR", msg)
            self.last_error = msg
            return False, msg
        folder = new_session_dir(p.out_dir, p.subject, p.session)
        try:
            self.writer = BagWriter(
                folder,
                p.storage,
                chunk_size=p.chunk_size_kb * 1024,
                compression=p.compression,
                crc=False,
                fsync_period_s=p.fsync_period_s,
                custom_data={"subject": p.subject, "session": p.session, "software_version": __version__},
            )
        except BagError as err:
            msg = f"cannot start recording: {err}"
            self.diag.status("ERROR", msg)
            self.last_error = msg
            return False, msg
        self.folder = folder
        self.markers = MarkerTable(folder / "markers.csv")
        self.info = SessionInfo(
            subject=p.subject,
            session=p.session,
            age_range=p.age_range,
            sex=p.sex,
            lux=p.lux,
            lighting=p.lighting,
            operator=p.operator,
            notes=p.notes,
            calibration_files=[c for c in p.calibration_files if c],
            software_version=__version__,
            cameras=[c for c in p.cameras if c],
            split=p.split,
            start_ns=self.now_ns(),
            status="recording",
        )
        self.counts = {}
        self.recording = True
        self.info.files = [{"path": self.writer.current_file, "segment": "", "messages": 0}]
        self.info.write(folder)
        self.diag.status("OK", f"recording into {folder}")
        self.diag.set("recording", True)
        self.diag.set("folder", str(folder))
        self._discover()
        self.get_logger().info(f"recording {len(self.topics)} topics into {folder}")
        return True, f"recording into {folder}"

    def stop(self, status: str = "complete") -> tuple[bool, str]:
        """Unsubscribe, close the bag and write session.yaml; returns (success, message)."""
        if not self.recording:
            return False, "not recording"
        self.recording = False
        for sub in self.subs.values():
            self.destroy_subscription(sub)
        self.subs = {}
        w = self.writer
        try:
            w.close()
        finally:
            self.markers.close()
        info = self.info
        info.end_ns = self.now_ns()
        info.status = status
        info.topics = {t: {"type": c.msgtype, "count": c.count} for t, c in w.conns.items()}
        msgs = {f.path: f.count for f in w.files}
        for f in info.files:
            f["messages"] = msgs.get(f["path"], 0)
        info.markers = self.markers.rows
        info.write(self.folder)
        self.diag.set("recording", False)
        n = sum(self.counts.values())
        self.get_logger().info(f"stopped ({status}): {n} messages in {self.folder}")
        return True, f"stopped ({status}): {n} messages in {self.folder}"

    def _srv_start(self, _req, resp):
        resp.success, resp.message = self.start()
        return resp

    def _srv_stop(self, _req, resp):
        resp.success, resp.message = self.stop("stopped")
        return resp

    # -- subscriptions ------------------------------------------------------------------------------------
    def _qos(self, topic: str) -> tuple[QoSProfile, object]:
        pubs = self.get_publishers_info_by_topic(topic)
        reliable = (
            all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in pubs) if pubs else True
        )
        latched = bool(pubs) and all(
            i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in pubs
        )
        depth = self.p.events_depth if topic.endswith("/events") else self.p.depth
        qos = QoSProfile(
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
        )
        return qos, qos_profile(reliable, depth, latched)

    def _discover(self) -> None:
        if not self.recording:
            return
        pending = [t for t in self.topics if t not in self.subs]
        if not pending:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in pending:
            if topic not in types or not types[topic]:
                continue
            type_name = types[topic][0]
            try:
                cls = _msg_class(type_name)
                qos, bag_qos = self._qos(topic)
                self.writer.add_topic(topic, type_name, bag_qos)
            except (BagError, ImportError, AttributeError, ValueError) as err:
                if topic not in self._unsupported:
                    self._unsupported.add(topic)
                    self.diag.count("unsupported_topics")
                    self.get_logger().error(f"cannot record {topic} ({type_name}): {err}")
                continue
            self.subs[topic] = self.create_subscription(cls, topic, self._callback(topic), qos, raw=True)
            self.counts.setdefault(topic, 0)
            self.get_logger().info(f"recording {topic} ({type_name})")
        self.diag.set("topics_recorded", len(self.subs))
        self.diag.set("topics_waiting", len([t for t in self.topics if t not in self.subs]))

    def _callback(self, topic: str):
        is_marker = topic == self.p.markers_topic
        diag_key = f"messages{topic}"

        def cb(raw: bytes) -> None:
            if not self.recording:
                return
            t = self.now_ns()
            if is_marker:
                self._on_marker(raw, t)
            self.writer.write_raw(topic, t, raw)
            self.counts[topic] += 1
            self.diag.count(diag_key)
            self.diag.count("bytes", len(raw))

        return self.guard(cb, topic.strip("/").replace("/", "_"))

    def _on_marker(self, raw: bytes, t_ns: int) -> None:
        try:
            marker = json.loads(deserialize_message(raw, String).data)
        except (json.JSONDecodeError, ValueError, TypeError) as err:
            self.diag.count("bad_markers")
            self.get_logger().warning(f"a protocol marker is not JSON: {err}", throttle_duration_sec=2.0)
            return
        if not isinstance(marker, dict):
            self.diag.count("bad_markers")
            return
        if self.p.split == "segment" and marker.get("phase") == "countdown" and self.p.storage == "mcap":
            self.writer.split()
            self.info.files.append(
                {"path": self.writer.current_file, "segment": marker.get("segment", ""), "messages": 0}
            )
            self.info.write(self.folder)
        self.markers.append(marker, t_ns, self.writer.current_file)
        if marker.get("phase") == "done":
            self.done_seen = True
        if marker.get("phase") == "done" and self.p.stop_on_done:
            self.create_timer(0.5, self._stop_after_done)

    def _stop_after_done(self) -> None:
        if self.recording:
            self.stop("complete")
        self.finished = True

    # -- timers -------------------------------------------------------------------------------------------
    def _flush_tick(self) -> None:
        if not self.recording:
            return
        now = time.monotonic()
        if now - self._last_flush >= self.p.flush_period_s:
            self.writer.flush()
            self._last_flush = now
        self.diag.set("written", self.writer.message_count)
        self.diag.set("flushed", self.writer.flushed_count)

    def _check_disk(self) -> None:
        out = self.folder or Path(self.p.out_dir)
        free = free_gb(out)
        self.diag.set("free_gb", round(free, 2))
        if self.recording and free < self.p.min_free_gb:
            msg = f"stopped: {free:.2f} GiB free, below min_free_gb {self.p.min_free_gb}"
            self.get_logger().error(msg)
            self.stop("stopped_low_disk")
            self.diag.status("ERROR", msg)

    def close(self) -> None:
        """Flush and close the bag (called on Ctrl-C, SIGTERM and at the end of a graph)."""
        if self.recording:
            self.stop("complete" if self.done_seen else "interrupted")


NODE = Recorder


def main(args=None) -> int:
    return run_node(Recorder, args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Simulated rig node: one synthetic subject, the cameras of the paper's rig, the drivers' topics.

Publishes, for each simulated camera, what its driver would (``/davis/events``, ``/davis/image_raw``,
``/davis/imu``, ``/evk4/events``, ``/webcam/image_raw``, ``/<cam>/camera_info``, ``/<cam>/time_reference``),
plus ``protocol/marker`` for the scenario's segments and ground truth on ``sim/truth`` (JSON: performed AUs
and each camera's face box). Scene time starts at 0 when the node starts and maps to ROS time as
``start + scene time`` (the sim is its own device clock). A reader thread paces the stream at
``playback_rate``; when it falls behind real time the lag is reported on diagnostics.
"""

from __future__ import annotations

import heapq
import json
import math
import threading
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, Imu, PointCloud2, TimeReference
from std_msgs.msg import String

from ros2_evmicro.core.clock import Pacer
from ros2_evmicro.core.events import EventPacket
from ros2_evmicro.core.sim import SimRig
from ros2_evmicro.core.sim.scenarios import make_scenario
from ros2_evmicro.core.sim.timeline import Timeline, random_take
from ros2_evmicro.ros.convert import (
    camera_info_msg,
    events_to_msg,
    image_to_msg,
    marker_from_msg,
    marker_to_msg,
    ns_to_stamp,
    time_reference_msg,
    warm_up,
    watermark_msg,
)
from ros2_evmicro.ros.node import EVENTS_QOS, LATCHED_QOS, MARKER_QOS, SENSOR_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.sim_rig import SPEC

FRAME_IDS = {"davis": "davis346_optical", "evk4": "evk4_optical", "webcam": "webcam_optical"}


class SimRigNode(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        p = self.p
        bad = [c for c in p.cameras if c not in FRAME_IDS]
        if bad or not p.cameras:
            raise ValueError(f"cameras must be among {list(FRAME_IDS)}, got {p.cameras}")
        self.finished = False
        self.ended = False
        warm_up()  # the event packing kernel, not on the first packet (convert.warm_up)
        scen = "idle" if p.scenario == "follow" else p.scenario
        self.protocol = make_scenario(scen, p.seed, time_scale=p.time_scale)
        self.rig = SimRig(p.subject_seed, lux=p.lux, cameras=tuple(p.cameras), timeline=self.protocol,
                          seed=p.seed, aps=p.aps, imu=p.imu)
        dur = p.duration_s or (self.protocol.duration_s + 1.0 if scen in ("demo", "protocol") else math.inf)
        self.duration_s = dur
        self.pub: dict[str, Any] = {}
        for cam in p.cameras:
            if cam in ("davis", "evk4"):
                self.pub[cam] = self.create_publisher(PointCloud2, f"/{cam}/events", EVENTS_QOS)
            self.pub[f"{cam}_info"] = self.create_publisher(CameraInfo, f"/{cam}/camera_info", LATCHED_QOS)
            self.pub[f"{cam}_tref"] = self.create_publisher(TimeReference, f"/{cam}/time_reference", SENSOR_QOS)
        if "davis" in p.cameras and p.aps:
            self.pub["davis_aps"] = self.create_publisher(Image, "/davis/image_raw", SENSOR_QOS)
        if "davis" in p.cameras and p.imu:
            self.pub["davis_imu"] = self.create_publisher(Imu, "/davis/imu", SENSOR_QOS)
        if "webcam" in p.cameras:
            self.pub["webcam"] = self.create_publisher(Image, "/webcam/image_raw", SENSOR_QOS)
        self.pub_marker = self.create_publisher(String, "protocol/marker", MARKER_QOS)
        self.pub_truth = self.create_publisher(String, "sim/truth", SENSOR_QOS)
        if p.scenario == "follow":
            self._rng = np.random.default_rng([p.seed, 0xF011])
            self.create_subscription(String, "protocol/marker", self.guard(self._on_marker, "marker"), SENSOR_QOS)
        self.t0_ns = self.now_ns() // 1000 * 1000  # on a whole microsecond: scene us + t0 us = ROS us
        self._t0_us = self.t0_ns // 1000
        self._grid_us = int(round(p.watermark_grid_ms * 1000))
        self.scene_us = 0
        self.counts = {"events": 0, "packets": 0, "watermarks": 0, "frames": 0, "imu": 0}
        for cam in p.cameras:
            w, h = self.rig.sensor_size(cam)
            self.pub[f"{cam}_info"].publish(camera_info_msg(w, h, self.t0_ns, FRAME_IDS[cam]))
        self._markers = list(self.protocol.markers(self.t0_ns)) if p.publish_markers and p.scenario != "follow" else []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim_rig", daemon=True)
        self._thread.start()

    # follow mode: perform what the protocol player asks for, a human-like reaction time after the cue
    def _on_marker(self, msg: String) -> None:
        m = marker_from_msg(msg)
        if m.get("phase") != "perform" or "au" not in m:
            return
        t = self.scene_us / 1e6 + 0.05
        act = random_take(int(m["au"]), self._rng, (t + 0.25, t + self.p.follow_perform_s - 0.2))
        tl: Timeline = self.rig.timeline
        tl.actions = tuple(sorted((*tl.actions, act), key=lambda a: a.t_start_s))

    def _stamp(self, t_us: int) -> int:
        return self.t0_ns + int(t_us) * 1000

    def _actions(self, kind: str, item: tuple) -> list[tuple[int, tuple]]:
        """(due scene time, what to publish) for one stream item. An event packet goes out once its last event
        has happened, as a camera's would (nothing stamped in the future of the clock), cut at each window
        boundary (``watermark_grid_ms`` of ROS time) and followed there by a watermark; the rest at their time."""
        if kind not in ("davis", "evk4"):
            return [(int(item[1]), (kind, item))]
        pkt: EventPacket = item[1]
        a, b = int(pkt.t_start), int(pkt.t_end if pkt.t_end is not None else pkt.t_start)
        edges = [a]
        g = self._grid_us
        if g > 0:  # grid points s with a < s <= b: t0_us + s is a multiple of the grid
            k0, k1 = (self._t0_us + a) // g + 1, (self._t0_us + b) // g
            edges += [k * g - self._t0_us for k in range(k0, k1 + 1)]
        if edges[-1] != b:
            edges.append(b)
        t = pkt.events["t"]
        cuts = np.searchsorted(t, edges, side="left")
        cuts[-1] = len(t)
        out: list[tuple[int, tuple]] = []
        for i in range(1, len(edges)):
            out.append((edges[i], ("events", (kind, pkt.events[cuts[i - 1]:cuts[i]], edges[i - 1]))))
            if g > 0 and (self._t0_us + edges[i]) % g == 0:
                out.append((edges[i], ("watermark", (kind, edges[i]))))
        return out

    def _run(self) -> None:
        pacer = Pacer(self.p.playback_rate)
        pacer.start(0)
        due: list[tuple[int, int, tuple]] = []  # heap of (due scene us, order, action)
        seq = 0

        def release(until_us: float) -> bool:
            """Publish every action due by ``until_us`` (paced); False when the node stops."""
            while due and due[0][0] <= until_us:
                t_us, _, action = heapq.heappop(due)
                while not pacer.wait(t_us):
                    if self._stop.is_set():
                        return False
                self.scene_us = t_us
                lag = -pacer.due_in_s(t_us)
                if self.p.playback_rate > 0:
                    self.diag.set("behind_real_time_ms", max(0.0, lag * 1000 * self.p.playback_rate))
                while self._markers and self._markers[0]["stamp_ns"] <= self._stamp(t_us):
                    self.pub_marker.publish(marker_to_msg(self._markers.pop(0)))
                self._publish(*action)
            return True

        try:
            for item in self.rig.stream(self.p.packet_period_ms, self.duration_s):
                if self._stop.is_set():
                    break
                kind = item[0]
                t_us = item[1].t_start if isinstance(item[1], EventPacket) else int(item[1])
                for when, action in self._actions(kind, item):
                    heapq.heappush(due, (when, seq, action))
                    seq += 1
                # the stream comes in time order: what is due by this item's time can go out
                if not release(t_us):
                    return
            if not self._stop.is_set() and not release(math.inf):
                return
            for m in self._markers:
                self.pub_marker.publish(marker_to_msg(m))
            self._markers = []
            self.diag.status("OK", "scenario finished")
        except Exception as err:  # noqa: BLE001 - report, never a traceback in the executor
            self.diag.status("ERROR", f"simulation failed: {err}")
            self.get_logger().error(f"simulation failed: {err}")
        finally:
            self.ended = True

    def _publish(self, kind: str, item: tuple) -> None:
        if kind == "watermark":
            cam, t_us = item
            self.pub[cam].publish(watermark_msg(self._stamp(t_us), FRAME_IDS[cam]))
            self.counts["watermarks"] += 1
            return
        if kind == "events":
            cam, ev, t_start = item
            self.pub[f"{cam}_tref"].publish(
                time_reference_msg(self.now_ns(), int(t_start), f"sim_{cam}", FRAME_IDS[cam]))
            if len(ev) == 0:
                return
            self.pub[cam].publish(events_to_msg(ev, stamp_ns=self._stamp(int(ev["t"][0])), t_ref_us=int(ev["t"][0]),
                                                frame_id=FRAME_IDS[cam]))
            self.counts["events"] += len(ev)
            self.counts["packets"] += 1
            self.diag.count(f"{cam}_events", len(ev))
        elif kind in ("davis_aps", "webcam"):
            enc = "mono8" if kind == "davis_aps" else "bgr8"
            frame_id = FRAME_IDS["davis" if kind == "davis_aps" else "webcam"]
            self.pub[kind].publish(image_to_msg(item[2], enc, self._stamp(item[1]), frame_id))
            self.counts["frames"] += 1
            self.diag.count(f"{kind}_frames")
        elif kind == "davis_imu":
            m = Imu()
            m.header.stamp = ns_to_stamp(self._stamp(item[1]))
            m.header.frame_id = "davis346_imu"
            (m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z) = (float(v) for v in item[2])
            (m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z) = (float(v) for v in item[3])
            m.orientation_covariance[0] = -1.0
            self.pub["davis_imu"].publish(m)
            self.counts["imu"] += 1
        elif kind == "truth" and self.p.publish_truth and item[1] % 33_000 < self.p.packet_period_ms * 1000:
            gt = item[2]
            self.pub_truth.publish(String(data=json.dumps({
                "stamp_ns": self._stamp(item[1]), "performed": list(gt.performed),
                "phase": gt.phase, "segment": gt.segment,
                "face_boxes": {k: [round(float(v), 2) for v in b] for k, b in gt.face_boxes.items()}})))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


NODE = SimRigNode


def main(args=None) -> int:
    return run_node(SimRigNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

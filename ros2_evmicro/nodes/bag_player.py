"""Bag player node: republishes a session bag (or a foreign EventPacket bag) on its original timing.

What it publishes (:func:`ros2_evmicro.core.replay.replay_stream`): every played topic under its bag name,
as the raw CDR bytes of the bag (no deserialisation; the type's Python class only creates the publisher);
``event_camera_msgs/msg/EventPacket`` topics decoded into the contract's ``/<cam>/events`` PointCloud2 (with a
latched ``/<cam>/camera_info`` of the packet size when the bag has none). QoS: ``camera_info`` latched
(transient local), ``*/events`` the events QoS (reliable, depth 1000), the rest reliable depth 100.

Timing:
- ``rate`` > 0: a thread releases each message when ``(bag time - first bag time) / rate`` has passed on the
  wall clock; lag behind that schedule is reported on diagnostics.
- ``rate`` 0 with ``lockstep`` (default): a timer of period 0 publishes ``burst`` messages per executor
  cycle. A single-threaded executor takes at most one message per subscription per cycle, in the order
  nodes and subscriptions were created, so with ``burst`` 1 nodes in the same process (``evmicro run
  replay``) see the bag's messages in bag order across topics and keep-last queues never overflow: the
  replay is lossless and deterministic, as fast as the slowest callback allows.
- ``rate`` 0 without lockstep: a thread publishes as fast as reliable subscribers acknowledge (it waits for
  every publisher's acknowledgements each half queue depth, as the drivers do).

``publish_clock``: ``/clock`` carries the bag time of each message just before it, and ``clock_rate_hz``
ticks in between (rate > 0), so nodes with ``use_sim_time`` run on bag time. Before playing, the player
waits (``wait_for_subscribers_s``) for subscribers of its topics and of ``wait_for_topics``. At the end it
keeps running ``drain_s`` and then sets ``finished`` (``evmicro run replay`` ends), unless ``loop``.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, PointCloud2

from ros2_evmicro.core.bagio import BagError
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.core.replay import (
    CAMERA_INFO_TYPE,
    EVENT_PACKET_TYPE,
    ReplayError,
    ReplayItem,
    bag_topics,
    foreign_camera,
    parse_camera_map,
    replay_stream,
)
from ros2_evmicro.ros.convert import camera_info_msg, events_to_msg, ns_to_stamp, warm_up
from ros2_evmicro.ros.node import EVENTS_QOS, LATCHED_QOS, MARKER_QOS, SENSOR_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.bag_player import SPEC

__all__ = ["NODE", "BagPlayer", "main"]

CLOCK_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)


def _msg_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class BagPlayer(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        p = self.p
        if not p.bag:
            raise ParamError(f"node {self.get_name()}: bag is empty; give bag:=SESSION_FOLDER")
        warm_up()  # the event packing kernel, not on the first packet (convert.warm_up)
        try:
            types = bag_topics(p.bag)
            self.camera_map = parse_camera_map(p.camera)
            wanted = [t for t in p.topics if t]
            missing = [t for t in wanted if t not in types]
            if missing:
                raise ReplayError(f"bag {p.bag} has no topic {missing}; it has {sorted(types)}")
            if p.end_s and p.end_s <= p.start_s:
                raise ReplayError(f"end_s {p.end_s} must be > start_s {p.start_s} (or 0 = the end)")
        except (BagError, ReplayError) as err:
            raise ParamError(f"node {self.get_name()}: {err}") from None
        self.finished = False
        self.ended = False
        self.pubs: dict[str, Any] = {}
        self.skipped_topics: list[str] = []
        self._info_sent: set[str] = set()
        self._foreign_cams: dict[str, tuple[int, int]] = {}
        played = wanted or sorted(types)
        for topic in played:
            self._make_publisher(topic, types[topic], types)
        self.pub_clock = self.create_publisher(Clock, "/clock", CLOCK_QOS) if p.publish_clock else None
        self.counts = {"messages": 0, "events": 0, "loops": 0}
        self._stop = threading.Event()
        self._it = None
        self._t_wait0 = time.monotonic()
        self._main_ready_at: float | None = None
        self._started = False
        self._end_wall: float | None = None
        self.diag.set("bag", str(p.bag))
        self.diag.status("OK", f"waiting for subscribers of {len(self.pubs)} topics")
        self._thread: threading.Thread | None = None
        self._timer = None
        if p.rate == 0 and p.lockstep:
            self._timer = self.create_timer(0.0, self._lockstep_tick)
        else:
            self._thread = threading.Thread(target=self._run_thread, name="bag_player", daemon=True)
            self._thread.start()

    # -- publishers ---------------------------------------------------------------------------------------
    def _make_publisher(self, topic: str, msgtype: str, types: dict[str, str]) -> None:
        if msgtype == EVENT_PACKET_TYPE:
            from ros2_evmicro.core.codecs import CodecError, read_eventpacket_bag

            try:
                first = next(read_eventpacket_bag(self.p.bag, topic=topic))
            except (StopIteration, CodecError) as err:
                self._skip(topic, f"cannot decode its EventPacket messages: {err or 'no message'}")
                return
            try:
                cam = foreign_camera(topic, first.info.width, first.info.height, self.camera_map)
            except ReplayError as err:
                raise ParamError(f"node {self.get_name()}: {err}") from None
            out = f"/{cam}/events"
            self.pubs[out] = self.create_publisher(PointCloud2, out, EVENTS_QOS)
            info = f"/{cam}/camera_info"
            if info not in types:  # the slicer learns the sensor size from camera_info
                self.pubs[info] = self.create_publisher(CameraInfo, info, LATCHED_QOS)
                self._foreign_cams[cam] = (first.info.width, first.info.height)
            return
        try:
            cls = _msg_class(msgtype)
        except (ImportError, AttributeError, ValueError) as err:
            self._skip(topic, f"type {msgtype} is not available ({err})")
            return
        if msgtype == CAMERA_INFO_TYPE:
            qos = LATCHED_QOS
        elif topic.endswith("/events"):
            qos = EVENTS_QOS
        elif topic.endswith("protocol/marker"):
            qos = MARKER_QOS
        else:
            qos = SENSOR_QOS
        self.pubs[topic] = self.create_publisher(cls, topic, qos)

    def _skip(self, topic: str, why: str) -> None:
        self.skipped_topics.append(topic)
        self.diag.count("skipped_topics")
        self.get_logger().warning(f"not playing {topic}: {why}")

    # -- waiting for subscribers ----------------------------------------------------------------------------
    def _subscribers_ready(self) -> bool:
        """Non-blocking: True once playing may start (see ``wait_for_subscribers_s``)."""
        p = self.p
        if p.wait_for_subscribers_s <= 0:
            return True
        now = time.monotonic()
        extra = all(self.count_subscribers(t) > 0 for t in p.wait_for_topics if t)
        pubs = list(self.pubs.values())
        if extra and all(pub.get_subscription_count() > 0 for pub in pubs):
            return True
        main = [pub for t, pub in self.pubs.items() if t.endswith("/events")] or pubs
        if extra and all(pub.get_subscription_count() > 0 for pub in main):
            if self._main_ready_at is None:
                self._main_ready_at = now
            if now - self._main_ready_at >= 1.0:
                return True
        if now - self._t_wait0 >= p.wait_for_subscribers_s:
            lonely = [t for t, pub in self.pubs.items() if pub.get_subscription_count() == 0]
            lonely += [t for t in p.wait_for_topics if t and self.count_subscribers(t) == 0]
            if lonely:
                self.get_logger().info(f"playing; no subscriber after {p.wait_for_subscribers_s:g} s on: "
                                       f"{', '.join(lonely)}")
            return True
        return False

    # -- publishing -----------------------------------------------------------------------------------------
    def _stream(self):
        p = self.p
        return replay_stream(p.bag, topics=[t for t in p.topics if t] or None, start_s=p.start_s, end_s=p.end_s,
                             camera_map=self.camera_map)

    def _send_clock(self, t_ns: int) -> None:
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=ns_to_stamp(int(t_ns))))

    def _publish(self, item: ReplayItem) -> Any:
        """Publish one item; returns the publisher used (None when its topic is not played)."""
        self._send_clock(item.t_ns)
        if item.events is not None:
            cam = item.topic.strip("/").split("/")[0]
            pub = self.pubs.get(item.topic)
            if pub is None:
                return None
            info = f"/{cam}/camera_info"
            if cam in self._foreign_cams and info not in self._info_sent:
                w, h = self._foreign_cams[cam]
                self.pubs[info].publish(camera_info_msg(w, h, item.t_ns, item.frame_id))
                self._info_sent.add(info)
            ev = item.events
            t0 = int(ev["t"][0])
            pub.publish(events_to_msg(ev, stamp_ns=t0 * 1000, t_ref_us=t0, frame_id=item.frame_id))
            self.counts["events"] += len(ev)
            self.diag.count("events", len(ev))
        else:
            pub = self.pubs.get(item.topic)
            if pub is None:
                return None
            pub.publish(item.raw)
        self.counts["messages"] += 1
        self.diag.count("messages")
        self.diag.set("bag_time_ns", int(item.t_ns))
        return pub

    def _at_end(self) -> bool:
        """After the last message: True when playing starts again (loop)."""
        if self.p.loop and not self._stop.is_set():
            self.counts["loops"] += 1
            self.diag.set("loops", self.counts["loops"])
            return True
        self.diag.status("OK", f"end of bag: {self.counts['messages']} messages played")
        self.ended = True
        return False

    # rate 0, lockstep: one timer callback per executor cycle
    def _lockstep_tick(self) -> None:
        try:
            self._lockstep_step()
        except Exception as err:  # noqa: BLE001 - a bad message or bag must not kill the executor
            self._fail(err)

    def _lockstep_step(self) -> None:
        if self._end_wall is not None:
            if time.monotonic() - self._end_wall >= self.p.drain_s:
                self.finished = True
                self._timer.cancel()
            return
        if not self._started:
            if not self._subscribers_ready():
                return
            self._started = True
            self.diag.status("OK", "playing (rate 0, lockstep)")
            self._it = iter(self._stream())
        for _ in range(self.p.burst):
            try:
                item = next(self._it)
            except StopIteration:
                if self._at_end():
                    self._it = iter(self._stream())
                    return
                self._end_wall = time.monotonic()
                return
            except (BagError, ReplayError) as err:
                self._fail(err)
                return
            self._publish(item)

    def _fail(self, err: Exception) -> None:
        self.diag.status("ERROR", f"playing failed: {err}")
        self.get_logger().error(f"playing {self.p.bag} failed: {err}")
        self.ended = True
        self._end_wall = time.monotonic()

    # rate > 0, or rate 0 without lockstep: a thread
    def _run_thread(self) -> None:
        p = self.p
        try:
            while not self._stop.is_set() and not self._subscribers_ready():
                self._stop.wait(0.01)
            self._started = True
            self.diag.status("OK", f"playing at rate {p.rate:g}")
            again = True
            while again and not self._stop.is_set():
                self._play_once()
                again = not self._stop.is_set() and self._at_end()
        except Exception as err:  # noqa: BLE001 - reported on diagnostics, never a silent dead thread
            self._fail(err)
        finally:
            self.ended = True
        if self._stop.wait(p.drain_s):
            return
        self.finished = True

    def _play_once(self) -> None:
        p = self.p
        rate = float(p.rate)
        clock_period = 1.0 / p.clock_rate_hz
        unacked: dict[int, int] = {}
        wall0 = time.monotonic()
        bag0: int | None = None
        last_clock = 0.0
        for item in self._stream():
            if self._stop.is_set():
                return
            if bag0 is None:
                bag0 = item.t_ns
            if rate > 0:
                due = wall0 + (item.t_ns - bag0) / 1e9 / rate
                while True:
                    now = time.monotonic()
                    if now >= due or self._stop.is_set():
                        break
                    if self.pub_clock is not None and now - last_clock >= clock_period:
                        self._send_clock(bag0 + int((now - wall0) * rate * 1e9))
                        last_clock = now
                    self._stop.wait(min(due - now, clock_period))
                self.diag.set("behind_schedule_ms", round(max(0.0, time.monotonic() - due) * 1e3, 3))
            pub = self._publish(item)
            if rate == 0 and pub is not None:  # lossless as fast as possible: wait for acknowledgements
                k = id(pub)
                unacked[k] = unacked.get(k, 0) + 1
                if unacked[k] >= max(1, pub.qos_profile.depth // 2):
                    pub.wait_for_all_acked(Duration(seconds=1.0))
                    unacked[k] = 0

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._timer is not None:
            self._timer.cancel()


NODE = BagPlayer


def main(args=None) -> int:
    return run_node(BagPlayer, args)


if __name__ == "__main__":
    raise SystemExit(main())

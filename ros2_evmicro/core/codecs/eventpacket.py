"""Bags of ``event_camera_msgs/msg/EventPacket`` (ros-event-camera drivers), read with ``rosbags``.

The message type is not in the standard message packages. Newer bags (and every MCAP file) embed its
definition and ``rosbags`` registers it from there; older sqlite3 bags do not, so the known definition
(:data:`EVENT_PACKET_MSG`) is registered as a fallback. No ROS installation is needed.

Three clocks (see ros-event-camera/event_camera_py): the bag time (when the recorder got the
message), the header stamp (the driver's ROS time of the packet) and the sensor time inside the payload
(what the events' ``t`` holds, int64 microseconds):

- ``evt3``: sensor time comes from the EVT 3.0 stream itself; ``time_base`` is undefined. One
  :class:`~ros2_evmicro.core.codecs.evt3.Evt3Decoder` is kept per topic across messages, because a
  message may start without a TIME_HIGH word, and the stream's 24-bit time is unwrapped across them.
- ``libcaer``: 8-byte polarity events with a 31-bit microsecond timestamp; ``time_base`` (ns) is the
  driver's start time plus the wrapped high bits. One
  :class:`~ros2_evmicro.core.codecs.libcaer.LibcaerDecoder` per topic unwraps the timestamp.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ros2_evmicro.core.codecs._common import TRIGGER_DTYPE, CodecError
from ros2_evmicro.core.codecs.evt3 import Evt3Decoder
from ros2_evmicro.core.codecs.libcaer import LibcaerDecoder

__all__ = [
    "EVENT_PACKET_MSG",
    "EVENT_PACKET_TYPE",
    "BagEventPacket",
    "EventPacketInfo",
    "read_eventpacket_bag",
    "write_eventpacket_bag",
]

EVENT_PACKET_TYPE = "event_camera_msgs/msg/EventPacket"
EVENT_PACKET_MSG = (
    "std_msgs/Header header\n"
    "uint32 height\n"
    "uint32 width\n"
    "uint64 seq\n"
    "uint64 time_base\n"
    "string encoding\n"
    "bool is_bigendian\n"
    "uint8[] events\n"
)
ENCODINGS = ("evt3", "libcaer")


@dataclass(frozen=True)
class EventPacketInfo:
    """The fields of one EventPacket message other than its payload."""

    topic: str
    frame_id: str
    width: int
    height: int
    seq: int
    time_base: int
    encoding: str
    is_bigendian: bool
    n_bytes: int


class BagEventPacket(NamedTuple):
    """One decoded message: bag time and header stamp (ns), the message info, events and triggers."""

    bag_time_ns: int
    header_stamp_ns: int
    info: EventPacketInfo
    events: np.ndarray
    triggers: np.ndarray


def _typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg(EVENT_PACKET_MSG, EVENT_PACKET_TYPE))
    return store


def read_eventpacket_bag(path: str | os.PathLike, topic: str | None = None) -> Iterator[BagEventPacket]:
    """Iterate over the EventPacket messages of a rosbag2 (sqlite3 or mcap) and decode them.

    ``topic`` picks one topic; by default every topic of type EventPacket is read (in bag order, one
    decoder per topic). Raises :class:`CodecError` when the bag cannot be opened, holds no EventPacket
    topic, the topic is of another type, or a message has an unsupported encoding.
    """
    try:
        from rosbags.highlevel import AnyReader
    except ImportError as err:  # pragma: no cover - rosbags is a dependency
        raise CodecError(f"reading bags needs the 'rosbags' package: {err}") from None
    path = Path(path)
    try:
        reader = AnyReader([path], default_typestore=_typestore())
        reader.open()
    except Exception as err:  # rosbags raises several unrelated classes
        raise CodecError(f"could not open bag {path}: {err}") from None
    try:
        cons = [c for c in reader.connections if c.msgtype == EVENT_PACKET_TYPE]
        if topic is not None:
            named = [c for c in reader.connections if c.topic == topic]
            if not named:
                topics = sorted({c.topic for c in reader.connections})
                raise CodecError(f"bag {path} has no topic {topic!r}; topics: {topics}")
            cons = [c for c in named if c.msgtype == EVENT_PACKET_TYPE]
            if not cons:
                raise CodecError(
                    f"topic {topic!r} of bag {path} has type {named[0].msgtype}, not {EVENT_PACKET_TYPE}"
                )
        if not cons:
            found = sorted({(c.topic, c.msgtype) for c in reader.connections})
            raise CodecError(f"bag {path} has no {EVENT_PACKET_TYPE} topic; it holds {found}")
        decoders: dict[str, Evt3Decoder | LibcaerDecoder] = {}
        for con, bag_time, raw in reader.messages(connections=cons):
            try:
                msg = reader.deserialize(raw, con.msgtype)
            except Exception as err:
                raise CodecError(
                    f"bag {path}, topic {con.topic}: could not deserialize a message: {err}"
                ) from None
            yield _decode_message(con.topic, int(bag_time), msg, decoders)
    finally:
        reader.close()


def _decode_message(
    topic: str, bag_time: int, msg, decoders: dict[str, Evt3Decoder | LibcaerDecoder]
) -> BagEventPacket:
    enc = str(msg.encoding)
    info = EventPacketInfo(
        topic=topic,
        frame_id=str(msg.header.frame_id),
        width=int(msg.width),
        height=int(msg.height),
        seq=int(msg.seq),
        time_base=int(msg.time_base),
        encoding=enc,
        is_bigendian=bool(msg.is_bigendian),
        n_bytes=len(msg.events),
    )
    stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    payload = np.asarray(msg.events, dtype=np.uint8)
    dec = decoders.get(topic)
    if enc not in ENCODINGS:
        raise CodecError(
            f"topic {topic}: EventPacket encoding {enc!r} is not supported (supported: {ENCODINGS})"
        )
    # enc is one of ENCODINGS here, so the decoder's class tells its encoding
    if (
        dec is None
        or isinstance(dec, Evt3Decoder) != (enc == "evt3")
        or (dec.width, dec.height) != (info.width, info.height)
    ):
        dec = (
            Evt3Decoder(info.width, info.height) if enc == "evt3" else LibcaerDecoder(info.width, info.height)
        )
        decoders[topic] = dec
    if info.is_bigendian:
        word = 2 if enc == "evt3" else 4
        if len(payload) % word:
            raise CodecError(f"topic {topic}: big-endian payload of {len(payload)} bytes is not whole words")
        if enc == "evt3":
            payload = payload.view(">u2").astype("<u2").view(np.uint8)
        else:
            payload = payload.view(">u4").astype("<u4").view(np.uint8)
    events = dec.decode(payload)
    triggers = dec.pop_triggers() if isinstance(dec, Evt3Decoder) else np.zeros(0, dtype=TRIGGER_DTYPE)
    return BagEventPacket(bag_time, stamp, info, events, triggers)


def write_eventpacket_bag(
    path: str | os.PathLike,
    packets,
    topic: str = "/event_camera/events",
    storage: str = "sqlite3",
    embed_definition: bool = True,
) -> Path:
    """Write EventPacket messages to a new rosbag2 folder (for tests and conversions).

    ``packets`` is an iterable of dicts with keys ``bag_time_ns``, ``stamp_ns``, ``payload`` (bytes),
    ``encoding``, ``width``, ``height`` and optional ``seq``, ``time_base``, ``frame_id``. ``storage`` is
    'sqlite3' or 'mcap'. ``embed_definition=False`` (sqlite3 only) removes the message definition
    afterwards, like the bags of older rosbag2 versions.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise CodecError(f"bag storage must be 'sqlite3' or 'mcap', got {storage!r}")
    store = _typestore()
    msg_cls = store.types[EVENT_PACKET_TYPE]
    header_cls = store.types["std_msgs/msg/Header"]
    time_cls = store.types["builtin_interfaces/msg/Time"]
    if not embed_definition and storage != "sqlite3":
        raise CodecError("embed_definition=False is supported for sqlite3 bags only")
    path = Path(path)
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        con = writer.add_connection(topic, EVENT_PACKET_TYPE, typestore=store)
        for k, pk in enumerate(packets):
            stamp = int(pk["stamp_ns"])
            msg = msg_cls(
                header=header_cls(
                    stamp=time_cls(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                    frame_id=str(pk.get("frame_id", "")),
                ),
                height=int(pk["height"]),
                width=int(pk["width"]),
                seq=int(pk.get("seq", k)),
                time_base=int(pk.get("time_base", 0)),
                encoding=str(pk["encoding"]),
                is_bigendian=False,
                events=np.frombuffer(bytes(pk["payload"]), dtype=np.uint8),
            )
            writer.write(con, int(pk["bag_time_ns"]), store.serialize_cdr(msg, EVENT_PACKET_TYPE))
    if not embed_definition:
        import sqlite3

        for db in path.glob("*.db3"):
            with sqlite3.connect(db) as dbcon:
                dbcon.execute("DELETE FROM message_definitions")
            dbcon.close()
    return path

"""rosbag2 reading and writing without rclpy: a crash-tolerant chunked MCAP writer, typed writers that
serialise numpy data into standard messages, a reader for MCAP and sqlite3 bags, and check/repair.

Writing
    :class:`BagWriter` writes a rosbag2 folder (``metadata.yaml`` version 8, the format ``ros2 bag info`` of
    Jazzy reads) with MCAP storage (or sqlite3 through rosbags). The MCAP files are chunked: messages collect
    in memory until ``chunk_size`` bytes, then the chunk and its message indexes go to the file in one
    ``writev``. A process killed at any moment therefore loses at most the chunk in memory (``flush()``
    closes it early; the recorder calls it periodically); a power loss loses what the kernel had not written
    yet (``fsync_period_s`` bounds that). Big messages are never copied into a chunk buffer: the chunk is
    written from the list of (record header, payload) pieces. ``split()`` starts the next file of the same
    bag (``<name>_<i>.mcap``), as ``ros2 bag record --max-bag-size`` does.

    The CDR bytes of the typed writers (``write_events``, ``write_image``, ...) come from the rosbags Jazzy
    typestore; they are byte-identical to ``rclpy.serialization.serialize_message`` (tested).

Reading
    :class:`BagReader` iterates raw messages ``(topic, msgtype, t_ns, raw)`` or decoded ones, for MCAP and
    sqlite3 bags; types missing from the typestore are registered from the definitions stored in the bag
    (and ``event_camera_msgs/msg/EventPacket`` from a built-in definition for old bags without them).
    Helpers return numpy: :meth:`BagReader.events`, :meth:`BagReader.images`, :meth:`BagReader.markers`.

Check and repair
    :func:`check_bag` scans every storage file and compares it with ``metadata.yaml``; :func:`repair_bag`
    makes a bag written by a killed process readable: each MCAP file without a footer is truncated after its
    last complete chunk, that chunk's message indexes are rebuilt, and the summary, footer and
    ``metadata.yaml`` are written, so every message of every complete chunk is recovered.

Time stamps are int64 nanoseconds (``t_ns``: the bag's receive/log time; ``stamp_ns``: ``header.stamp``).
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import numpy as np

from ros2_evmicro.core.au import AU_CODES, NUM_AUS
from ros2_evmicro.core.events import concat_events
from ros2_evmicro.core.wire import (
    POINT_FIELDS,
    POINT_STEP,
    WireError,
    check_point_fields,
    events_to_wire,
    image_buffer,
    image_view,
    wire_bytes,
    wire_to_events,
    wire_view,
)

if TYPE_CHECKING:  # rosbags is imported lazily at run time
    from rosbags.interfaces import Qos
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys.store import Typestore

__all__ = [
    "BagCheck",
    "BagError",
    "BagReader",
    "BagWriter",
    "FileCheck",
    "RawMessage",
    "check_bag",
    "find_bag_dir",
    "msgdef_for",
    "qos_profile",
    "repair_bag",
    "serialize",
    "typestore",
]

MCAP_MAGIC = b"\x89MCAP0\r\n"
ROSBAG2_VERSION: Final = 8
DEFAULT_CHUNK_SIZE = 768 * 1024  # rosbag2's MCAP default chunk size
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
_OP_MSG_INDEX, _OP_CHUNK_INDEX, _OP_STATISTICS, _OP_METADATA = 0x07, 0x08, 0x0B, 0x0C
_OP_METADATA_INDEX, _OP_SUMMARY_OFFSET, _OP_DATA_END = 0x0D, 0x0E, 0x0F
_MSG_HEAD = struct.Struct("<BQHIQQ")  # opcode, record length, channel, sequence, log time, publish time
_REC_HEAD = struct.Struct("<BQ")
_IOV_MAX = 512

EVENT_PACKET_MSGDEF = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nuint64 seq\nuint64 time_base\nstring encoding\n"
    "bool is_bigendian\nuint8[] events\n"
)
"""Definition of ``event_camera_msgs/msg/EventPacket`` (ros-event-camera), for bags that do not embed it."""
_FALLBACK_TYPES = {"event_camera_msgs/msg/EventPacket": EVENT_PACKET_MSGDEF}


class BagError(OSError):
    """A bag cannot be written, read, checked or repaired (the message says which file and why)."""


# -- typestore and serialisation ---------------------------------------------------------------------------

_TYPESTORE = None


def typestore():
    """The shared rosbags typestore (ROS 2 Jazzy message definitions)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def _msgtype(name: str) -> str:
    """'sensor_msgs/PointCloud2' or 'sensor_msgs/msg/PointCloud2' -> 'sensor_msgs/msg/PointCloud2'."""
    parts = name.strip("/").split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return "/".join(parts)


def msgdef_for(msgtype: str) -> tuple[str, str]:
    """(ros2msg definition text, RIHS01 type hash) of a type known to the typestore."""
    ts = typestore()
    msgtype = _msgtype(msgtype)
    if msgtype not in ts.types:
        raise BagError(
            f"message type {msgtype} is not in the Jazzy typestore; give its definition (msgdef=...)"
        )
    text, _ = ts.generate_msgdef(msgtype, ros_version=2)
    return text, ts.hash_rihs01(msgtype)


def serialize(msg: Any, msgtype: str) -> memoryview:
    """CDR bytes (little endian, with the 4-byte encapsulation header) of a rosbags message object."""
    return typestore().serialize_cdr(msg, _msgtype(msgtype))


def _t(name: str):
    return typestore().types[name]


def _stamp(ns: int):
    ns = int(ns)
    return _t("builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(stamp_ns: int, frame_id: str):
    return _t("std_msgs/msg/Header")(stamp=_stamp(stamp_ns), frame_id=frame_id)


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# -- QoS --------------------------------------------------------------------------------------------------


def qos_profile(reliable: bool = True, depth: int = 10, transient_local: bool = False):
    """A rosbags ``Qos`` (what ``offered_qos_profiles`` in metadata.yaml and the MCAP channels holds)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    inf = QosTime(0x7FFFFFFF, 0xFFFFFFFF)
    return Qos(
        QosHistory.KEEP_LAST,
        int(depth),
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        inf,
        inf,
        QosLiveliness.AUTOMATIC,
        inf,
        False,
    )


def _dump_qos(qos: Sequence[Any]) -> str:
    from rosbags.rosbag2.metadata import dump_qos_v8

    out = dump_qos_v8(list(qos))
    if isinstance(out, str):
        return out
    import yaml

    return yaml.safe_dump(out, default_flow_style=False).strip()  # pragma: no cover - rosbags returns str


# -- MCAP encoding helpers ----------------------------------------------------------------------------------


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def _map(d: dict[str, str]) -> bytes:
    body = b"".join(_str(k) + _str(v) for k, v in sorted(d.items()))
    return struct.pack("<I", len(body)) + body


def _record(op: int, body: bytes) -> bytes:
    return _REC_HEAD.pack(op, len(body)) + body


def _schema_record(sid: int, name: str, data: str) -> bytes:
    d = data.encode()
    return _record(
        _OP_SCHEMA, struct.pack("<H", sid) + _str(name) + _str("ros2msg") + struct.pack("<I", len(d)) + d
    )


def _channel_record(cid: int, sid: int, topic: str, metadata: dict[str, str]) -> bytes:
    return _record(_OP_CHANNEL, struct.pack("<HH", cid, sid) + _str(topic) + _str("cdr") + _map(metadata))


def _msg_index_record(cid: int, entries: Sequence[tuple[int, int]]) -> bytes:
    arr = np.asarray(entries, dtype="<u8").reshape(-1, 2)
    return _record(_OP_MSG_INDEX, struct.pack("<HI", cid, arr.nbytes) + arr.tobytes())


def _write_all(fd: int, pieces: Sequence[Any]) -> int:
    """Write every buffer of ``pieces`` to ``fd`` (``writev`` in batches, short writes resumed)."""
    total = 0
    views = [memoryview(p).cast("B") for p in pieces if len(memoryview(p).cast("B"))]
    i = 0
    while i < len(views):
        batch = views[i : i + _IOV_MAX]
        try:
            n = os.writev(fd, batch)
        except OSError as err:
            raise BagError(f"write failed: {err}") from None
        total += n
        # advance over the bytes written
        while batch and n >= len(batch[0]):
            n -= len(batch[0])
            batch.pop(0)
            i += 1
        if batch and n:
            views[i] = batch[0][n:]
    return total


@dataclass
class _Conn:
    cid: int
    topic: str
    msgtype: str
    msgdef: str
    type_hash: str
    qos: list
    count: int = 0


@dataclass
class _ChunkInfo:
    start_ns: int
    end_ns: int
    offset: int
    length: int
    index_offsets: dict[int, int]
    index_length: int
    compression: str
    compressed_size: int
    uncompressed_size: int


class _FileSink:
    """Sequential writer of one file, optionally on a background thread.

    With ``background`` the caller never waits for the disk (page-cache throttling, fdatasync): buffers are
    queued and written in order by a thread (``os.writev`` releases the GIL), up to ``max_pending`` bytes in
    flight, beyond which :meth:`emit` waits. ``written`` counts the messages whose bytes reached the kernel.
    """

    def __init__(self, path: Path, *, background: bool, fsync_period_s: float, max_pending: int):
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as err:
            raise BagError(f"cannot create {path}: {err.strerror}") from None
        self.path = path
        self.fsync_period_s = fsync_period_s
        self.max_pending = max_pending
        self.written = 0
        self.error: BaseException | None = None
        self._last_sync = time.monotonic()
        self._pending = 0
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"bagio-{path.name}", daemon=True)
            self._thread.start()

    def _write(self, pieces: Sequence[Any], count: int, sync: bool) -> None:
        _write_all(self.fd, pieces)
        self.written += count
        if sync or (self.fsync_period_s >= 0 and time.monotonic() - self._last_sync >= self.fsync_period_s):
            try:
                os.fdatasync(self.fd)
            except OSError:  # pragma: no cover - a file system without fdatasync
                pass
            self._last_sync = time.monotonic()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                item = self._queue[0]
            if item is None:
                return
            pieces, count, nbytes, sync = item
            try:
                if self.error is None:
                    self._write(pieces, count, sync)
            except BaseException as err:  # noqa: BLE001 - reported to the producer
                self.error = err
            with self._cv:
                self._queue.popleft()
                self._pending -= nbytes
                self._cv.notify_all()

    def _check(self) -> None:
        if self.error is not None:
            raise BagError(f"writing {self.path} failed: {self.error}")

    def emit(self, pieces: Sequence[Any], count: int = 0, sync: bool = False) -> None:
        self._check()
        if self._thread is None:
            self._write(pieces, count, sync)
            return
        nbytes = sum(memoryview(p).nbytes for p in pieces)
        with self._cv:
            while self._pending > 0 and self._pending + nbytes > self.max_pending and self.error is None:
                self._cv.wait()
            self._queue.append((pieces, count, nbytes, sync))
            self._pending += nbytes
            self._cv.notify_all()

    def drain(self) -> None:
        """Wait until every queued buffer is written."""
        if self._thread is not None:
            with self._cv:
                while self._queue:
                    self._cv.wait()
        self._check()

    def close(self) -> None:
        if self._thread is not None:
            with self._cv:
                self._queue.append(None)
                self._cv.notify_all()
            self._thread.join()
            self._thread = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._check()


class _McapFile:
    """One MCAP file being written (chunked, indexed, footer and summary at close)."""

    def __init__(
        self,
        path: Path,
        conns: Iterable[_Conn],
        schemas: dict[str, int],
        *,
        chunk_size: int,
        compression: str,
        crc: bool,
        fsync_period_s: float,
        background: bool = True,
        max_pending: int = 1 << 30,
    ):
        self.path = path
        self.sink = _FileSink(
            path, background=background, fsync_period_s=fsync_period_s, max_pending=max_pending
        )
        self.chunk_size = int(chunk_size)
        self.compression = compression
        self.crc = crc
        self.pos = 0
        self.chunks: list[_ChunkInfo] = []
        self.written_schemas: dict[int, tuple[str, str]] = {}
        self.written_channels: dict[int, bytes] = {}
        self.counts: dict[int, int] = defaultdict(int)
        self.start_ns = 2**63 - 1
        self.end_ns = 0
        self.message_count = 0
        self._schemas = schemas
        header = MCAP_MAGIC + _record(_OP_HEADER, _str("ros2") + _str("ros2_evmicro bagio"))
        self._emit([header])
        self._reset_chunk()
        for c in conns:
            self.add_conn(c)

    def _reset_chunk(self) -> None:
        self.c_pieces: list[Any] = []
        self.c_size = 0
        self.c_start = 2**63 - 1
        self.c_end = 0
        self.c_index: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.c_count = 0

    def _emit(self, pieces: Sequence[Any], count: int = 0, sync: bool = False) -> None:
        self.sink.emit(pieces, count, sync)
        self.pos += sum(memoryview(p).nbytes for p in pieces)

    @property
    def flushed_count(self) -> int:
        """Messages whose chunk reached the kernel (survives a kill of the process)."""
        return self.sink.written

    def _add_to_chunk(self, piece: bytes) -> None:
        self.c_pieces.append(piece)
        self.c_size += len(piece)

    def add_conn(self, c: _Conn) -> None:
        sid = self._schemas[c.msgtype]
        if sid not in self.written_schemas:
            self.written_schemas[sid] = (c.msgtype, c.msgdef)
            self._add_to_chunk(_schema_record(sid, c.msgtype, c.msgdef))
        meta = {"offered_qos_profiles": _dump_qos(c.qos), "topic_type_hash": c.type_hash}
        rec = _channel_record(c.cid, sid, c.topic, meta)
        self.written_channels[c.cid] = rec
        self._add_to_chunk(rec)

    def write(self, cid: int, t_ns: int, data) -> None:
        n = memoryview(data).nbytes
        seq = self.counts[cid] & 0xFFFFFFFF
        self.c_index[cid].append((t_ns, self.c_size))
        head = _MSG_HEAD.pack(_OP_MESSAGE, 22 + n, cid, seq, t_ns, t_ns)
        self.c_pieces.append(head)
        self.c_pieces.append(data)
        self.c_size += len(head) + n
        self.c_count += 1
        self.counts[cid] += 1
        self.message_count += 1
        if t_ns < self.c_start:
            self.c_start = t_ns
        if t_ns > self.c_end:
            self.c_end = t_ns
        if self.c_size >= self.chunk_size:
            self.close_chunk()

    def close_chunk(self) -> None:
        if not self.c_pieces:
            return
        usize = self.c_size
        crc = 0
        if self.crc:
            for p in self.c_pieces:
                crc = zlib.crc32(p, crc)
        start = self.c_start if self.c_count else 0
        end = self.c_end if self.c_count else 0
        if self.compression:
            raw = b"".join(
                bytes(memoryview(p).cast("B")) if not isinstance(p, bytes) else p for p in self.c_pieces
            )
            body_pieces = [_compress(raw, self.compression)]
        else:
            body_pieces = self.c_pieces
        csize = sum(memoryview(p).nbytes for p in body_pieces)
        comp = _str(self.compression)
        fixed = struct.pack("<QQQI", start, end, usize, crc) + comp + struct.pack("<Q", csize)
        chunk_head = _REC_HEAD.pack(_OP_CHUNK, len(fixed) + csize) + fixed
        chunk_offset = self.pos
        chunk_len = len(chunk_head) + csize
        index_offsets = {}
        idx_pieces = []
        off = chunk_offset + chunk_len
        for cid in sorted(self.c_index):
            rec = _msg_index_record(cid, self.c_index[cid])
            index_offsets[cid] = off
            off += len(rec)
            idx_pieces.append(rec)
        self._emit([chunk_head, *body_pieces, *idx_pieces], self.c_count)
        self.chunks.append(
            _ChunkInfo(
                start,
                end,
                chunk_offset,
                chunk_len,
                index_offsets,
                off - chunk_offset - chunk_len,
                self.compression,
                csize,
                usize,
            )
        )
        if self.c_count:
            self.start_ns = min(self.start_ns, start)
            self.end_ns = max(self.end_ns, end)
        self._reset_chunk()

    def sync(self) -> None:
        """fdatasync once everything queued so far is written (waits for it)."""
        self.sink.emit([], 0, sync=True)
        self.sink.drain()

    def close(self, metadata_text: str, wait: bool = True) -> None:
        """Write the last chunk, summary and footer; ``wait`` False leaves the writing to the background
        thread (call ``sink.close()`` later)."""
        self.close_chunk()
        meta_rec = _record(_OP_METADATA, _str("rosbag2") + _map({"serialized_metadata": metadata_text}))
        start = self.start_ns if self.message_count else 0
        end = self.end_ns if self.message_count else 0
        tail = _summary_tail(
            self.pos,
            meta_rec,
            list(self.written_schemas.items()),
            self.written_channels,
            self.chunks,
            self.message_count,
            self.counts,
            start,
            end,
        )
        self._emit([tail], sync=True)
        if wait:
            self.sink.close()

    def abort(self) -> None:
        """Stop without summary: what is queued is written (it left the caller), the open chunk is lost."""
        self.sink.close()


def _summary_tail(
    pos: int,
    meta_rec: bytes,
    schemas: list[tuple[int, tuple[str, str]]] | dict[int, bytes],
    channels: dict[int, bytes],
    chunks: Sequence[_ChunkInfo],
    message_count: int,
    counts: dict[int, int],
    start_ns: int,
    end_ns: int,
) -> bytes:
    """Bytes to append at file offset ``pos`` to end the data section and write summary and footer.

    ``meta_rec`` (a rosbag2 metadata record, or b"") goes before DataEnd, as the spec places Metadata in the
    data section. ``schemas`` is either [(id, (name, text))] or {id: full schema record}.
    """
    tail = bytearray(meta_rec)
    tail += _record(_OP_DATA_END, struct.pack("<I", 0))
    summary_start = pos + len(tail)
    groups: list[tuple[int, int, int]] = []

    def group(op: int, data: bytes) -> None:
        if data:
            groups.append((op, pos + len(tail), len(data)))
            tail.extend(data)

    if isinstance(schemas, dict):
        srecs = b"".join(v for _, v in sorted(schemas.items()))
    else:
        srecs = b"".join(_schema_record(sid, n, d) for sid, (n, d) in sorted(schemas))
    group(_OP_SCHEMA, srecs)
    group(_OP_CHANNEL, b"".join(v for _, v in sorted(channels.items())))
    group(_OP_CHUNK_INDEX, b"".join(_chunk_index_record(c) for c in chunks))
    if meta_rec:
        group(
            _OP_METADATA_INDEX,
            _record(_OP_METADATA_INDEX, struct.pack("<QQ", pos, len(meta_rec)) + _str("rosbag2")),
        )
    stats = struct.pack(
        "<QHIIIIQQ",
        message_count,
        len(schemas),
        len(channels),
        0,
        1 if meta_rec else 0,
        len(chunks),
        start_ns,
        end_ns,
    )
    cnt = b"".join(struct.pack("<HQ", cid, n) for cid, n in sorted(counts.items()))
    group(_OP_STATISTICS, _record(_OP_STATISTICS, stats + struct.pack("<I", len(cnt)) + cnt))
    summary_offset_start = pos + len(tail)
    for op, gstart, glen in groups:
        tail += _record(_OP_SUMMARY_OFFSET, struct.pack("<BQQ", op, gstart, glen))
    tail += _record(_OP_FOOTER, struct.pack("<QQI", summary_start, summary_offset_start, 0)) + MCAP_MAGIC
    return bytes(tail)


def _chunk_index_record(c: _ChunkInfo) -> bytes:
    offs = b"".join(struct.pack("<HQ", cid, off) for cid, off in sorted(c.index_offsets.items()))
    body = (
        struct.pack("<QQQQ", c.start_ns, c.end_ns, c.offset, c.length)
        + struct.pack("<I", len(offs))
        + offs
        + struct.pack("<Q", c.index_length)
        + _str(c.compression)
        + struct.pack("<QQ", c.compressed_size, c.uncompressed_size)
    )
    return _record(_OP_CHUNK_INDEX, body)


def _compress(raw: bytes, compression: str) -> bytes:
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        return zstd.compress(raw)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.compress(raw)
    raise BagError(f"unknown MCAP chunk compression {compression!r} (none, zstd or lz4)")


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if not compression:
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        out = zstd.decompress(data)
    elif compression == "lz4":
        import lz4.frame

        out = lz4.frame.decompress(data)
    else:
        raise BagError(f"unsupported chunk compression {compression!r}")
    if len(out) != size:
        raise BagError(f"chunk decompressed to {len(out)} bytes, expected {size}")
    return out


# -- metadata.yaml -------------------------------------------------------------------------------------------


@dataclass
class _FileMeta:
    path: str
    start_ns: int
    end_ns: int
    count: int


def _metadata_dict(
    storage: str,
    files: Sequence[_FileMeta],
    topics: Sequence[tuple[_Conn, int]],
    custom: dict[str, str] | None = None,
) -> dict:
    counted = [f for f in files if f.count]
    start = min((f.start_ns for f in counted), default=0)
    end = max((f.end_ns for f in counted), default=0)
    total = sum(f.count for f in files)
    return {
        "rosbag2_bagfile_information": {
            "version": ROSBAG2_VERSION,
            "storage_identifier": storage,
            "relative_file_paths": [f.path for f in files],
            "duration": {"nanoseconds": max(0, end - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": total,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": c.topic,
                        "type": c.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": _dump_qos(c.qos),
                        "type_description_hash": c.type_hash,
                    },
                    "message_count": n,
                }
                for c, n in topics
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": f.path,
                    "starting_time": {"nanoseconds_since_epoch": f.start_ns if f.count else 0},
                    "duration": {"nanoseconds": max(0, f.end_ns - f.start_ns) if f.count else 0},
                    "message_count": f.count,
                }
                for f in files
            ],
            "custom_data": dict(custom or {}),
            "ros_distro": "jazzy",
        }
    }


def _dump_yaml(doc: dict) -> str:
    import yaml

    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# -- the writer ----------------------------------------------------------------------------------------------


class BagWriter:
    """Write a rosbag2 folder (MCAP or sqlite3 storage, metadata.yaml version 8).

    ``path`` is the bag folder; it must not hold a bag yet (it may exist and hold other files, so a
    session folder can be the bag folder). MCAP options: ``chunk_size`` (bytes of messages per chunk: a crash
    loses at most one chunk), ``compression`` ('' none, 'zstd', 'lz4'), ``crc`` (chunk CRC32, so torn writes
    after a power loss are detected), ``fsync_period_s`` (fdatasync after a chunk when this long has passed
    since the last one; negative: never). ``name`` is the file stem (default: the folder name).

    Use as a context manager, or call :meth:`close` (which writes the MCAP summary and metadata.yaml).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        storage: str = "mcap",
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        compression: str = "",
        crc: bool = True,
        fsync_period_s: float = 1.0,
        name: str | None = None,
        custom_data: dict[str, str] | None = None,
        background: bool = True,
        max_pending_mb: int = 1024,
    ):
        self.path = Path(path)
        if storage not in ("mcap", "sqlite3"):
            raise BagError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        if chunk_size < 1:
            raise BagError(f"chunk_size must be positive, got {chunk_size}")
        if compression not in ("", "none", "zstd", "lz4"):
            raise BagError(f"unknown MCAP chunk compression {compression!r} (none, zstd or lz4)")
        self.storage = storage
        self.chunk_size = chunk_size
        self.compression = "" if compression == "none" else compression
        self.crc = crc
        self.fsync_period_s = fsync_period_s
        self.name = name or self.path.name
        self.custom_data = dict(custom_data or {})
        self.background = background
        self.max_pending = int(max_pending_mb) << 20
        self._mcaps: list[_McapFile] = []
        if (self.path / "metadata.yaml").exists():
            raise BagError(f"{self.path} already holds a bag (metadata.yaml); not overwriting")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BagError(f"cannot create bag folder {self.path}: {err.strerror}") from None
        self.conns: dict[str, _Conn] = {}
        self._by_cid: dict[int, _Conn] = {}
        self._schemas: dict[str, int] = {}
        self.files: list[_FileMeta] = []
        self._cur: _McapFile | None = None
        self._sqlite: Writer | None = None
        self._sqlite_conns: dict[int, Any] = {}
        self.closed = False
        if storage == "mcap":
            self._open_file()
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer

            tmp = self.path / f".{self.name}.sqlite3-writing"
            self._sqlite = Writer(tmp, version=ROSBAG2_VERSION, storage_plugin=StoragePlugin.SQLITE3)
            self._sqlite.open()
        self.write_metadata()

    # -- files ------------------------------------------------------------------------------------------
    def _sqlite_writer(self) -> Writer:
        """The rosbags sqlite3 writer (sqlite3 storage, until :meth:`close`)."""
        if self._sqlite is None:
            raise BagError(f"bag {self.path} has no open sqlite3 writer")
        return self._sqlite

    def _open_file(self) -> None:
        fname = f"{self.name}_{len(self.files)}.mcap"
        self._cur = _McapFile(
            self.path / fname,
            self.conns.values(),
            self._schemas,
            chunk_size=self.chunk_size,
            compression=self.compression,
            crc=self.crc,
            fsync_period_s=self.fsync_period_s,
            background=self.background,
            max_pending=self.max_pending,
        )
        self._mcaps.append(self._cur)
        self.files.append(_FileMeta(fname, 0, 0, 0))

    def _sync_file_meta(self) -> None:
        if self._cur is not None and self.files:
            f = self.files[-1]
            f.count = self._cur.message_count
            f.start_ns, f.end_ns = (self._cur.start_ns, self._cur.end_ns) if f.count else (0, 0)
            if self._cur.c_count:  # include the pending chunk
                f.start_ns = min(f.start_ns or self._cur.c_start, self._cur.c_start)
                f.end_ns = max(f.end_ns, self._cur.c_end)

    @property
    def current_file(self) -> str:
        """Name of the storage file being written."""
        return self.files[-1].path if self.files else f"{self.name}.db3"

    @property
    def message_count(self) -> int:
        return sum(c.count for c in self.conns.values())

    @property
    def flushed_count(self) -> int:
        """Messages in chunks already handed to the kernel (what survives a kill of this process)."""
        if self._cur is None:
            return self.message_count
        return sum(m.flushed_count for m in self._mcaps)

    def split(self) -> str:
        """Close the current MCAP file and start the next one of the same bag; returns the new file's name."""
        self._check_open()
        if self._cur is None:
            raise BagError("split() needs MCAP storage")
        self._sync_file_meta()
        self._cur.close(self._metadata_text(), wait=False)  # its thread finishes it; joined at close()
        self._open_file()
        self.write_metadata()
        return self.current_file

    # -- topics -----------------------------------------------------------------------------------------
    def add_topic(
        self,
        name: str,
        msgtype: str,
        qos: Sequence[Any] | Any | None = None,
        *,
        msgdef: str | None = None,
        type_hash: str | None = None,
    ) -> None:
        """Register a topic (idempotent for the same type). ``qos``: a rosbags Qos or a list of them."""
        self._check_open()
        msgtype = _msgtype(msgtype)
        if name in self.conns:
            if self.conns[name].msgtype != msgtype:
                raise BagError(
                    f"topic {name} already registered with type {self.conns[name].msgtype}, not {msgtype}"
                )
            return
        if msgdef is None:
            msgdef, h = msgdef_for(msgtype)
            type_hash = type_hash or h
        qos_list: list[Qos]
        if qos is None:
            qos_list = []
        elif hasattr(qos, "history"):  # one rosbags Qos (a NamedTuple, so test before list/tuple)
            qos_list = [cast("Qos", qos)]
        else:
            qos_list = list(qos)
        try:
            _dump_qos(qos_list)
        except (AttributeError, TypeError) as err:
            raise BagError(f"topic {name}: qos must be rosbags Qos objects ({err})") from None
        conn = _Conn(len(self.conns) + 1, name, msgtype, msgdef, type_hash or "", qos_list)
        if msgtype not in self._schemas:
            self._schemas[msgtype] = len(self._schemas) + 1
        self.conns[name] = conn
        self._by_cid[conn.cid] = conn
        if self._cur is not None:
            self._cur.add_conn(conn)
        else:
            self._sqlite_conns[conn.cid] = self._sqlite_writer().add_connection(
                name,
                msgtype,
                msgdef=msgdef,
                rihs01=conn.type_hash or "RIHS01_" + "0" * 64,
                offered_qos_profiles=qos_list,
            )

    def write_raw(self, topic: str, t_ns: int, data) -> None:
        """Write one serialised (CDR) message of a registered topic at log time ``t_ns`` (ns).

        ``data`` (bytes, memoryview, numpy) must not change until the chunk is written (next chunk boundary
        or :meth:`flush`); rclpy's raw messages and the typed writers' buffers never change.
        """
        try:
            conn = self.conns[topic]
        except KeyError:
            raise BagError(f"topic {topic} is not registered in {self.path} (add_topic first)") from None
        if self.closed:
            raise BagError(f"bag {self.path} is closed")
        t_ns = int(t_ns)
        if t_ns < 0:
            raise BagError(f"log time must be >= 0 ns, got {t_ns}")
        conn.count += 1
        if self._cur is not None:
            self._cur.write(conn.cid, t_ns, data)
        else:
            self._sqlite_writer().write(self._sqlite_conns[conn.cid], t_ns, bytes(memoryview(data).cast("B")))

    def write_msg(self, topic: str, msg: Any, t_ns: int, msgtype: str | None = None, qos=None) -> None:
        """Serialise a rosbags message object and write it (registering the topic on first use)."""
        msgtype = _msgtype(msgtype or msg.__msgtype__)
        if topic not in self.conns:
            self.add_topic(topic, msgtype, qos)
        self.write_raw(topic, t_ns, serialize(msg, msgtype))

    # -- typed writers ------------------------------------------------------------------------------------
    def write_events(
        self,
        topic: str,
        events: np.ndarray,
        t_ns: int | None = None,
        *,
        stamp_ns: int | None = None,
        frame_id: str = "",
        t_ref_us: int | None = None,
    ) -> None:
        """Events (EVENT_DTYPE) as the contract's PointCloud2; ``t`` relative to ``t_ref_us`` (default: the
        first event); ``header.stamp`` = ``stamp_ns`` (default ``t_ref_us`` in ns); log time ``t_ns``
        (default: the stamp).
        """
        wire, t_ref = events_to_wire(events, t_ref_us)
        stamp = t_ref * 1000 if stamp_ns is None else int(stamp_ns)
        pf = _t("sensor_msgs/msg/PointField")
        n = len(wire)
        msg = _t("sensor_msgs/msg/PointCloud2")(
            header=_header(stamp, frame_id),
            height=1,
            width=n,
            fields=[
                pf(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in POINT_FIELDS
            ],
            is_bigendian=False,
            point_step=POINT_STEP,
            row_step=POINT_STEP * n,
            data=wire_bytes(wire),
            is_dense=True,
        )
        self.write_msg(topic, msg, stamp if t_ns is None else t_ns, "sensor_msgs/msg/PointCloud2")

    def write_image(
        self,
        topic: str,
        array: np.ndarray,
        encoding: str,
        t_ns: int | None = None,
        *,
        stamp_ns: int = 0,
        frame_id: str = "",
    ) -> None:
        """An (H, W) or (H, W, C) array as ``sensor_msgs/Image`` (encodings of ``core.wire``)."""
        h, w, step, buf = image_buffer(array, encoding)
        msg = _t("sensor_msgs/msg/Image")(
            header=_header(stamp_ns, frame_id),
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=0,
            step=step,
            data=buf,
        )
        self.write_msg(topic, msg, stamp_ns if t_ns is None else t_ns, "sensor_msgs/msg/Image")

    def write_au(
        self, topic: str, scores, t_ns: int | None = None, *, stamp_ns: int = 0, frame_id: str = ""
    ) -> None:
        """21 AU scores as ``sensor_msgs/JointState`` (names = the AU codes of Table 1, position = score)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.shape[0] != NUM_AUS:
            raise WireError(f"AU scores must have {NUM_AUS} values, got {s.shape[0]}")
        empty = np.zeros(0, np.float64)
        msg = _t("sensor_msgs/msg/JointState")(
            header=_header(stamp_ns, frame_id), name=list(AU_CODES), position=s, velocity=empty, effort=empty
        )
        self.write_msg(topic, msg, stamp_ns if t_ns is None else t_ns, "sensor_msgs/msg/JointState")

    def write_string(self, topic: str, text: str, t_ns: int) -> None:
        self.write_msg(topic, _t("std_msgs/msg/String")(data=text), t_ns, "std_msgs/msg/String")

    def write_marker(self, topic: str, marker: dict, t_ns: int | None = None) -> None:
        """A protocol marker dict as ``std_msgs/String`` JSON (sorted keys, as ``convert.marker_to_msg``)."""
        self.write_string(
            topic,
            json.dumps(marker, sort_keys=True),
            int(marker.get("stamp_ns", 0)) if t_ns is None else t_ns,
        )

    def write_time_reference(
        self,
        topic: str,
        host_ns: int,
        sensor_us: int,
        source: str,
        t_ns: int | None = None,
        *,
        frame_id: str = "",
    ) -> None:
        msg = _t("sensor_msgs/msg/TimeReference")(
            header=_header(host_ns, frame_id), time_ref=_stamp(int(sensor_us) * 1000), source=source
        )
        self.write_msg(topic, msg, host_ns if t_ns is None else t_ns, "sensor_msgs/msg/TimeReference")

    def write_imu(
        self,
        topic: str,
        accel,
        gyro,
        t_ns: int | None = None,
        *,
        stamp_ns: int = 0,
        frame_id: str = "",
        orientation=None,
    ) -> None:
        """IMU sample: ``accel`` m/s^2 (3), ``gyro`` rad/s (3); orientation unknown (covariance[0] = -1)
        unless
        given as a quaternion (x, y, z, w)."""
        v3 = _t("geometry_msgs/msg/Vector3")
        q = _t("geometry_msgs/msg/Quaternion")
        a = [float(v) for v in accel]
        g = [float(v) for v in gyro]
        ocov = np.zeros(9)
        if orientation is None:
            ocov[0] = -1.0
            quat = q(x=0.0, y=0.0, z=0.0, w=1.0)
        else:
            x, y, z, w = (float(v) for v in orientation)
            quat = q(x=x, y=y, z=z, w=w)
        msg = _t("sensor_msgs/msg/Imu")(
            header=_header(stamp_ns, frame_id),
            orientation=quat,
            orientation_covariance=ocov,
            angular_velocity=v3(x=g[0], y=g[1], z=g[2]),
            angular_velocity_covariance=np.zeros(9),
            linear_acceleration=v3(x=a[0], y=a[1], z=a[2]),
            linear_acceleration_covariance=np.zeros(9),
        )
        self.write_msg(topic, msg, stamp_ns if t_ns is None else t_ns, "sensor_msgs/msg/Imu")

    def write_camera_info(
        self,
        topic: str,
        width: int,
        height: int,
        t_ns: int | None = None,
        *,
        stamp_ns: int = 0,
        frame_id: str = "",
        K=None,
        D=None,
    ) -> None:
        """``sensor_msgs/CameraInfo`` filled as :func:`ros2_evmicro.ros.convert.camera_info_msg` does."""
        k = np.zeros(9)
        p = np.zeros(12)
        r = np.zeros(9)
        d = np.zeros(0)
        model = ""
        if K is not None:
            k = np.asarray(K, dtype=np.float64).reshape(9)
            pm = np.zeros((3, 4))
            pm[:, :3] = k.reshape(3, 3)
            p = pm.reshape(-1)
            r = np.eye(3).reshape(-1)
            model = "plumb_bob"
            d = np.asarray([float(v) for v in (D if D is not None else [0.0] * 5)], dtype=np.float64)
        roi = _t("sensor_msgs/msg/RegionOfInterest")(
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        msg = _t("sensor_msgs/msg/CameraInfo")(
            header=_header(stamp_ns, frame_id),
            height=int(height),
            width=int(width),
            distortion_model=model,
            d=d,
            k=k,
            r=r,
            p=p,
            binning_x=0,
            binning_y=0,
            roi=roi,
        )
        self.write_msg(topic, msg, stamp_ns if t_ns is None else t_ns, "sensor_msgs/msg/CameraInfo")

    def write_polygon(
        self, topic: str, box, t_ns: int | None = None, *, stamp_ns: int = 0, frame_id: str = ""
    ) -> None:
        """A face box (x0, y0, x1, y1) as ``geometry_msgs/PolygonStamped`` with 4 corners clockwise."""
        x0, y0, x1, y1 = (float(v) for v in box)
        p32 = _t("geometry_msgs/msg/Point32")
        pts = [p32(x=x0, y=y0, z=0.0), p32(x=x1, y=y0, z=0.0), p32(x=x1, y=y1, z=0.0), p32(x=x0, y=y1, z=0.0)]
        msg = _t("geometry_msgs/msg/PolygonStamped")(
            header=_header(stamp_ns, frame_id), polygon=_t("geometry_msgs/msg/Polygon")(points=pts)
        )
        self.write_msg(topic, msg, stamp_ns if t_ns is None else t_ns, "geometry_msgs/msg/PolygonStamped")

    # -- flushing and closing -------------------------------------------------------------------------------
    def flush(self, sync: bool = False) -> None:
        """Write the pending chunk now (and fdatasync when ``sync``)."""
        if self._cur is not None and not self.closed:
            self._cur.close_chunk()
            if sync:
                self._cur.sync()

    def _topic_counts(self) -> list[tuple[_Conn, int]]:
        return [(c, c.count) for c in self.conns.values()]

    def _metadata_text(self) -> str:
        return _dump_yaml(
            _metadata_dict(self.storage, self.files, self._topic_counts(), self.custom_data)[
                "rosbag2_bagfile_information"
            ]
        ).strip()

    def write_metadata(self) -> None:
        """(Re)write metadata.yaml with what was written so far (also done at split and close)."""
        if self._cur is None:
            return  # sqlite3: rosbags writes it at close
        self._sync_file_meta()
        _write_text_atomic(
            self.path / "metadata.yaml",
            _dump_yaml(_metadata_dict(self.storage, self.files, self._topic_counts(), self.custom_data)),
        )

    def close(self) -> None:
        """Flush, write the MCAP summary and footer, and metadata.yaml. Idempotent."""
        if self.closed:
            return
        if self._cur is not None:
            self._sync_file_meta()
            self._cur.close(self._metadata_text())
            for m in self._mcaps:
                m.sink.close()
            self._sync_file_meta()
            self.write_metadata()
        elif self._sqlite is not None:
            for k, v in self.custom_data.items():
                self._sqlite.set_custom_data(k, str(v))
            self._sqlite.close()
            tmp = self._sqlite.path
            for f in tmp.iterdir():
                target = self.path / (f"{self.name}_0.db3" if f.suffix == ".db3" else f.name)
                if f.suffix == ".db3":
                    os.replace(f, target)
            meta = (tmp / "metadata.yaml").read_text().replace(tmp.name + ".db3", f"{self.name}_0.db3")
            _write_text_atomic(self.path / "metadata.yaml", meta)
            (tmp / "metadata.yaml").unlink()
            tmp.rmdir()
        self.closed = True

    def abort(self) -> None:
        """Stop without a summary, as a crash would (tests): queued chunks are written, the open one lost."""
        for m in self._mcaps:
            m.abort()
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise BagError(f"bag {self.path} is closed")

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the reader ----------------------------------------------------------------------------------------------


class RawMessage(NamedTuple):
    topic: str
    msgtype: str
    t_ns: int
    raw: bytes


def find_bag_dir(path: str | os.PathLike) -> Path:
    """The rosbag2 folder of ``path``: the folder itself when it holds metadata.yaml, else its one sub-folder
    that does (a session folder with the bag inside)."""
    p = Path(path)
    if p.is_file() and p.name == "metadata.yaml":
        return p.parent
    if (p / "metadata.yaml").is_file():
        return p
    if not p.is_dir():
        raise BagError(f"{p} is not a folder")
    subs = sorted(d for d in p.iterdir() if (d / "metadata.yaml").is_file())
    if len(subs) == 1:
        return subs[0]
    if not subs:
        if any(p.glob("*.mcap")) or any(p.glob("*.db3")):
            raise BagError(f"{p} has storage files but no metadata.yaml; run `evmicro bag repair {p}`")
        raise BagError(f"{p} holds no rosbag2 (no metadata.yaml)")
    raise BagError(f"{p} holds several bags: {', '.join(s.name for s in subs)}; choose one")


class BagReader:
    """Read a rosbag2 folder (MCAP or sqlite3 storage, several files) written by any rosbag2 writer.

    ``topics`` restricts iteration to those topics. Iterating yields :class:`RawMessage` in log-time order;
    :meth:`messages` yields ``(topic, t_ns, msg)`` with decoded rosbags message objects.
    """

    def __init__(self, path: str | os.PathLike, topics: Iterable[str] | None = None):
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError

        p = Path(path)
        single = p.is_file() and p.suffix in (".mcap", ".db3")
        self.path = p if single else find_bag_dir(p)
        self.wanted = None if topics is None else set(topics)
        reader = Reader(self.path)
        self._reader: Reader | None = reader
        try:
            reader.open()
        except (ReaderError, KeyError, ValueError) as err:
            raise BagError(
                f"cannot read bag {self.path}: {err} (`evmicro bag check` says why; "
                "`evmicro bag repair` recovers a bag whose writer was killed)"
            ) from None
        self.typestore = _reader_typestore(reader.connections)
        if single:
            self.storage = "mcap" if p.suffix == ".mcap" else "sqlite3"
            self.files = [p.name]
        else:
            self.storage, paths, _, _ = _bag_files(self.path)
            self.files = [f.name for f in paths]
        if self.wanted is not None:
            have = {c.topic for c in reader.connections}
            missing = self.wanted - have
            if missing:
                self.close()
                raise BagError(f"bag {self.path} has no topic {sorted(missing)}; it has {sorted(have)}")

    def _live_reader(self) -> Reader:
        """The open rosbags reader (until :meth:`close`)."""
        if self._reader is None:
            raise BagError(f"bag {self.path} is closed")
        return self._reader

    # -- summary ---------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """{topic: (msgtype, message count)}."""
        out: dict[str, tuple[str, int]] = {}
        for c in self._live_reader().connections:
            t, n = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (t, n + c.msgcount)
        return out

    @property
    def message_count(self) -> int:
        return (
            sum(n for _, n in self.topics.values())
            if self.wanted is None
            else sum(n for k, (_, n) in self.topics.items() if k in self.wanted)
        )

    @property
    def start_ns(self) -> int:
        return int(self._live_reader().start_time)

    @property
    def end_ns(self) -> int:
        return int(self._live_reader().end_time)

    # -- iteration -------------------------------------------------------------------------------------
    def _conns(self, topics: Iterable[str] | None = None):
        want = set(topics) if topics is not None else self.wanted
        return [c for c in self._live_reader().connections if want is None or c.topic in want]

    def raw(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Raw messages of ``topics`` (default: the reader's) with ``start_ns <= t_ns < stop_ns``."""
        conns = self._conns(topics)
        if not conns:
            return
        for c, t, raw in self._live_reader().messages(connections=conns, start=start_ns, stop=stop_ns):
            yield RawMessage(c.topic, c.msgtype, int(t), raw)

    def __iter__(self) -> Iterator[RawMessage]:
        return self.raw()

    def decode(self, raw: bytes, msgtype: str) -> Any:
        return self.typestore.deserialize_cdr(raw, msgtype)

    def messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[tuple[str, int, Any]]:
        for m in self.raw(topics, start_ns, stop_ns):
            yield m.topic, m.t_ns, self.decode(m.raw, m.msgtype)

    # -- numpy helpers ---------------------------------------------------------------------------------
    def events(self, topic: str, start_ns: int | None = None, stop_ns: int | None = None) -> np.ndarray:
        """Every event of a PointCloud2 event topic, concatenated (EVENT_DTYPE, ``t`` = stamp + t_rel, us)."""
        parts = [events_from_cdr(m) for _, _, m in self.messages([topic], start_ns, stop_ns)]
        return concat_events(parts)

    def images(
        self, topic: str, start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(log t_ns, header stamp ns, array view) of each Image of ``topic``."""
        for _, t, m in self.messages([topic], start_ns, stop_ns):
            yield t, _stamp_ns(m.header.stamp), image_from_cdr(m)

    def markers(self, topic: str = "/protocol/marker") -> list[dict]:
        """The protocol markers (JSON String messages) in log-time order; a bag without the topic gives []."""
        if topic not in self.topics:
            return []
        out = []
        for _, _, m in self.messages([topic]):
            try:
                d = json.loads(m.data)
            except json.JSONDecodeError as err:
                raise BagError(f"{self.path}: a marker on {topic} is not JSON: {err}") from None
            out.append(d)
        return out

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reader_typestore(connections: Iterable[Any]) -> Typestore:
    """A typestore with the Jazzy types plus those the bag defines (or known fallbacks)."""
    from rosbags.typesys import Stores, get_types_from_msg
    from rosbags.typesys import get_typestore as _get

    ts = _get(Stores.ROS2_JAZZY)
    add: dict = {}
    for c in connections:
        if c.msgtype in ts.types or c.msgtype in add:
            continue
        text = getattr(c.msgdef, "data", "") or _FALLBACK_TYPES.get(c.msgtype, "")
        if text:
            try:
                add.update(get_types_from_msg(text, c.msgtype))
            except Exception as err:  # noqa: BLE001 - rosbags raises several parser errors
                raise BagError(
                    f"cannot parse the definition of {c.msgtype} stored in the bag: {err}"
                ) from None
    if add:
        ts.register(add)
    return ts


def events_from_cdr(msg) -> np.ndarray:
    """Decoded PointCloud2 (rosbags object) -> EVENT_DTYPE, absolute ``t`` (us), as ``events_from_msg``."""
    check_point_fields(msg.fields, msg.point_step, msg.is_bigendian)
    view = wire_view(np.asarray(msg.data, dtype=np.uint8))
    n = int(msg.width) * int(msg.height)
    if len(view) != n:
        raise WireError(f"PointCloud2 holds {len(view)} points but width*height is {n}")
    return wire_to_events(view, _stamp_ns(msg.header.stamp) // 1000)


def image_from_cdr(msg) -> np.ndarray:
    return image_view(
        np.asarray(msg.data, dtype=np.uint8),
        msg.height,
        msg.width,
        msg.step,
        msg.encoding,
        bool(msg.is_bigendian),
    )


# -- check and repair ----------------------------------------------------------------------------------------


@dataclass
class FileCheck:
    """What a scan of one MCAP (or sqlite3) file found."""

    path: str
    size: int = 0
    complete: bool = False  # footer and summary present
    messages: int = 0  # messages in complete chunks (what repair recovers)
    chunks: int = 0
    good_end: int = 0  # offset after the last complete record
    lost_bytes: int = 0  # bytes after good_end (an incomplete chunk or index)
    start_ns: int = 0
    end_ns: int = 0
    topic_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class BagCheck:
    """Report of :func:`check_bag`: ``ok`` when every file is complete and metadata.yaml agrees."""

    path: str
    ok: bool
    storage: str
    metadata: str  # 'ok', 'missing', 'stale', 'unreadable'
    files: list[FileCheck]
    topics: dict[str, int]
    problems: list[str]

    @property
    def messages(self) -> int:
        return sum(f.messages for f in self.files)

    def text(self) -> str:
        lines = [
            f"bag {self.path}: {'OK' if self.ok else 'NEEDS REPAIR'} ({self.storage}, metadata.yaml "
            f"{self.metadata}, {self.messages} messages)"
        ]
        for f in self.files:
            state = (
                "complete" if f.complete else f"no footer, {f.lost_bytes} bytes after the last complete chunk"
            )
            lines.append(f"  {f.path}: {f.messages} messages in {f.chunks} chunks, {state}")
        for t, n in sorted(self.topics.items()):
            lines.append(f"    {t}: {n}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass
class _Scan:
    check: FileCheck
    schemas: dict[int, tuple[str, bytes]]  # id -> (name, full schema record bytes)
    channels: dict[int, tuple[str, int, bytes, dict[str, str]]]  # id -> (topic, schema id, record, metadata)
    chunks: list[_ChunkInfo]
    last_chunk_index: dict[int, list[tuple[int, int]]]  # message index entries of the last chunk (parsed)
    last_chunk_indexed: bool
    counts: dict[int, int]


def _read_str(buf: memoryview, off: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, off)
    if off + 4 + n > len(buf):
        raise BagError("string runs past its record")
    return bytes(buf[off + 4 : off + 4 + n]).decode(), off + 4 + n


def _read_map(buf: memoryview, off: int) -> tuple[dict[str, str], int]:
    (n,) = struct.unpack_from("<I", buf, off)
    end = off + 4 + n
    off += 4
    out = {}
    while off < end:
        k, off = _read_str(buf, off)
        v, off = _read_str(buf, off)
        out[k] = v
    return out, end


def _parse_chunk_records(
    data: memoryview, scan: _Scan, ch_counts: dict[int, int], index: dict[int, list[tuple[int, int]]]
) -> tuple[int, int, int]:
    """Parse the records of a decompressed chunk; returns (messages, start_ns, end_ns)."""
    off = 0
    n = len(data)
    msgs = 0
    start, end = 2**63 - 1, 0
    while off < n:
        if off + 9 > n:
            raise BagError("record header runs past the chunk")
        op, ln = _REC_HEAD.unpack_from(data, off)
        body = off + 9
        if body + ln > n:
            raise BagError(f"record of {ln} bytes runs past the chunk")
        if op == _OP_MESSAGE:
            if ln < 22:
                raise BagError(f"message record of {ln} bytes")
            cid, _seq, t_log, _t_pub = struct.unpack_from("<HIQQ", data, body)
            if cid not in scan.channels:
                raise BagError(f"message on unknown channel {cid}")
            index[cid].append((t_log, off))
            ch_counts[cid] += 1
            msgs += 1
            start = min(start, t_log)
            end = max(end, t_log)
        elif op == _OP_SCHEMA:
            (sid,) = struct.unpack_from("<H", data, body)
            name, _ = _read_str(data, body + 2)
            scan.schemas[sid] = (name, bytes(data[off : body + ln]))
        elif op == _OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", data, body)
            topic, o = _read_str(data, body + 4)
            _enc, o = _read_str(data, o)
            meta, _ = _read_map(data, o)
            scan.channels[cid] = (topic, sid, bytes(data[off : body + ln]), meta)
        elif op not in (_OP_METADATA, 0x09):
            raise BagError(f"unexpected record opcode 0x{op:02x} inside a chunk")
        off = body + ln
    return msgs, start, end


def _scan_mcap(path: Path) -> _Scan:
    """Walk an MCAP file record by record up to the first incomplete or corrupt record."""
    size = path.stat().st_size
    chk = FileCheck(path.name, size=size)
    scan = _Scan(chk, {}, {}, [], {}, True, defaultdict(int))
    last_chunk: _ChunkInfo | None = None
    last_channels: set[int] = set()
    seen_index: set[int] = set()
    start, end = 2**63 - 1, 0
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head != MCAP_MAGIC:
            chk.problems.append("not an MCAP file (bad magic)" if head else "empty file")
            return scan
        pos = 8
        chk.good_end = 8
        in_summary = False
        while True:
            hdr = fh.read(9)
            if len(hdr) < 9:
                if hdr or not chk.complete:
                    chk.problems.append(f"file ends at byte {pos + len(hdr)} without a footer")
                break
            op, ln = _REC_HEAD.unpack(hdr)
            if op == 0 or op > 0x0F or pos + 9 + ln > size:
                chk.problems.append(
                    f"incomplete or corrupt record (opcode 0x{op:02x}, {ln} bytes) at byte {pos}"
                )
                break
            if in_summary and op != _OP_FOOTER:
                fh.seek(ln, 1)
            elif op == _OP_CHUNK:
                body = memoryview(fh.read(ln))
                try:
                    cs, ce, usize, crc = struct.unpack_from("<QQQI", body, 0)
                    comp, o = _read_str(body, 28)
                    (csize,) = struct.unpack_from("<Q", body, o)
                    o += 8
                    if o + csize > ln:
                        raise BagError("chunk data runs past its record")
                    raw = memoryview(
                        _decompress(bytes(body[o : o + csize]), comp, usize) if comp else body[o : o + csize]
                    )
                    if len(raw) != usize:
                        raise BagError(f"chunk holds {len(raw)} bytes, its header says {usize}")
                    if crc and zlib.crc32(raw) != crc:
                        raise BagError("chunk CRC mismatch")
                    counts: dict[int, int] = defaultdict(int)
                    index: dict[int, list[tuple[int, int]]] = defaultdict(list)
                    nmsg, s, e = _parse_chunk_records(raw, scan, counts, index)
                except (BagError, struct.error, UnicodeDecodeError) as err:
                    chk.problems.append(f"corrupt chunk at byte {pos}: {err}")
                    break
                last_chunk = _ChunkInfo(
                    cs if nmsg else 0, ce if nmsg else 0, pos, 9 + ln, {}, 0, comp, csize, usize
                )
                scan.chunks.append(last_chunk)
                scan.last_chunk_index = index
                last_channels, seen_index = set(index), set()
                for cid, n in counts.items():
                    scan.counts[cid] += n
                chk.messages += nmsg
                chk.chunks += 1
                if nmsg:
                    start, end = min(start, s), max(end, e)
            elif op == _OP_MSG_INDEX:
                idx_body = fh.read(ln)
                if last_chunk is None:
                    chk.problems.append(f"message index without a chunk at byte {pos}")
                    break
                (cid,) = struct.unpack_from("<H", idx_body, 0)
                last_chunk.index_offsets[cid] = pos
                last_chunk.index_length += 9 + ln
                seen_index.add(cid)
            elif op in (_OP_SCHEMA, _OP_CHANNEL):
                body = memoryview(fh.read(ln))
                if op == _OP_SCHEMA:
                    (sid,) = struct.unpack_from("<H", body, 0)
                    name, _ = _read_str(body, 2)
                    scan.schemas[sid] = (name, hdr + bytes(body))
                else:
                    cid, sid = struct.unpack_from("<HH", body, 0)
                    topic, o = _read_str(body, 4)
                    _enc, o = _read_str(body, o)
                    meta, _ = _read_map(body, o)
                    scan.channels[cid] = (topic, sid, hdr + bytes(body), meta)
            elif op == _OP_MESSAGE:
                chk.problems.append(f"message outside chunks at byte {pos} (unchunked MCAP is not supported)")
                fh.seek(ln, 1)
            elif op == _OP_DATA_END:
                fh.seek(ln, 1)
                in_summary = True
            elif op == _OP_FOOTER:
                fh.seek(ln, 1)
                if fh.read(8) == MCAP_MAGIC:
                    chk.complete = True
                else:
                    chk.problems.append("footer without the closing magic")
                pos += 9 + ln + 8
                break
            else:
                fh.seek(ln, 1)
            pos += 9 + ln
            if not in_summary:
                chk.good_end = pos
    scan.last_chunk_indexed = last_chunk is None or last_channels <= seen_index
    chk.start_ns, chk.end_ns = (start, end) if chk.messages else (0, 0)
    for cid, n in scan.counts.items():
        topic = scan.channels[cid][0]
        chk.topic_counts[topic] = chk.topic_counts.get(topic, 0) + n
    chk.lost_bytes = 0 if chk.complete else size - chk.good_end
    if chk.complete:
        chk.good_end = size
    return scan


def _bag_files(bag: Path) -> tuple[str, list[Path], dict | None, str]:
    """(storage, files, parsed metadata or None, metadata state)."""
    meta = None
    state = "missing"
    mpath = bag / "metadata.yaml"
    if mpath.is_file():
        import yaml

        try:
            meta = yaml.safe_load(mpath.read_text())["rosbag2_bagfile_information"]
            state = "ok"
        except Exception:  # noqa: BLE001 - any parse problem means: rebuild it
            meta, state = None, "unreadable"
    if meta is not None:
        storage = meta.get("storage_identifier", "mcap")
        files = [bag / Path(p).name for p in meta.get("relative_file_paths", [])]
        extra = sorted(set(bag.glob("*.mcap" if storage == "mcap" else "*.db3")) - set(files), key=_natural)
        files += extra
        files = [f for f in files if f.exists()] + [f for f in files if not f.exists()]
    else:
        mc = sorted(bag.glob("*.mcap"), key=_natural)
        db = sorted(bag.glob("*.db3"), key=_natural)
        storage = "mcap" if mc or not db else "sqlite3"
        files = mc or db
    return storage, files, meta, state


def _natural(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _sqlite_check(path: Path) -> FileCheck:
    import sqlite3

    chk = FileCheck(path.name, size=path.stat().st_size, complete=True)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "select t.name, count(m.id), min(m.timestamp), max(m.timestamp) from topics t "
                "left join messages m on m.topic_id = t.id group by t.id"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        chk.complete = False
        chk.problems.append(f"sqlite3 error: {err}")
        return chk
    chk.topic_counts = {r[0]: int(r[1]) for r in rows}
    chk.messages = sum(chk.topic_counts.values())
    starts = [r[2] for r in rows if r[2] is not None]
    ends = [r[3] for r in rows if r[3] is not None]
    chk.start_ns, chk.end_ns = (min(starts), max(ends)) if starts else (0, 0)
    return chk


def check_bag(path: str | os.PathLike) -> BagCheck:
    """Scan every storage file of a bag folder and compare with metadata.yaml (nothing is changed)."""
    bag = Path(path)
    if not bag.is_dir():
        raise BagError(f"{bag} is not a folder")
    if not (bag / "metadata.yaml").exists() and not any(bag.glob("*.mcap")) and not any(bag.glob("*.db3")):
        bag = find_bag_dir(bag)
    storage, files, meta, state = _bag_files(bag)
    problems: list[str] = []
    checks: list[FileCheck] = []
    for f in files:
        if not f.exists():
            problems.append(f"metadata.yaml lists {f.name}, which does not exist")
            continue
        if storage == "mcap":
            checks.append(_scan_mcap(f).check)
        else:
            checks.append(_sqlite_check(f))
    if not files:
        problems.append("no storage files")
    topics: dict[str, int] = defaultdict(int)
    for c in checks:
        for t, n in c.topic_counts.items():
            topics[t] += n
        if not c.complete:
            problems.append(f"{c.path}: incomplete (writer killed?): {c.messages} messages recoverable")
        problems += [f"{c.path}: {p}" for p in c.problems if c.complete]
    if meta is not None:
        listed = {
            t["topic_metadata"]["name"]: int(t.get("message_count", 0))
            for t in meta.get("topics_with_message_count", []) or []
        }
        if int(meta.get("message_count", -1)) != sum(c.messages for c in checks) or any(
            listed.get(t, 0) != n for t, n in topics.items()
        ):
            state = "stale"
            problems.append("metadata.yaml counts disagree with the storage files")
        if int(meta.get("version", 0)) > 9:
            problems.append(f"metadata.yaml version {meta.get('version')} is newer than rosbag2 Jazzy reads")
    else:
        problems.append(f"metadata.yaml {state}")
    ok = state == "ok" and all(c.complete for c in checks) and not problems
    return BagCheck(str(bag), ok, storage, state, checks, dict(topics), problems)


def repair_bag(path: str | os.PathLike) -> BagCheck:
    """Make a bag readable again after its writer was killed; returns the check after the repair.

    Each MCAP file without footer is truncated after its last complete chunk (and that chunk's message
    indexes, rebuilt when missing), then the DataEnd record, summary (schemas, channels, chunk indexes,
    statistics) and footer are appended. metadata.yaml is rewritten from the files. sqlite3 files are only
    re-counted. Files that are already complete are left untouched.
    """
    bag = Path(path)
    if not bag.is_dir():
        raise BagError(f"{bag} is not a folder")
    if not (bag / "metadata.yaml").exists() and not any(bag.glob("*.mcap")) and not any(bag.glob("*.db3")):
        bag = find_bag_dir(bag)
    storage, files, meta, _state = _bag_files(bag)
    files = [f for f in files if f.exists()]
    if not files:
        raise BagError(f"{bag}: no storage files to repair")
    conns: dict[str, _Conn] = {}
    fmeta: list[_FileMeta] = []
    topic_counts: dict[str, int] = defaultdict(int)
    if storage == "mcap":
        for f in files:
            scan = _scan_mcap(f)
            if not scan.check.complete:
                _finish_mcap(f, scan)
                scan = _scan_mcap(f)
                if not scan.check.complete:
                    raise BagError(f"repair of {f} failed: {scan.check.problems}")
            chk = scan.check
            fmeta.append(_FileMeta(f.name, chk.start_ns, chk.end_ns, chk.messages))
            for cid, (topic, sid, _rec, cmeta) in sorted(scan.channels.items()):
                if topic not in conns:
                    from rosbags.rosbag2.metadata import parse_qos

                    name = scan.schemas.get(sid, ("", b""))[0]
                    try:
                        qos = parse_qos(cmeta.get("offered_qos_profiles", ""))
                    except Exception:  # noqa: BLE001
                        qos = []
                    conns[topic] = _Conn(cid, topic, name, "", cmeta.get("topic_type_hash", ""), qos)
            for t, n in chk.topic_counts.items():
                topic_counts[t] += n
    else:
        import sqlite3

        from rosbags.rosbag2.metadata import parse_qos

        for f in files:
            chk = _sqlite_check(f)
            fmeta.append(_FileMeta(f.name, chk.start_ns, chk.end_ns, chk.messages))
            con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
            try:
                cols = [r[1] for r in con.execute("pragma table_info(topics)")]
                rows = con.execute("select * from topics").fetchall()
            finally:
                con.close()
            for r in rows:
                d = dict(zip(cols, r, strict=True))
                if d["name"] not in conns:
                    try:
                        qos = parse_qos(d.get("offered_qos_profiles") or "")
                    except Exception:  # noqa: BLE001
                        qos = []
                    conns[d["name"]] = _Conn(
                        d["id"], d["name"], d["type"], "", d.get("type_description_hash") or "", qos
                    )
            for t, n in chk.topic_counts.items():
                topic_counts[t] += n
    custom = (meta or {}).get("custom_data") or {}
    doc = _metadata_dict(
        storage,
        fmeta,
        [(c, topic_counts.get(t, 0)) for t, c in conns.items()],
        {str(k): str(v) for k, v in custom.items()},
    )
    _write_text_atomic(bag / "metadata.yaml", _dump_yaml(doc))
    return check_bag(bag)


def _finish_mcap(path: Path, scan: _Scan) -> None:
    """Truncate after the last complete chunk (+ its message indexes, rebuilt when incomplete) and append
    DataEnd, summary and footer."""
    chunks = scan.chunks
    idx = b""
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    if head and not MCAP_MAGIC.startswith(head[: len(MCAP_MAGIC)]):
        raise BagError(f"{path} is not an MCAP file (bad magic); not touching it")
    if not chunks:
        # nothing complete: start the file again (magic + header); schemas and channels go to the summary
        end = 0
        idx = MCAP_MAGIC + _record(_OP_HEADER, _str("ros2") + _str("ros2_evmicro bagio (repaired)"))
    elif scan.last_chunk_indexed:
        end = chunks[-1].offset + chunks[-1].length + chunks[-1].index_length
    else:
        last = chunks[-1]
        end = last.offset + last.length
        last.index_offsets = {}
        for cid in sorted(scan.last_chunk_index):
            last.index_offsets[cid] = end + len(idx)
            idx += _msg_index_record(cid, scan.last_chunk_index[cid])
        last.index_length = len(idx)
    chk = scan.check
    tail = _summary_tail(
        end + len(idx),
        b"",
        {sid: rec for sid, (_n, rec) in scan.schemas.items()},
        {cid: v[2] for cid, v in scan.channels.items()},
        chunks,
        chk.messages,
        scan.counts,
        chk.start_ns,
        chk.end_ns,
    )
    with open(path, "r+b") as fh:
        fh.truncate(end)
        fh.seek(end)
        fh.write(idx + tail)
        fh.flush()
        os.fsync(fh.fileno())


def bag_topics_summary(path: str | os.PathLike) -> str:
    """A short text of a bag's topics and counts (for logs)."""
    with BagReader(path) as r:
        return "\n".join(f"{t}: {n} ({typ})" for t, (typ, n) in sorted(r.topics.items()))

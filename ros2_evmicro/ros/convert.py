"""Every message <-> numpy conversion of the project, in one module (the cv_bridge of ros2_evmicro).

The byte layouts live in :mod:`ros2_evmicro.core.wire` (no ROS there); this module fills and reads the
message objects. Outgoing buffers are handed to rclpy without a Python-level copy: the generated message
classes serialise any object that supports the buffer protocol, so ``data`` is set to a numpy ``uint8``
view (rclpy copies once into the DDS sample, as it must). Incoming ``data`` is viewed with ``np.frombuffer``.
"""

from __future__ import annotations

import json

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point32, PolygonStamped
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2, PointField, TimeReference
from std_msgs.msg import Header, String

from ros2_evmicro.core.au import AU_CODES, NUM_AUS
from ros2_evmicro.core.events import make_events
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

__all__ = [
    "au_from_msg",
    "au_to_msg",
    "box_from_polygon",
    "box_to_polygon",
    "camera_info_msg",
    "events_from_msg",
    "events_to_msg",
    "frames_from_msg",
    "frames_to_msg",
    "image_from_msg",
    "image_to_msg",
    "is_watermark",
    "marker_from_msg",
    "marker_to_msg",
    "ns_to_stamp",
    "stamp_to_ns",
    "time_reference_msg",
    "warm_up",
    "watermark_msg",
    "WireError",
]

_FIELDS = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in POINT_FIELDS]


def ns_to_stamp(ns: int) -> Time:
    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _set_bytes(msg, buf: np.ndarray) -> None:
    # The generated setter copies anything but array.array element by element; the C serialiser takes any
    # buffer (PyObject_GetBuffer), so hand it the numpy view directly.
    msg._data = buf


def events_to_msg(events: np.ndarray, stamp_ns: int | None = None, frame_id: str = "",
                  t_ref_us: int | None = None) -> PointCloud2:
    """Events (EVENT_DTYPE) -> PointCloud2 of the contract.

    ``t`` on the wire is relative to ``t_ref_us`` (default: first event); ``header.stamp`` is ``stamp_ns``
    (default: ``t_ref_us`` in ns, i.e. when sensor time is already ROS time).
    """
    wire, t_ref = events_to_wire(events, t_ref_us)
    msg = PointCloud2()
    msg.header = Header(stamp=ns_to_stamp(t_ref * 1000 if stamp_ns is None else stamp_ns), frame_id=frame_id)
    n = len(wire)
    msg.height = 1
    msg.width = n
    msg.fields = _FIELDS
    msg.is_bigendian = False
    msg.point_step = POINT_STEP
    msg.row_step = POINT_STEP * n
    msg.is_dense = True
    _set_bytes(msg, wire_bytes(wire))
    return msg


def watermark_msg(stamp_ns: int, frame_id: str = "") -> PointCloud2:
    """The contract's event watermark: an events packet with no events (``width`` 0) whose ``header.stamp``
    says that every event of the stream before that ROS time has been published. A slicer closes the windows
    that end by then at once instead of waiting for a later event and its late tolerance."""
    return events_to_msg(make_events([], [], [], []), stamp_ns=int(stamp_ns), frame_id=frame_id,
                         t_ref_us=int(stamp_ns) // 1000)


def is_watermark(msg: PointCloud2) -> bool:
    """True for an events packet that carries no events: a watermark (see :func:`watermark_msg`)."""
    return int(msg.width) * int(msg.height) == 0


_WARM = False


def warm_up() -> None:
    """Run the compiled packing kernel behind :func:`events_to_msg` once per process.

    Its first call loads numba's dispatcher and the cached machine code: 0.54 s on the 2-core reference VM.
    A driver whose first packet paid that fell half a second behind at once and then published the packets it
    owed in one burst, all stamped within a few ms (docs/benchmarks.md, notes on the start-up burst); event
    producers call this while they start instead.
    """
    global _WARM
    if not _WARM:
        events_from_msg(events_to_msg(make_events([0, 1], [0, 1], [0, 1], [0, 1])))
        _WARM = True


def events_from_msg(msg: PointCloud2, *, copy: bool = True) -> np.ndarray:
    """PointCloud2 -> events with absolute ``t`` in ROS-time microseconds (``header.stamp`` + ``t``).

    With ``copy=False`` the zero-copy WIRE_DTYPE view of ``msg.data`` is returned instead (``t`` relative).
    Raises :class:`WireError` when the fields, sizes or step disagree with the contract.
    """
    check_point_fields(msg.fields, msg.point_step, msg.is_bigendian)
    n = int(msg.width) * int(msg.height)
    view = wire_view(msg.data)
    if len(view) != n or int(msg.row_step) != POINT_STEP * int(msg.width):
        raise WireError(
            f"PointCloud2 holds {len(view)} points but width*height is {n} (row_step {msg.row_step})"
        )
    if not copy:
        return view
    return wire_to_events(view, stamp_to_ns(msg.header.stamp) // 1000)


def image_to_msg(array: np.ndarray, encoding: str, stamp_ns: int = 0, frame_id: str = "") -> Image:
    h, w, step, buf = image_buffer(array, encoding)
    msg = Image()
    msg.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)
    msg.height, msg.width, msg.step = h, w, step
    msg.encoding = encoding
    msg.is_bigendian = False
    _set_bytes(msg, buf)
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    """Zero-copy numpy view of an Image (H, W) or (H, W, C)."""
    return image_view(msg.data, msg.height, msg.width, msg.step, msg.encoding, bool(msg.is_bigendian))


def frames_to_msg(counts: np.ndarray, stamp_ns: int, frame_id: str = "") -> Image:
    """Event frame (2, H, W) channel-first (OFF, ON) -> ``32FC2`` Image, interleaved (H, W, 2)."""
    if counts.ndim != 3 or counts.shape[0] != 2:
        raise WireError(f"event frames must be (2, H, W), got {counts.shape}")
    return image_to_msg(np.moveaxis(counts, 0, -1).astype(np.float32, copy=False), "32FC2", stamp_ns, frame_id)


def frames_from_msg(msg: Image) -> np.ndarray:
    """``32FC2`` Image -> (2, H, W) float32 (OFF, ON)."""
    if msg.encoding != "32FC2":
        raise WireError(f"event frames must be 32FC2, got {msg.encoding!r}")
    return np.ascontiguousarray(np.moveaxis(image_from_msg(msg), -1, 0))


def au_to_msg(scores, stamp_ns: int, frame_id: str = "") -> JointState:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != NUM_AUS:
        raise WireError(f"AU scores must have {NUM_AUS} values, got {s.shape[0]}")
    msg = JointState()
    msg.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)
    msg.name = list(AU_CODES)
    msg.position = s.tolist()
    return msg


def au_from_msg(msg: JointState) -> np.ndarray:
    """JointState -> 21 scores in Table 1 order (matched by name, so a reordered message still works)."""
    if len(msg.name) != len(msg.position):
        raise WireError(f"JointState has {len(msg.name)} names but {len(msg.position)} positions")
    by_name = dict(zip(msg.name, msg.position, strict=True))
    missing = [c for c in AU_CODES if c not in by_name]
    if missing:
        raise WireError(f"AU message lacks {missing}")
    return np.array([by_name[c] for c in AU_CODES], dtype=np.float64)


def box_to_polygon(box, stamp_ns: int, frame_id: str = "") -> PolygonStamped:
    """(x0, y0, x1, y1) pixel box -> PolygonStamped with 4 corners (clockwise from top-left)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    msg = PolygonStamped()
    msg.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)
    msg.polygon.points = [Point32(x=x0, y=y0), Point32(x=x1, y=y0), Point32(x=x1, y=y1), Point32(x=x0, y=y1)]
    return msg


def box_from_polygon(msg: PolygonStamped) -> tuple[float, float, float, float]:
    pts = msg.polygon.points
    if len(pts) < 3:
        raise WireError(f"face ROI polygon needs at least 3 points, got {len(pts)}")
    xs = [p.x for p in pts]
    ys = [p.y for p in pts]
    return (min(xs), min(ys), max(xs), max(ys))


def camera_info_msg(width: int, height: int, stamp_ns: int = 0, frame_id: str = "", K=None, D=None) -> CameraInfo:
    msg = CameraInfo()
    msg.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)
    msg.width, msg.height = int(width), int(height)
    if K is not None:
        k = np.asarray(K, dtype=np.float64).reshape(9)
        msg.k = k.tolist()
        p = np.zeros((3, 4))
        p[:, :3] = k.reshape(3, 3)
        msg.p = p.reshape(-1).tolist()
        msg.r = np.eye(3).reshape(-1).tolist()
        msg.distortion_model = "plumb_bob"
        msg.d = [float(v) for v in (D if D is not None else [0.0] * 5)]
    return msg


def time_reference_msg(host_ns: int, sensor_us: int, source: str, frame_id: str = "") -> TimeReference:
    msg = TimeReference()
    msg.header = Header(stamp=ns_to_stamp(host_ns), frame_id=frame_id)
    msg.time_ref = ns_to_stamp(int(sensor_us) * 1000)
    msg.source = source
    return msg


def marker_to_msg(marker: dict) -> String:
    return String(data=json.dumps(marker, sort_keys=True))


def marker_from_msg(msg: String) -> dict:
    try:
        out = json.loads(msg.data)
    except json.JSONDecodeError as err:
        raise WireError(f"protocol marker is not JSON: {err}") from None
    if not isinstance(out, dict):
        raise WireError("protocol marker must be a JSON object")
    return out


"""Wire layouts of the interface contract, without ROS: events as PointCloud2 bytes, arrays as Image bytes.

The contract (``docs/interfaces.md``) sends events as ``sensor_msgs/PointCloud2`` with 12-byte points::

    x UINT16 @0, y UINT16 @2, p INT8 @4, (3 bytes padding, zero), t INT32 @8 = microseconds since header.stamp

which is exactly :data:`WIRE_DTYPE`. A received message's ``data`` buffer is therefore viewed as a structured
array with ``np.frombuffer`` (zero copy, :func:`wire_view`), and an outgoing packet's bytes are a ``uint8``
view of a :data:`WIRE_DTYPE` array (zero copy, :func:`wire_bytes`). Widening ``t`` to the absolute int64 of
:data:`~ros2_evmicro.core.events.EVENT_DTYPE` (and back) is the one pass that copies.

Images (``sensor_msgs/Image``) are handled the same way: :func:`image_view` is a zero-copy numpy view of a
message buffer for the encodings the project uses, :func:`image_buffer` the reverse.

This module imports numpy only; the message objects are built in :mod:`ros2_evmicro.ros.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ros2_evmicro.core.events import EVENT_DTYPE, EventError

__all__ = [
    "IMAGE_ENCODINGS",
    "POINT_FIELDS",
    "POINT_STEP",
    "WIRE_DTYPE",
    "WireError",
    "PointField",
    "check_point_fields",
    "events_to_wire",
    "image_buffer",
    "image_view",
    "wire_bytes",
    "wire_to_events",
    "wire_view",
]


class WireError(EventError):
    """A message buffer does not match the layout of the interface contract."""


WIRE_DTYPE = np.dtype(
    {
        "names": ["x", "y", "p", "t"],
        "formats": ["<u2", "<u2", "i1", "<i4"],
        "offsets": [0, 2, 4, 8],
        "itemsize": 12,
    }
)
POINT_STEP = 12

# sensor_msgs/PointField datatype constants
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)


@dataclass(frozen=True)
class PointField:
    name: str
    offset: int
    datatype: int
    count: int = 1


POINT_FIELDS: tuple[PointField, ...] = (
    PointField("x", 0, UINT16),
    PointField("y", 2, UINT16),
    PointField("p", 4, INT8),
    PointField("t", 8, INT32),
)

_I32_MIN = -(2**31)
_I32_MAX = 2**31 - 1


@numba.njit(cache=True, nogil=True)
def _to_wire_kernel(ev_u8, out_u8, t_ref):  # pragma: no cover - compiled
    n = ev_u8.shape[0] // 16
    for i in range(n):
        s = i * 16
        d = i * 12
        out_u8[d] = ev_u8[s]
        out_u8[d + 1] = ev_u8[s + 1]
        out_u8[d + 2] = ev_u8[s + 2]
        out_u8[d + 3] = ev_u8[s + 3]
        out_u8[d + 4] = ev_u8[s + 4]
        out_u8[d + 5] = 0
        out_u8[d + 6] = 0
        out_u8[d + 7] = 0
    return n


def check_point_fields(fields, point_step: int, is_bigendian: bool = False) -> None:
    """Raise :class:`WireError` unless ``fields`` (objects with name/offset/datatype/count) are the contract's."""
    if is_bigendian:
        raise WireError("event PointCloud2 must be little-endian (is_bigendian false)")
    if point_step != POINT_STEP:
        raise WireError(f"event PointCloud2 point_step is {point_step}, expected {POINT_STEP}")
    got = {f.name: (int(f.offset), int(f.datatype), int(f.count)) for f in fields}
    want = {f.name: (f.offset, f.datatype, f.count) for f in POINT_FIELDS}
    if got != want:
        missing = sorted(set(want) - set(got))
        wrong = sorted(k for k in set(want) & set(got) if got[k] != want[k])
        extra = sorted(set(got) - set(want))
        raise WireError(
            "event PointCloud2 fields do not match the contract (x UINT16@0, y UINT16@2, p INT8@4, t INT32@8):"
            + (f" missing {missing}" if missing else "")
            + (f" wrong {[(k, got[k]) for k in wrong]}" if wrong else "")
            + (f" unexpected {extra}" if extra else "")
        )


def events_to_wire(events: np.ndarray, t_ref_us: int | None = None) -> tuple[np.ndarray, int]:
    """Events -> (wire array, t_ref_us). ``t`` becomes ``events.t - t_ref_us`` as int32.

    ``t_ref_us`` defaults to the first event's time (the contract's ``header.stamp``). Raises
    :class:`WireError` when the packet spans more than 2^31 us or has events before ``t_ref_us``
    beyond the int32 range.
    """
    if events.dtype != EVENT_DTYPE:
        raise WireError(f"events have dtype {events.dtype}, expected EVENT_DTYPE")
    n = len(events)
    if t_ref_us is None:
        t_ref_us = int(events["t"][0]) if n else 0
    out = np.empty(n, dtype=WIRE_DTYPE)
    if n == 0:
        return out, int(t_ref_us)
    t = events["t"]
    lo = int(t.min()) - t_ref_us
    hi = int(t.max()) - t_ref_us
    if lo < _I32_MIN or hi > _I32_MAX:
        raise WireError(
            f"packet spans {lo}..{hi} us around its stamp; the contract's int32 't' allows at most 2^31 us "
            "(split the packet)"
        )
    src = np.ascontiguousarray(events).view(np.uint8)
    _to_wire_kernel(src, out.view(np.uint8), 0)
    np.subtract(t, t_ref_us, out=out["t"], casting="unsafe")
    return out, int(t_ref_us)


def wire_bytes(wire: np.ndarray) -> np.ndarray:
    """Zero-copy ``uint8`` view of a :data:`WIRE_DTYPE` array (what goes into ``PointCloud2.data``)."""
    if wire.dtype != WIRE_DTYPE:
        raise WireError(f"expected a WIRE_DTYPE array, got {wire.dtype}")
    return np.ascontiguousarray(wire).view(np.uint8)


def wire_view(buf) -> np.ndarray:
    """Zero-copy :data:`WIRE_DTYPE` view of a PointCloud2 ``data`` buffer (bytes, array.array, numpy)."""
    mv = memoryview(buf)
    if mv.nbytes % POINT_STEP:
        raise WireError(f"PointCloud2 data has {mv.nbytes} bytes, not a multiple of point_step {POINT_STEP}")
    return np.frombuffer(mv, dtype=WIRE_DTYPE)


def wire_to_events(wire: np.ndarray, t_ref_us: int) -> np.ndarray:
    """Wire array (or a view of a message buffer) -> a new EVENT_DTYPE array with absolute ``t``."""
    if wire.dtype != WIRE_DTYPE:
        wire = wire_view(wire)
    out = np.empty(len(wire), dtype=EVENT_DTYPE)
    out["x"] = wire["x"]
    out["y"] = wire["y"]
    out["p"] = wire["p"]
    np.add(wire["t"], np.int64(t_ref_us), out=out["t"])
    return out


# --- images ---------------------------------------------------------------------------------------------

IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype("<u2"), 1),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "32FC1": (np.dtype("<f4"), 1),
    "32FC2": (np.dtype("<f4"), 2),
    "16UC2": (np.dtype("<u2"), 2),
}


def image_buffer(array: np.ndarray, encoding: str) -> tuple[int, int, int, np.ndarray]:
    """(height, width, step, uint8 view) of an (H, W) or (H, W, C) array for ``sensor_msgs/Image``.

    Zero copy when ``array`` is C-contiguous with the encoding's dtype; otherwise one cast/copy.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise WireError(f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dtype, ch = IMAGE_ENCODINGS[encoding]
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] != ch:
        raise WireError(f"encoding {encoding} needs shape (H, W{', ' + str(ch) if ch > 1 else ''}), got {array.shape}")
    a = np.ascontiguousarray(a, dtype=dtype)
    h, w = a.shape[:2]
    return h, w, w * ch * dtype.itemsize, a.reshape(-1).view(np.uint8)


def image_view(data, height: int, width: int, step: int, encoding: str, is_bigendian: bool = False) -> np.ndarray:
    """Zero-copy numpy view (H, W) or (H, W, C) of an Image message buffer, checked against its header."""
    if encoding not in IMAGE_ENCODINGS:
        raise WireError(f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dtype, ch = IMAGE_ENCODINGS[encoding]
    if is_bigendian and dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">")
    row = width * ch * dtype.itemsize
    mv = memoryview(data)
    if step < row:
        raise WireError(f"image step {step} is less than width*channels*bytes = {row}")
    if mv.nbytes < step * height:
        raise WireError(f"image data has {mv.nbytes} bytes, expected step*height = {step * height}")
    raw = np.frombuffer(mv, dtype=np.uint8, count=step * height).reshape(height, step)
    if step != row:
        raw = raw[:, :row]
    out = raw.view(dtype) if step == row else np.ascontiguousarray(raw).view(dtype)
    out = out.reshape(height, width, ch)
    return out[:, :, 0] if ch == 1 else out

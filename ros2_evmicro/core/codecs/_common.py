"""Shared pieces of the codecs: the error class, the trigger dtype and buffer helpers."""

from __future__ import annotations

import numpy as np

from ros2_evmicro.core.events import EVENT_DTYPE

__all__ = [
    "TRIGGER_DTYPE",
    "CodecError",
    "as_u8",
    "empty_triggers",
    "events_from_buffer",
    "triggers_from_buffer",
]

TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("id", "u1"), ("value", "u1")])
"""External trigger edges: ``t`` sensor time in microseconds (unwrapped), ``id`` the trigger channel,
``value`` 1 for a rising edge, 0 for a falling one."""


class CodecError(ValueError):
    """An event file or packet cannot be decoded or encoded (format, header, geometry, truncation)."""


def empty_triggers(n: int = 0) -> np.ndarray:
    """A zero-filled trigger array of length ``n``."""
    return np.zeros(int(n), dtype=TRIGGER_DTYPE)


def as_u8(chunk) -> np.ndarray:
    """A read-only 1-D uint8 view of ``bytes``/``bytearray``/``memoryview``/numpy data (no copy)."""
    if isinstance(chunk, np.ndarray):
        if chunk.dtype != np.uint8 or chunk.ndim != 1:
            chunk = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
        return chunk
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return np.frombuffer(chunk, dtype=np.uint8)
    raise CodecError(f"expected bytes, bytearray, memoryview or a numpy array, got {type(chunk).__name__}")


def events_from_buffer(buf64: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of an int64 (cap, 2) output buffer as an EVENT_DTYPE array.

    The buffer is the kernels' view of the event array (row = ``x | y << 16 | p << 32``, ``t``): when it
    is more than half full the slice is returned as a view, otherwise copied so that the large
    preallocation is freed.
    """
    ev = buf64.reshape(-1).view(EVENT_DTYPE)
    if n * 2 >= len(ev):
        return ev[:n]
    return ev[:n].copy()


def triggers_from_buffer(tbuf: np.ndarray, n: int) -> np.ndarray:
    """Convert the first ``n`` rows of an int64 (cap, 3) trigger buffer (t, id, value) to TRIGGER_DTYPE."""
    out = np.empty(n, dtype=TRIGGER_DTYPE)
    if n:
        out["t"] = tbuf[:n, 0]
        out["id"] = tbuf[:n, 1]
        out["value"] = tbuf[:n, 2]
    return out


def new_event_buffer(cap: int) -> np.ndarray:
    """An uninitialised int64 (cap, 2) buffer that views as ``cap`` EVENT_DTYPE records."""
    return np.empty((max(int(cap), 1), 2), dtype=np.int64)

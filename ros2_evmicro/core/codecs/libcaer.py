"""libcaer polarity events (iniVation DVS/DAVIS/DVXplorer), as in ``EventPacket`` encoding ``libcaer``.

Each event is 8 little-endian bytes: ``uint32 data`` (bit 0 valid, bit 1 polarity, bits 2-16 y,
bits 17-31 x) and ``int32 timestamp`` (microseconds, counts up to 2^31 - 1 and wraps to 0). The decoder
drops invalid events (counted in ``n_invalid``), drops events outside the geometry, and unwraps the
timestamp to int64 microseconds across calls: a step back of more than 2^30 us is a wrap (+2^31).
"""

from __future__ import annotations

import numba
import numpy as np

from ros2_evmicro.core.codecs._common import CodecError, as_u8
from ros2_evmicro.core.events import EVENT_DTYPE

__all__ = ["LibcaerDecoder", "decode_libcaer", "encode_libcaer"]

WRAP_US = 1 << 31


@numba.njit(cache=True, nogil=True)
def _libcaer_kernel(data, ts, state, out, width, height):
    """Decode (data, ts) pairs; state = [wraps, last ts, have_last, invalid, out of bounds]."""
    wraps = state[0]
    last = state[1]
    have = state[2]
    invalid = state[3]
    oob = state[4]
    n = 0
    for i in range(data.shape[0]):
        d = np.int64(data[i])
        t = np.int64(ts[i])
        if have != 0 and t < last - (1 << 30):
            wraps += 1
        last = t
        have = 1
        if (d & 1) == 0:
            invalid += 1
            continue
        x = (d >> 17) & 0x7FFF
        y = (d >> 2) & 0x7FFF
        if x >= width or y >= height:
            oob += 1
            continue
        out[n, 0] = x | (y << 16) | (((d >> 1) & 1) << 32)
        out[n, 1] = (wraps << 31) + t
        n += 1
    state[0] = wraps
    state[1] = last
    state[2] = have
    state[3] = invalid
    state[4] = oob
    return n


class LibcaerDecoder:
    """Streaming decoder of 8-byte libcaer polarity events into EVENT_DTYPE (time unwrapped, us)."""

    def __init__(self, width: int, height: int) -> None:
        if not (0 < int(width) <= 32768 and 0 < int(height) <= 32768):
            raise CodecError(f"libcaer geometry {width}x{height} is outside 1..32768 pixels per side")
        self.width = int(width)
        self.height = int(height)
        self._state = np.zeros(8, dtype=np.int64)
        self._pending = b""
        self.n_events = 0

    @property
    def n_invalid(self) -> int:
        """Events whose valid bit was clear (dropped)."""
        return int(self._state[3])

    @property
    def n_dropped_out_of_bounds(self) -> int:
        return int(self._state[4])

    @property
    def n_wraps(self) -> int:
        """Wraps of the 31-bit timestamp seen so far."""
        return int(self._state[0])

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def decode(self, chunk) -> np.ndarray:
        """Decode the next chunk (any length; an incomplete trailing event is kept for the next call)."""
        data = as_u8(chunk)
        if self._pending:
            data = np.concatenate([np.frombuffer(self._pending, dtype=np.uint8), data])
        n = data.shape[0] // 8
        self._pending = data[n * 8 :].tobytes()
        body = data[: n * 8]
        if body.ctypes.data % 8:
            body = body.copy()
        rec = body.view(np.dtype([("data", "<u4"), ("ts", "<i4")]))
        out = np.empty((max(n, 1), 2), dtype=np.int64)
        k = _libcaer_kernel(rec["data"], rec["ts"], self._state, out, self.width, self.height)
        self.n_events += k
        return out.reshape(-1).view(EVENT_DTYPE)[:k]


def decode_libcaer(buf, width: int, height: int) -> np.ndarray:
    """Decode a whole buffer of libcaer polarity events."""
    return LibcaerDecoder(width, height).decode(buf)


def encode_libcaer(events: np.ndarray) -> bytes:
    """Encode EVENT_DTYPE events as libcaer polarity events (valid bit set, timestamp = t mod 2^31)."""
    rec = np.empty(len(events), dtype=np.dtype([("data", "<u4"), ("ts", "<i4")]))
    if len(events) and (int(events["x"].max()) >= 32768 or int(events["y"].max()) >= 32768):
        raise CodecError("libcaer encodes coordinates below 32768")
    if len(events) and int(events["t"].min()) < 0:
        raise CodecError("libcaer encodes non-negative times only")
    rec["data"] = (
        1
        | (events["p"].astype(np.uint32) & 1) << 1
        | events["y"].astype(np.uint32) << 2
        | events["x"].astype(np.uint32) << 17
    )
    rec["ts"] = (events["t"] % WRAP_US).astype(np.int32)
    return rec.tobytes()

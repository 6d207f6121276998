"""Prophesee EVT 2.0: a streaming numba decoder and an encoder.

EVT 2.0 is a stream of little-endian 32-bit words; the top 4 bits give the type (Prophesee's format
documentation):

====  ==============  ========================================================================
type  name            payload
====  ==============  ========================================================================
0x0   CD_OFF          time low = bits 22-27 (6 bits, us), x = bits 11-21, y = bits 0-10
0x1   CD_ON           same, ON polarity
0x8   EVT_TIME_HIGH   time high = bits 0-27 (units of 64 us)
0xA   EXT_TRIGGER     time low = bits 22-27, channel id = bits 8-12, value (edge) = bit 0
0xE   OTHERS          skipped
0xF   CONTINUED       skipped
====  ==============  ========================================================================

Sensor time is ``TIME_HIGH << 6 | time low`` (34 bits, wraps every 2^34 us, about 4.8 h); the decoder
unwraps it (a TIME_HIGH moves to the nearest value with the same 28 bits). Events before the first
TIME_HIGH are dropped (``n_dropped_before_time``), events outside the geometry are dropped
(``n_dropped_out_of_bounds``), reserved word types are skipped (``n_unknown_words``).
"""

from __future__ import annotations

import numba
import numpy as np

from ros2_evmicro.core.codecs._stream import StreamingDecoder
from ros2_evmicro.core.codecs.evt3 import _check_events, _check_triggers

__all__ = ["Evt2Decoder", "decode_evt2", "decode_evt2_with_triggers", "encode_evt2"]

_HIGH_BITS = 28
_HIGH_MASK = (1 << _HIGH_BITS) - 1
_HIGH_HALF = 1 << (_HIGH_BITS - 1)


@numba.njit(cache=True, nogil=True)
def _evt2_kernel(words, i0, state, out, n0, trig, nt0, width, height):
    """Decode ``words[i0:]`` into ``out[n0:]`` (int64 rows ``x | y<<16 | p<<32``, ``t``) and ``trig``.

    Returns (next word index, events written, triggers written); stops early, before a block of words
    that could overflow ``out`` or ``trig`` (one row a word).
    """
    abs_high = state[0]
    valid = state[5]
    oob = state[6]
    notime = state[7]
    unknown = state[8]
    cap = out.shape[0]
    tcap = trig.shape[0]
    o = out.reshape(-1)
    n = np.uint64(n0)
    nt = nt0
    nw = words.shape[0]
    i = i0
    wdt = np.int64(width)
    hgt = np.int64(height)
    while i < nw:
        room = min(cap - np.int64(n) - 1, tcap - nt, 4096)
        if room <= 0:
            break
        end = min(nw, i + room)
        for j in range(i, end):
            w = np.int64(words[j])
            code = w >> 28
            if code <= 1:  # CD_OFF / CD_ON
                x = (w >> 11) & 0x7FF
                y = w & 0x7FF
                k = np.uint64(2) * n
                o[k] = x | (y << 16) | (code << 32)
                o[k + np.uint64(1)] = (abs_high << 6) | ((w >> 22) & 0x3F)
                inb = -np.int64(x < wdt) & -np.int64(y < hgt)
                ok = inb & -valid
                n += np.uint64(ok & 1)
                oob += (~inb & -valid) & 1
                notime += 1 - valid
            elif code == 8:  # EVT_TIME_HIGH
                d = w & _HIGH_MASK
                if valid == 0:
                    abs_high = d
                    valid = 1
                else:
                    delta = (d - abs_high) & _HIGH_MASK
                    if delta >= _HIGH_HALF:
                        delta -= 1 << _HIGH_BITS
                    abs_high += delta
            elif code == 10:  # EXT_TRIGGER
                if valid != 0:
                    trig[nt, 0] = (abs_high << 6) | ((w >> 22) & 0x3F)
                    trig[nt, 1] = (w >> 8) & 0x1F
                    trig[nt, 2] = w & 1
                    nt += 1
            elif code < 14:
                unknown += 1
        i = end
    state[0] = abs_high
    state[5] = valid
    state[6] = oob
    state[7] = notime
    state[8] = unknown
    return i, np.int64(n), nt


class Evt2Decoder(StreamingDecoder):
    """Streaming EVT 2.0 decoder: ``decode(chunk)`` returns the EVENT_DTYPE events of each chunk.

    Chunks may be split at any byte (up to 3 trailing bytes are kept for the next call); time is
    unwrapped to int64 microseconds. Trigger edges go to :attr:`triggers` / :attr:`last_triggers`.
    """

    WORD_BYTES = 4
    WORD_DTYPE = np.dtype("<u4")
    MAX_EVENTS_PER_WORD = 1
    MAX_COORD = 2048
    FORMAT = "EVT 2.0"
    _kernel = staticmethod(_evt2_kernel)


def decode_evt2(buf, width: int, height: int) -> np.ndarray:
    """Decode a whole EVT 2.0 payload (bytes or uint8 array, no header) into an EVENT_DTYPE array."""
    return Evt2Decoder(width, height).decode(buf)


def decode_evt2_with_triggers(buf, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole EVT 2.0 payload; return (events, trigger edges)."""
    dec = Evt2Decoder(width, height)
    ev = dec.decode(buf)
    return ev, dec.triggers


@numba.njit(cache=True, nogil=True)
def _evt2_encode_kernel(x, y, p, t, tt, tid, tval, out):
    n = x.shape[0]
    ntr = tt.shape[0]
    cur = np.int64(-1)
    k = 0
    i = 0
    j = 0
    while i < n or j < ntr:
        is_trig = j < ntr and (i >= n or tt[j] <= t[i])
        tv = tt[j] if is_trig else t[i]
        h = tv >> 6
        if h != cur:
            if cur >= 0:
                while h - cur >= _HIGH_HALF:
                    cur += _HIGH_HALF >> 1
                    out[k] = (8 << 28) | (cur & _HIGH_MASK)
                    k += 1
                while cur - h >= _HIGH_HALF:
                    cur -= _HIGH_HALF >> 1
                    out[k] = (8 << 28) | (cur & _HIGH_MASK)
                    k += 1
            out[k] = (8 << 28) | (h & _HIGH_MASK)
            k += 1
            cur = h
        if is_trig:
            out[k] = (10 << 28) | ((tv & 0x3F) << 22) | ((tid[j] & 0x1F) << 8) | (tval[j] & 1)
            j += 1
        else:
            out[k] = (p[i] << 28) | ((tv & 0x3F) << 22) | (x[i] << 11) | y[i]
            i += 1
        k += 1
    return k


def encode_evt2(events: np.ndarray, triggers: np.ndarray | None = None) -> bytes:
    """Encode EVENT_DTYPE events (in stream order) and optional trigger edges as an EVT 2.0 payload.

    A TIME_HIGH word is written whenever the 64-us time high changes (and repeated for jumps of half
    the 2^34-us range or more); time may step back between events by at most 2^32 us.
    """
    events = _check_events(events, "EVT 2.0", 2048, 1 << 32)
    trig = _check_triggers(triggers, "EVT 2.0")
    n = len(events)
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    tt = np.ascontiguousarray(trig["t"], dtype=np.int64)
    cap = 2 * (n + len(tt)) + 16
    if n and len(tt):
        cap += 2 * (abs(int(tt[0]) - int(t[0])) + abs(int(tt[-1]) - int(t[-1]))) // (1 << 32)
    out = np.empty(cap, dtype=np.uint32)
    k = _evt2_encode_kernel(
        np.ascontiguousarray(events["x"], dtype=np.int64),
        np.ascontiguousarray(events["y"], dtype=np.int64),
        np.ascontiguousarray(events["p"], dtype=np.int64),
        t,
        tt,
        np.ascontiguousarray(trig["id"], dtype=np.int64),
        np.ascontiguousarray(trig["value"], dtype=np.int64),
        out,
    )
    return out[:k].astype("<u4", copy=False).tobytes()

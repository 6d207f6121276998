"""Prophesee EVT 3.0: a streaming numba decoder and an encoder.

EVT 3.0 is a stream of little-endian 16-bit words; the top 4 bits give the type, the 12 low bits the
payload. The decoder keeps a state that the words update (Prophesee's format documentation):

====  ==============  ========================================================================
type  name            payload
====  ==============  ========================================================================
0x0   EVT_ADDR_Y      y = bits 0-10 (bit 11: system type, ignored); sets the current row
0x2   EVT_ADDR_X      x = bits 0-10, polarity = bit 11: one CD event at (x, current row)
0x3   VECT_BASE_X     base x = bits 0-10, polarity = bit 11, for the vector words that follow
0x4   VECT_12         12-bit mask: event at base x + i for every set bit i; base x += 12
0x5   VECT_8          8-bit mask (bits 0-7): same, base x += 8
0x6   EVT_TIME_LOW    time low = bits 0-11 (microseconds)
0x7   CONTINUED_4     continuation of an OTHERS word, skipped
0x8   EVT_TIME_HIGH   time high = bits 0-11 (units of 4096 microseconds)
0xA   EXT_TRIGGER     value (edge) = bit 0, channel id = bits 8-11
0xE   OTHERS          skipped (with its CONTINUED_12 words)
0xF   CONTINUED_12    skipped
====  ==============  ========================================================================

Sensor time is ``TIME_HIGH << 12 | TIME_LOW`` (24 bits, wraps every 2^24 us = 16.8 s). The decoder
unwraps it to int64 microseconds: each TIME_HIGH moves the unwrapped time high to the nearest value
with the same 12 low bits, i.e. a step back of more than half the range (2048 x 4096 us) is a wrap and
a small step back (the sensor's reorder jitter) stays a step back. Events before the first TIME_HIGH
have no absolute time and are dropped (counted in ``n_dropped_before_time``); events outside the given
geometry are dropped and counted in ``n_dropped_out_of_bounds``. Reserved word types (0x1, 0x9, 0xB,
0xC, 0xD) are skipped and counted in ``n_unknown_words``.
"""

from __future__ import annotations

import numba
import numpy as np

from ros2_evmicro.core.codecs._common import TRIGGER_DTYPE, CodecError
from ros2_evmicro.core.codecs._stream import StreamingDecoder

__all__ = ["Evt3Decoder", "decode_evt3", "decode_evt3_with_triggers", "encode_evt3"]

TIME_HIGH_STEP_US = 4096
WRAP_US = 1 << 24
# word types handled in the branchy path: 1, 4, 5 and 7-15 (0, 2, 3, 6 are decoded branch-free)
_SLOW_CODES = 0xFFB2


@numba.njit(cache=True, nogil=True)
def _evt3_kernel(words, i0, state, out, n0, trig, nt0, width, height):  # noqa: C901, PLR0912, PLR0915
    """Decode ``words[i0:]`` into ``out[n0:]`` (int64 rows ``x | y<<16 | p<<32``, ``t``) and ``trig``.

    Returns (next word index, events written, triggers written); stops early, before a block of words
    that could overflow ``out`` or ``trig``, so that the caller can grow them and call again (the state
    is saved at the word it stopped on).

    Speed: the frequent word types (ADDR_Y, ADDR_X, VECT_BASE_X, TIME_LOW) are decoded without
    branches (every ADDR_X row is written and the row count advances by 0 or 1; the state updates are
    masked selects), which avoids the branch mispredictions that dominate a switch on the word type;
    vector words write all 8/12 candidate rows the same way.
    """
    abs_high = state[0]
    low = state[1]
    y = state[2]
    bx = state[3]
    pol = state[4]
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
    # until the first TIME_HIGH there is no absolute time: track the state, drop the events
    while valid == 0 and i < nw:
        w = np.int64(words[i])
        code = w >> 12
        d = w & 0xFFF
        if code == 8:
            abs_high = d
            valid = 1
        elif code == 2:
            notime += 1
        elif code == 4 or code == 5:
            m = d if code == 4 else d & 0xFF
            while m:
                notime += m & 1
                m >>= 1
            bx += 12 if code == 4 else 8
        elif code == 0:
            y = d & 0x7FF
        elif code == 6:
            low = d
        elif code == 3:
            bx = d & 0x7FF
            pol = d >> 11
        elif code == 1 or code == 9 or code == 11 or code == 12 or code == 13:
            unknown += 1
        i += 1
    tnow = (abs_high << 12) | low
    ysh = y << 16
    yok = -np.int64(y < hgt)  # all ones while the row is inside the sensor
    while i < nw:
        # a block of words that cannot overflow ``out`` (12 rows a word) nor ``trig`` (1 a word)
        room = min((cap - np.int64(n)) // 12 - 1, tcap - nt, 4096)
        if room <= 0:
            break
        end = min(nw, i + room)
        for j in range(i, end):
            w = np.int64(words[j])
            code = w >> 12
            d = w & 0xFFF
            if (_SLOW_CODES >> code) & 1:
                if code == 5 or code == 4:
                    yp = ysh | (pol << 32)
                    if code == 5:
                        for b in range(8):
                            k = np.uint64(2) * n
                            x = bx + b
                            o[k] = x | yp
                            o[k + np.uint64(1)] = tnow
                            bit = (d >> b) & 1
                            ok = bit & yok & -np.int64(x < wdt)
                            n += np.uint64(ok)
                            oob += bit - ok
                        bx += 8
                    else:
                        for b in range(12):
                            k = np.uint64(2) * n
                            x = bx + b
                            o[k] = x | yp
                            o[k + np.uint64(1)] = tnow
                            bit = (d >> b) & 1
                            ok = bit & yok & -np.int64(x < wdt)
                            n += np.uint64(ok)
                            oob += bit - ok
                        bx += 12
                elif code == 8:  # EVT_TIME_HIGH: move to the nearest value with these 12 bits
                    delta = (d - abs_high) & 0xFFF
                    delta -= (delta >> 11) << 12
                    abs_high += delta
                    tnow = (abs_high << 12) | low
                elif code == 10:  # EXT_TRIGGER
                    trig[nt, 0] = tnow
                    trig[nt, 1] = (d >> 8) & 0xF
                    trig[nt, 2] = d & 1
                    nt += 1
                elif code == 1 or code == 9 or code == 11 or code == 12 or code == 13:
                    unknown += 1
                # 7 CONTINUED_4, 14 OTHERS, 15 CONTINUED_12: skipped
            else:  # 0 ADDR_Y, 2 ADDR_X, 3 VECT_BASE_X, 6 TIME_LOW: branch-free
                x = d & 0x7FF
                k = np.uint64(2) * n
                o[k] = x | ysh | ((d >> 11) << 32)
                o[k + np.uint64(1)] = tnow
                isx = -np.int64(code == 2)
                ok = isx & yok & -np.int64(x < wdt)
                n += np.uint64(ok & 1)
                oob += (isx & ~ok) & 1
                isy = -np.int64(code == 0)
                y = (x & isy) | (y & ~isy)
                ysh = y << 16
                yok = -np.int64(y < hgt)
                isl = -np.int64(code == 6)
                low = (d & isl) | (low & ~isl)
                tnow = (abs_high << 12) | low
                isb = -np.int64(code == 3)
                bx = (x & isb) | (bx & ~isb)
                pol = ((d >> 11) & isb) | (pol & ~isb)
        i = end
    state[0] = abs_high
    state[1] = low
    state[2] = y
    state[3] = bx
    state[4] = pol
    state[5] = valid
    state[6] = oob
    state[7] = notime
    state[8] = unknown
    return i, np.int64(n), nt


class Evt3Decoder(StreamingDecoder):
    """Streaming EVT 3.0 decoder: ``decode(chunk)`` returns the EVENT_DTYPE events of each chunk.

    Chunks may be split at any byte (an odd trailing byte is kept for the next call); time is unwrapped
    to int64 microseconds across chunks. Trigger edges go to :attr:`triggers` / :attr:`last_triggers`
    (TRIGGER_DTYPE: t us, id, value). ``width``/``height`` (pixels, at most 2048) bound the coordinates:
    events outside are dropped and counted in :attr:`n_dropped_out_of_bounds`.
    """

    WORD_BYTES = 2
    WORD_DTYPE = np.dtype("<u2")
    MAX_EVENTS_PER_WORD = 12
    MAX_COORD = 2048
    FORMAT = "EVT 3.0"
    _kernel = staticmethod(_evt3_kernel)

    @property
    def time_us(self) -> int | None:
        """The decoder's current sensor time in microseconds (None before the first TIME_HIGH)."""
        if not self.has_time:
            return None
        return int((self._state[0] << 12) | self._state[1])


def decode_evt3(buf, width: int, height: int) -> np.ndarray:
    """Decode a whole EVT 3.0 payload (bytes or uint8 array, no header) into an EVENT_DTYPE array."""
    return Evt3Decoder(width, height).decode(buf)


def decode_evt3_with_triggers(buf, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole EVT 3.0 payload; return (events, trigger edges)."""
    dec = Evt3Decoder(width, height)
    ev = dec.decode(buf)
    return ev, dec.triggers


# ------------------------------------------------------------------------------------------ encoder


@numba.njit(cache=True, nogil=True)
def _emit_time(out, k, t, cur):
    """Write TIME_HIGH (with fill words for jumps of half the wrap or more) and TIME_LOW words for ``t``.

    ``cur`` holds [absolute time high, time low] of the stream so far (-1 before the first word).
    """
    h = t >> 12
    lo = t & 0xFFF
    if h != cur[0]:
        if cur[0] >= 0:
            while h - cur[0] >= 2048:
                cur[0] += 1024
                out[k] = 0x8000 | (cur[0] & 0xFFF)
                k += 1
            while cur[0] - h >= 2048:
                cur[0] -= 1024
                out[k] = 0x8000 | (cur[0] & 0xFFF)
                k += 1
        out[k] = 0x8000 | (h & 0xFFF)
        k += 1
        cur[0] = h
        cur[1] = -1
    if lo != cur[1]:
        out[k] = 0x6000 | lo
        k += 1
        cur[1] = lo
    return k


@numba.njit(cache=True, nogil=True)
def _evt3_encode_kernel(x, y, p, t, tt, tid, tval, out, use_vectors):  # noqa: PLR0912
    """Encode events (sorted as given) and trigger edges, merged by time, into 16-bit words."""
    n = x.shape[0]
    ntr = tt.shape[0]
    cur = np.full(2, -1, dtype=np.int64)
    cur_y = -1
    k = 0
    i = 0
    j_tr = 0
    while i < n or j_tr < ntr:
        if j_tr < ntr and (i >= n or tt[j_tr] <= t[i]):
            k = _emit_time(out, k, tt[j_tr], cur)
            out[k] = 0xA000 | ((tid[j_tr] & 0xF) << 8) | (tval[j_tr] & 1)
            k += 1
            j_tr += 1
            continue
        k = _emit_time(out, k, t[i], cur)
        if y[i] != cur_y:
            out[k] = y[i]
            k += 1
            cur_y = y[i]
        # a run of events with the same time, row and polarity and increasing x (gaps of at most 12)
        j = i + 1
        if use_vectors:
            while (
                j < n
                and t[j] == t[i]
                and y[j] == y[i]
                and p[j] == p[i]
                and x[j] > x[j - 1]
                and x[j] - x[j - 1] <= 12
            ):
                j += 1
        if j - i >= 3:
            out[k] = 0x3000 | (p[i] << 11) | x[i]
            k += 1
            base = x[i]
            q = i
            while q < j:
                span = 8 if x[j - 1] - base < 8 else 12
                m = 0
                while q < j and x[q] - base < span:
                    m |= 1 << (x[q] - base)
                    q += 1
                out[k] = (0x5000 if span == 8 else 0x4000) | m
                k += 1
                base += span
        else:
            for q in range(i, j):
                out[k] = 0x2000 | (p[q] << 11) | x[q]
                k += 1
        # triggers at the same time as the run come after it; the loop head handles them
        i = j
    return k


def _check_events(events: np.ndarray, fmt: str, max_coord: int, max_back_us: int) -> np.ndarray:
    if (
        not isinstance(events, np.ndarray)
        or events.dtype.names is None
        or not {"x", "y", "p", "t"} <= set(events.dtype.names)
    ):
        raise CodecError(f"{fmt} encoder needs a structured array with fields x, y, p, t (EVENT_DTYPE)")
    if len(events) == 0:
        return events
    if int(events["x"].max()) >= max_coord or int(events["y"].max()) >= max_coord:
        raise CodecError(f"{fmt} encodes coordinates below {max_coord}, got x or y beyond")
    p = events["p"]
    if int(p.min()) < 0 or int(p.max()) > 1:
        raise CodecError(f"{fmt} polarity must be 0 or 1")
    t = events["t"]
    if int(t.min()) < 0:
        raise CodecError(f"{fmt} encodes non-negative times only, got t={int(t.min())} us")
    if len(t) > 1 and int(np.diff(t).min()) < -max_back_us:
        raise CodecError(f"{fmt} stream time may step back by at most {max_back_us} us between events")
    return events


def _check_triggers(triggers, fmt: str) -> np.ndarray:
    if triggers is None:
        return np.zeros(0, dtype=TRIGGER_DTYPE)
    trig = np.asarray(triggers)
    if trig.dtype.names is None or not {"t", "id", "value"} <= set(trig.dtype.names):
        raise CodecError(f"{fmt} encoder needs triggers as a structured array with fields t, id, value")
    if len(trig) and (int(trig["t"].min()) < 0 or np.any(np.diff(trig["t"]) < 0)):
        raise CodecError(f"{fmt} trigger times must be non-negative and sorted")
    return trig


def encode_evt3(events: np.ndarray, triggers: np.ndarray | None = None, *, use_vectors: bool = True) -> bytes:
    """Encode EVENT_DTYPE events (in stream order) and optional trigger edges as an EVT 3.0 payload.

    Runs of at least 3 events with the same time, row and polarity and increasing x are written as
    VECT_BASE_X + VECT_12/VECT_8 words (``use_vectors``), others as EVT_ADDR_X words. TIME_HIGH words
    are repeated as needed so that :class:`Evt3Decoder` unwraps jumps of any length. Time may step back
    between events by at most 2^22 us (sensor jitter is a few us). Triggers (TRIGGER_DTYPE, sorted) are
    merged into the stream by time. Decoding the result gives back the same events and triggers.
    """
    events = _check_events(events, "EVT 3.0", 2048, 1 << 22)
    trig = _check_triggers(triggers, "EVT 3.0")
    n = len(events)
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    tt = np.ascontiguousarray(trig["t"], dtype=np.int64)
    span = 0
    if n:
        span += int(t.max() - t.min())
    if len(tt):
        span += int(tt.max() - tt.min()) + (abs(int(tt[0]) - int(t[0])) if n else 0)
    cap = 4 * n + 3 * len(tt) + 2 * (span >> 22) + 16
    out = np.empty(cap, dtype=np.uint16)
    k = _evt3_encode_kernel(
        np.ascontiguousarray(events["x"], dtype=np.int64),
        np.ascontiguousarray(events["y"], dtype=np.int64),
        np.ascontiguousarray(events["p"], dtype=np.int64),
        t,
        tt,
        np.ascontiguousarray(trig["id"], dtype=np.int64),
        np.ascontiguousarray(trig["value"], dtype=np.int64),
        out,
        bool(use_vectors),
    )
    return out[:k].astype("<u2", copy=False).tobytes()

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

Speed. The numba kernel decodes blocks of 4096 words; a vectorised pre-pass checks a block's
coordinates against the geometry, and blocks inside it (all of them in a sane recording) are decoded
without bounds checks and without branches for the frequent word types (see :func:`_block_fast`).

Threads. A chunk of at least ``2 * PARALLEL_MIN_WORDS`` words (512 Ki words, 1 MiB) is decoded by
several threads, slice by slice, with a result identical to the sequential decode: the chunk is cut
at TIME_HIGH words; a parallel scan counts each slice's events and triggers and unwraps its time high;
the state at each cut (time high, time low, row, vector base and polarity) follows from the scans of
the slices before; then every slice decodes into its own rows of one output array, sized
exactly, so that no trimming copy follows (events outside the geometry, which the scan counts, leave
gaps that are closed by moving the later slices down). The thread count is
``Evt3Decoder(threads=...)`` / ``decode_evt3(..., threads=...)``; the default ``None`` takes
``numba.get_num_threads()`` (all cores, or ``NUMBA_NUM_THREADS``, or what ``numba.set_num_threads``
set on the calling thread) at each call; ``threads=1`` is the sequential decoder. A chunk of ``n``
words is cut into at most ``min(SLICES_PER_THREAD * threads, n // PARALLEL_MIN_WORDS)`` slices, which
the threads take in turn (one thread slowed by other processes then takes fewer). The worker threads
come from one shared pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ros2_evmicro.core.codecs._common import (
    TRIGGER_DTYPE,
    CodecError,
    new_event_buffer,
)
from ros2_evmicro.core.codecs._stream import (
    N_STATE,
    S_BX,
    S_HIGH,
    S_LOW,
    S_NOTIME,
    S_OOB,
    S_POL,
    S_UNKNOWN,
    S_VALID,
    S_Y,
    TRIGGER_ROWS,
    StreamingDecoder,
)

__all__ = ["Evt3Decoder", "decode_evt3", "decode_evt3_with_triggers", "encode_evt3"]

TIME_HIGH_STEP_US = 4096
WRAP_US = 1 << 24
# word types handled in the branchy path: 1, 4, 5 and 7-15 (0, 2, 3, 6 are decoded branch-free)
_SLOW_CODES = 0xFFB2
BLOCK_WORDS = 4096  # words decoded per block; each block is first checked for coordinates outside the geometry
M32 = 0xFFFFFFFF
BX_SAT = 4096  # the vector base x saturates here (any x >= 2048 is outside every geometry)
SCAN_WORDS = 128  # words summed between two looks for TIME_HIGH / EXT_TRIGGER words in the parallel scan
PARALLEL_MIN_WORDS = 1 << 18  # words a slice at least: below, the parallel decode does not pay (measured)
SLICES_PER_THREAD = 4  # slices per thread, taken in turn: a thread slowed by other work takes fewer


@numba.njit(cache=True, nogil=True)
def _block_in_bounds(words, i, end, xlo, ylo):
    """True if no ADDR_X word of ``words[i:end]`` has x >= width and no ADDR_Y word has y >= height.

    With bit 11 (polarity / system type) cleared, ADDR_X words are 0x2000 + x and ADDR_Y words are y, so
    the bad words are those in [0x2000 + width, 0x2800) or [height, 0x800); ``xlo``/``ylo`` are the uint16
    lower ends. Written on uint16 words without branches so that LLVM vectorises it.
    """
    bad = False
    ws = words[i:end]
    for j in range(ws.shape[0]):
        k = ws[j] & np.uint16(0xF7FF)
        bad |= (k >= xlo) & (k < np.uint16(0x2800))
        bad |= (k >= ylo) & (k < np.uint16(0x0800))
    return not bad


@numba.njit(cache=True, nogil=True)
def _block_fast(words, i, end, o, n, trig, nt, tnow, ysh, bxp, cnt, wdt):  # noqa: C901, PLR0912
    """Decode ``words[i:end]``, a block whose ADDR_X/ADDR_Y coordinates are all inside the geometry.

    The state is packed to keep it in registers: ``tnow`` = time high << 12 | time low (unwrapped),
    ``ysh`` = row << 16, ``bxp`` = vector base x | polarity << 32 (the layout of an output row). The
    frequent word types (ADDR_Y, ADDR_X, VECT_BASE_X, TIME_LOW) are decoded without branches: every one
    writes a row at ``n`` and only ADDR_X advances ``n``; vector words write all 8/12 candidate rows and
    advance ``n`` by their bits, with an x check only when the vector reaches the right edge.
    ``cnt`` = [reserved words, out-of-bounds events] (rarely updated, kept in memory).
    """
    for j in range(np.uint64(i), np.uint64(end)):
        w = np.int64(words[j])
        code = w >> 12
        d = w & 0xFFF
        if (_SLOW_CODES >> code) & 1:
            # VECT_8 and VECT_12 are two copies on purpose: with the width a constant LLVM unrolls the bit loops;
            # one branch with a variable width measured 9 % slower (2026-11-28, threads=1)
            if code == 5:  # VECT_8
                if (bxp & M32) + 8 <= wdt:
                    for b in range(8):
                        k = np.uint64(2) * n
                        o[k] = (bxp + b) | ysh
                        o[k + np.uint64(1)] = tnow
                        n += np.uint64((d >> b) & 1)
                else:
                    for b in range(8):
                        k = np.uint64(2) * n
                        o[k] = (bxp + b) | ysh
                        o[k + np.uint64(1)] = tnow
                        bit = (d >> b) & 1
                        ok = bit & -np.int64((bxp & M32) + b < wdt)
                        n += np.uint64(ok)
                        cnt[1] += bit - ok
                    bxp = (bxp & ~M32) | min((bxp & M32) + 8, BX_SAT)
                    continue
                bxp += 8
            elif code == 4:  # VECT_12
                if (bxp & M32) + 12 <= wdt:
                    for b in range(12):
                        k = np.uint64(2) * n
                        o[k] = (bxp + b) | ysh
                        o[k + np.uint64(1)] = tnow
                        n += np.uint64((d >> b) & 1)
                else:
                    for b in range(12):
                        k = np.uint64(2) * n
                        o[k] = (bxp + b) | ysh
                        o[k + np.uint64(1)] = tnow
                        bit = (d >> b) & 1
                        ok = bit & -np.int64((bxp & M32) + b < wdt)
                        n += np.uint64(ok)
                        cnt[1] += bit - ok
                    bxp = (bxp & ~M32) | min((bxp & M32) + 12, BX_SAT)
                    continue
                bxp += 12
            elif code == 8:  # EVT_TIME_HIGH: move to the nearest value with these 12 bits
                high = tnow >> 12
                delta = (d - high) & 0xFFF
                delta -= (delta >> 11) << 12
                tnow = ((high + delta) << 12) | (tnow & 0xFFF)
            elif code == 10:  # EXT_TRIGGER
                trig[nt, 0] = tnow
                trig[nt, 1] = (d >> 8) & 0xF
                trig[nt, 2] = d & 1
                nt += 1
            elif code == 1 or code == 9 or code == 11 or code == 12 or code == 13:
                cnt[0] += 1
            # 7 CONTINUED_4, 14 OTHERS, 15 CONTINUED_12: skipped
        else:  # 0 ADDR_Y, 2 ADDR_X, 3 VECT_BASE_X, 6 TIME_LOW: branch-free
            xp = (d & 0x7FF) | ((d & 0x800) << 21)
            k = np.uint64(2) * n
            o[k] = xp | ysh
            o[k + np.uint64(1)] = tnow
            n += np.uint64(code == 2)
            isy = -np.int64(code == 0)
            ysh = (((d & 0x7FF) << 16) & isy) | (ysh & ~isy)
            isl = -np.int64(code == 6)
            tnow = (((tnow & ~0xFFF) | d) & isl) | (tnow & ~isl)
            isb = -np.int64(code == 3)
            bxp = (xp & isb) | (bxp & ~isb)
    return n, nt, tnow, ysh, bxp


@numba.njit(cache=True, nogil=True)
def _block_checked(words, i, end, o, n, trig, nt, tnow, ysh, bxp, cnt, wdt, hgt):  # noqa: C901, PLR0912, PLR0915
    """Decode ``words[i:end]`` like :func:`_block_fast`, checking every event against the geometry."""
    y = ysh >> 16
    yok = -np.int64(y < hgt)  # all ones while the row is inside the sensor
    bx = bxp & M32
    pol = bxp >> 32
    oob = 0
    for j in range(np.uint64(i), np.uint64(end)):
        w = np.int64(words[j])
        code = w >> 12
        d = w & 0xFFF
        if (_SLOW_CODES >> code) & 1:
            if code == 5 or code == 4:
                yp = ysh | (pol << 32)
                span = 12 if code == 4 else 8
                for b in range(span):
                    k = np.uint64(2) * n
                    x = bx + b
                    o[k] = x | yp
                    o[k + np.uint64(1)] = tnow
                    bit = (d >> b) & 1
                    ok = bit & yok & -np.int64(x < wdt)
                    n += np.uint64(ok)
                    oob += bit - ok
                bx = min(bx + span, BX_SAT)
            elif code == 8:
                high = tnow >> 12
                delta = (d - high) & 0xFFF
                delta -= (delta >> 11) << 12
                tnow = ((high + delta) << 12) | (tnow & 0xFFF)
            elif code == 10:
                trig[nt, 0] = tnow
                trig[nt, 1] = (d >> 8) & 0xF
                trig[nt, 2] = d & 1
                nt += 1
            elif code == 1 or code == 9 or code == 11 or code == 12 or code == 13:
                cnt[0] += 1
        else:
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
            tnow = (((tnow & ~0xFFF) | d) & isl) | (tnow & ~isl)
            isb = -np.int64(code == 3)
            bx = (x & isb) | (bx & ~isb)
            pol = ((d >> 11) & isb) | (pol & ~isb)
    cnt[1] += oob
    return n, nt, tnow, ysh, bx | (pol << 32)


@numba.njit(cache=True, nogil=True)
def _evt3_kernel(words, i0, state, out, n0, trig, nt0, width, height):  # noqa: C901, PLR0912
    """Decode ``words[i0:]`` into ``out[n0:]`` (int64 rows ``x | y<<16 | p<<32``, ``t``) and ``trig``.

    Returns (next word index, events written, triggers written); stops early, before a block of words
    that could overflow ``out`` or ``trig``, so that the caller can grow them and call again (the state
    is saved at the word it stopped on). Rows past the last event, up to 12, may be overwritten.

    Words are decoded in blocks of :data:`BLOCK_WORDS`: a vectorised pre-pass checks the block's ADDR_X
    and ADDR_Y coordinates against the geometry; blocks inside it (all of them in a well-formed
    recording) take :func:`_block_fast`, the others :func:`_block_checked`.
    """
    abs_high = state[0]
    low = state[1]
    y = state[2]
    bx = state[3]
    pol = state[4]
    valid = state[5]
    notime = state[7]
    unknown = state[8]
    cap = out.shape[0]
    tcap = trig.shape[0]
    o = out.reshape(-1)
    nw = words.shape[0]
    i = i0
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
            bx = min(bx + (12 if code == 4 else 8), BX_SAT)
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
    n = np.uint64(n0)
    nt = nt0
    wdt = np.int64(width)
    hgt = np.int64(height)
    xlo = np.uint16(0x2000 + wdt)
    ylo = np.uint16(hgt)
    cnt = np.zeros(2, dtype=np.int64)
    cnt[0] = unknown
    cnt[1] = state[6]
    tnow = (abs_high << 12) | low
    ysh = y << 16
    bxp = min(bx, BX_SAT) | (pol << 32)
    while i < nw:
        # a block of words that cannot overflow ``out`` (12 rows a word) nor ``trig`` (1 a word)
        room = min((cap - np.int64(n)) // 12 - 1, tcap - nt, BLOCK_WORDS)
        if room <= 0:
            break
        end = min(nw, i + room)
        if (ysh >> 16) < hgt and _block_in_bounds(words, i, end, xlo, ylo):
            n, nt, tnow, ysh, bxp = _block_fast(words, i, end, o, n, trig, nt, tnow, ysh, bxp, cnt, wdt)
        else:
            n, nt, tnow, ysh, bxp = _block_checked(words, i, end, o, n, trig, nt, tnow, ysh, bxp, cnt, wdt, hgt)
        i = end
    state[0] = tnow >> 12
    state[1] = tnow & 0xFFF
    state[2] = ysh >> 16
    state[3] = bxp & M32
    state[4] = bxp >> 32
    state[5] = valid
    state[6] = cnt[1]
    state[7] = notime
    state[8] = cnt[0]
    return i, np.int64(n), nt


# ------------------------------------------------------------------------------------------ parallel decode


def _events_per_word_table() -> np.ndarray:
    """uint8 per 16-bit word: in bits 0-3 the events it can write (1 for ADDR_X, the set bits of a vector
    mask); bit 4 marks TIME_LOW, bit 5 ADDR_Y, bit 6 VECT_BASE_X and vector words, bit 7 TIME_HIGH and
    EXT_TRIGGER words (the words that the scan must look at one by one)."""
    w = np.arange(1 << 16, dtype=np.int64)
    code = w >> 12
    mask = np.where(code == 4, w & 0xFFF, np.where(code == 5, w & 0xFF, 0))
    bits = sum((mask >> b) & 1 for b in range(12))
    flags = 0x10 * (code == 6) + 0x20 * (code == 0) + 0x40 * ((code >= 3) & (code <= 5))
    return (bits + (code == 2) + flags + 0x80 * ((code == 8) | (code == 10))).astype(np.uint8)


_EVENTS_PER_WORD = _events_per_word_table()


@numba.njit(cache=True, nogil=True)
def _evt3_scan(words, abs_high, valid, table):  # noqa: C901, PLR0912
    """Scan a slice without decoding it.

    Returns (events, triggers, time high and valid after the slice, then its tail: the last time low, row,
    VECT_BASE_X base x and polarity (-1 where the slice has none) and the vector span after that base).
    ``events`` counts the ADDR_X words and vector bits after the first TIME_HIGH, which is exactly what
    the decoder writes unless some events lie outside the geometry (then it writes fewer). The time high
    is unwrapped from ``abs_high`` like the decoder does. Runs of :data:`SCAN_WORDS` words are summed
    through ``table`` (see :func:`_events_per_word_table`) and only the runs holding TIME_HIGH or
    EXT_TRIGGER words are walked word by word; the tail is found by walking back from the end, only for
    the word types that the table says the slice holds.
    """
    nw = words.shape[0]
    i = 0
    flags = 0
    while valid == 0 and i < nw:
        w = np.int64(words[i])
        flags |= table[words[i]]
        i += 1
        if (w >> 12) == 8:
            abs_high = w & 0xFFF
            valid = 1
    events = 0
    nt = 0
    while i < nw:
        end = min(nw, i + SCAN_WORDS)
        ws = words[i:end]
        run_flags = 0
        for j in range(ws.shape[0]):
            t = table[ws[j]]
            events += t & 0x0F
            run_flags |= t
        flags |= run_flags
        if run_flags & 0x80:
            for j in range(ws.shape[0]):
                w = np.int64(ws[j])
                code = w >> 12
                if code == 8:
                    delta = ((w & 0xFFF) - abs_high) & 0xFFF
                    delta -= (delta >> 11) << 12
                    abs_high += delta
                elif code == 10:
                    nt += 1
        i = end
    low = -1
    y = -1
    base = -1
    pol = -1
    span = 0
    if flags & 0x10:
        j = nw - 1
        while (words[j] >> 12) != 6:
            j -= 1
        low = np.int64(words[j]) & 0xFFF
    if flags & 0x20:
        j = nw - 1
        while (words[j] >> 12) != 0:
            j -= 1
        y = np.int64(words[j]) & 0x7FF
    if flags & 0x40:
        for j in range(nw - 1, -1, -1):
            w = np.int64(words[j])
            code = w >> 12
            if code == 3:
                base = w & 0x7FF
                pol = (w >> 11) & 1
                break
            if code == 4:
                span += 12
            elif code == 5:
                span += 8
    return events, nt, abs_high, valid, low, y, base, pol, span


def _state_at_cut(prev: tuple, scan: tuple) -> tuple:
    """(time low, y, vector base x, polarity) after a slice, from those before it and the slice's scan."""
    low, y, bx, pol = prev
    s_low, s_y, s_base, s_pol, s_span = (int(v) for v in scan[4:9])
    if s_low >= 0:
        low = s_low
    if s_y >= 0:
        y = s_y
    if s_base >= 0:
        bx, pol = s_base, s_pol
    return low, y, min(bx + s_span, BX_SAT), pol


@numba.njit(cache=True, nogil=True)
def _evt3_splits(words, n_parts):
    """Word indices [0, s_1, ..., nw] that cut ``words`` into at most ``n_parts`` slices of similar length.

    Each cut is at a TIME_HIGH word (the first one at or after k * nw / n_parts), so that a slice's time
    follows from the time high of the one before it.
    """
    nw = words.shape[0]
    cuts = np.empty(n_parts + 1, dtype=np.int64)
    cuts[0] = 0
    m = 1
    for k in range(1, n_parts):
        t = max(k * nw // n_parts, cuts[m - 1] + 1)
        while t < nw and (words[t] >> 12) != 8:
            t += 1
        if t >= nw:
            break
        cuts[m] = t
        m += 1
    cuts[m] = nw
    return cuts[: m + 1]


def _decode_slice(words: np.ndarray, state: np.ndarray, out: np.ndarray, trig: np.ndarray, w: int, h: int):
    """Decode one slice into ``out`` (exactly as many rows as the slice can write) and ``trig``.

    The kernel keeps 12 scratch rows past its last event, so it stops short of the end of ``out``; the
    last events are decoded into a small scratch buffer and copied, leaving the rows past ``out`` (the
    next slice's) untouched. Returns (events, triggers) written.
    """
    i, n, nt = _evt3_kernel(words, 0, state, out, 0, trig, 0, w, h)
    if i < words.shape[0]:
        rest = out.shape[0] - n
        scratch = new_event_buffer(rest + 12 * (BLOCK_WORDS + 2))
        i, m, nt = _evt3_kernel(words, i, state, scratch, 0, trig, nt, w, h)
        if i < words.shape[0] or m > rest:  # pragma: no cover - the scan's count is an upper bound
            raise CodecError("EVT 3.0 parallel decode: a slice wrote more events than its scan counted")
        out[n : n + m] = scratch[:m]
        n += m
    return n, nt


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key = (0, 0)  # (pid, workers) of _pool: a forked child or a larger thread count makes a new pool


def _map(fn, items: list, threads: int) -> list:
    """``[fn(*it) for it in items]`` on ``threads`` threads: this one and ``threads - 1`` from the pool,
    each taking the next item until none is left (a thread slowed by other work takes fewer)."""
    global _pool, _pool_key
    workers = min(threads, len(items)) - 1
    results: list = [None] * len(items)
    todo = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                k = next(todo, None)
            if k is None:
                return
            results[k] = fn(*items[k])

    futures = []
    if workers > 0:
        with _pool_lock:
            pid = os.getpid()
            if _pool is None or _pool_key[0] != pid or _pool_key[1] < workers:
                if _pool is not None and _pool_key[0] == pid:
                    _pool.shutdown(wait=False)  # its queued work still runs
                _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evt3")
                _pool_key = (pid, workers)
            pool = _pool
        futures = [pool.submit(work) for _ in range(workers)]
    work()
    for f in futures:
        f.result()
    return results


class Evt3Decoder(StreamingDecoder):
    """Streaming EVT 3.0 decoder: ``decode(chunk)`` returns the EVENT_DTYPE events of each chunk.

    Chunks may be split at any byte (an odd trailing byte is kept for the next call); time is unwrapped
    to int64 microseconds across chunks. Trigger edges go to :attr:`triggers` / :attr:`last_triggers`
    (TRIGGER_DTYPE: t us, id, value). ``width``/``height`` (pixels, at most 2048) bound the coordinates:
    events outside are dropped and counted in :attr:`n_dropped_out_of_bounds`. ``threads`` caps the
    threads that decode one chunk (None: ``numba.get_num_threads()``, read at each call; see the module
    docstring); the result does not depend on it.
    """

    WORD_BYTES = 2
    WORD_DTYPE = np.dtype("<u2")
    MAX_EVENTS_PER_WORD = 12
    MAX_COORD = 2048
    FORMAT = "EVT 3.0"
    _kernel = staticmethod(_evt3_kernel)

    def __init__(self, width: int, height: int, threads: int | None = None) -> None:
        super().__init__(width, height)
        if threads is not None and int(threads) < 1:
            raise CodecError(f"EVT 3.0 decoder threads must be at least 1, got {threads}")
        self.threads = None if threads is None else int(threads)

    @property
    def time_us(self) -> int | None:
        """The decoder's current sensor time in microseconds (None before the first TIME_HIGH)."""
        if not self.has_time:
            return None
        return int((self._state[0] << 12) | self._state[1])

    def _run(self, words: np.ndarray) -> np.ndarray:
        threads = numba.get_num_threads() if self.threads is None else self.threads
        parts = min(threads * SLICES_PER_THREAD, words.shape[0] // PARALLEL_MIN_WORDS)
        if threads >= 2 and parts >= 2:
            cuts = _evt3_splits(words, parts)
            if len(cuts) > 2:
                return self._run_parallel(words, cuts, threads)
        return super()._run(words)

    def _run_parallel(self, words: np.ndarray, cuts: np.ndarray, threads: int) -> np.ndarray:
        """Decode ``words`` in the slices ``cuts`` (cut at TIME_HIGH words) on ``threads`` threads.

        1. scan every slice (in parallel): events it will write, triggers, time high unwrapped from its
           first word, and its tail (last time low, row, vector base and polarity), found by a short
           walk back; each cut's state is the tail of the slice before, or the state before that;
        2. chain the time highs: a slice starts at the nearest value of its first TIME_HIGH word to the
           time high at the end of the slice before, which gives every slice its exact start state;
        3. decode every slice (in parallel) into its own rows of one output array, exactly as many as it
           writes, so that no copy follows; events outside the geometry (which the scan counts as
           written) leave gaps that are closed by moving the later slices down.
        """
        n_parts = len(cuts) - 1
        slices = [words[cuts[k] : cuts[k + 1]] for k in range(n_parts)]
        st0 = self._state
        scans = _map(
            _evt3_scan,
            [(slices[0], st0[S_HIGH], st0[S_VALID], _EVENTS_PER_WORD)]
            + [(s, 0, 0, _EVENTS_PER_WORD) for s in slices[1:]],
            threads,
        )
        states = [st0.copy()]
        high, valid = int(scans[0][2]), int(scans[0][3])
        cut = (int(st0[S_LOW]), int(st0[S_Y]), int(st0[S_BX]), int(st0[S_POL]))
        for k in range(1, n_parts):
            first = int(words[cuts[k]]) & 0xFFF
            if valid:
                delta = (first - high) & 0xFFF
                start = high + delta - ((delta >> 11) << 12)
            else:
                start = first
            cut = _state_at_cut(cut, scans[k - 1])
            low, y, bx, pol = cut
            st = np.zeros(N_STATE, dtype=np.int64)
            st[S_HIGH], st[S_LOW], st[S_Y], st[S_BX], st[S_POL], st[S_VALID] = start, low, y, bx, pol, 1
            states.append(st)
            high, valid = start + int(scans[k][2]) - first, 1
        counts = [int(s[0]) for s in scans]
        tcounts = [int(s[1]) for s in scans]
        offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        toffs = np.concatenate([[0], np.cumsum(tcounts)]).astype(np.int64)
        buf = new_event_buffer(int(offs[-1]))
        tbuf = np.empty((int(toffs[-1]) + TRIGGER_ROWS, 3), dtype=np.int64)
        done = _map(
            _decode_slice,
            [
                (slices[k], states[k], buf[offs[k] : offs[k + 1]], tbuf[toffs[k] :], self.width, self.height)
                for k in range(n_parts)
            ],
            threads,
        )
        n = int(done[0][0])
        for k in range(1, n_parts):
            m = int(done[k][0])
            if n != offs[k]:  # the slices before dropped events outside the geometry: close the gap
                buf[n : n + m] = buf[offs[k] : offs[k] + m]
            n += m
        nt = int(toffs[-1])
        if [int(d[1]) for d in done] != tcounts:  # pragma: no cover - the scan counts triggers exactly
            raise CodecError("EVT 3.0 parallel decode: trigger count differs from the scan")
        final = states[-1].copy()  # states[0] carries the counts of the chunks before this one
        final[[S_OOB, S_NOTIME, S_UNKNOWN]] = sum(st[[S_OOB, S_NOTIME, S_UNKNOWN]] for st in states)
        self._state = final
        return self._finish(buf, n, tbuf, nt)


def decode_evt3(buf, width: int, height: int, threads: int | None = None) -> np.ndarray:
    """Decode a whole EVT 3.0 payload (bytes or uint8 array, no header) into an EVENT_DTYPE array."""
    return Evt3Decoder(width, height, threads).decode(buf)


def decode_evt3_with_triggers(
    buf, width: int, height: int, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole EVT 3.0 payload; return (events, trigger edges)."""
    dec = Evt3Decoder(width, height, threads)
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

"""The streaming machinery shared by the EVT 2.0 and EVT 3.0 decoders.

A decoder keeps its state (time high/low, y, vector base, counters) in a small int64 array that the numba
kernel reads and writes, and keeps the trailing bytes of a chunk that do not form a whole word, so that a
stream can be fed in chunks split at any byte boundary and decode exactly as in one piece.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from ros2_evmicro.core.codecs._common import (
    CodecError,
    as_u8,
    events_from_buffer,
    new_event_buffer,
    triggers_from_buffer,
)
from ros2_evmicro.core.events import empty_events

# slots of the state array shared by the kernels (each kernel uses the ones it needs)
S_HIGH = 0  # unwrapped time high, in units of the format's time-high step
S_LOW = 1  # last time low
S_Y = 2  # current row (EVT3)
S_BX = 3  # vector base x (EVT3)
S_POL = 4  # vector polarity (EVT3)
S_VALID = 5  # 1 once a TIME_HIGH word was seen
S_OOB = 6  # events dropped: outside the geometry
S_NOTIME = 7  # events dropped: before the first TIME_HIGH
S_UNKNOWN = 8  # words of a reserved type, skipped
N_STATE = 16
TRIGGER_ROWS = 4096  # trigger rows kept free before each kernel call (the kernels work in blocks)


class StreamingDecoder:
    """Base class: feed chunks of bytes, get EVENT_DTYPE arrays; triggers are collected on the side.

    Subclasses set ``WORD_BYTES``, ``MAX_EVENTS_PER_WORD``, ``MAX_COORD`` and ``_kernel`` (a numba function
    ``kernel(words, i0, state, out, n0, trig, nt0, width, height) -> (i, n, nt)`` that stops early, with
    the state left at the word it stopped on, when ``trig`` is full or ``out`` lacks room for the next
    words; the kernels may write scratch rows past the last event, up to ``MAX_EVENTS_PER_WORD`` rows).
    """

    WORD_BYTES = 2
    WORD_DTYPE: np.dtype = np.dtype("<u2")
    MAX_EVENTS_PER_WORD = 1
    MAX_COORD = 2048
    FORMAT = ""
    # the numba kernel, set by each subclass as a staticmethod
    _kernel: ClassVar[Callable[..., tuple[int, int, int]]]

    def __init__(self, width: int, height: int) -> None:
        try:
            width, height = int(width), int(height)
        except (TypeError, ValueError):
            raise CodecError(f"{self.FORMAT} geometry must be integers, got {width!r}x{height!r}") from None
        if not (0 < width <= self.MAX_COORD and 0 < height <= self.MAX_COORD):
            raise CodecError(
                f"{self.FORMAT} geometry {width}x{height} is outside 1..{self.MAX_COORD} pixels per side"
            )
        self.width = width
        self.height = height
        self.reset()

    def reset(self) -> None:
        """Forget the stream: time, coordinates, pending bytes, triggers and counters."""
        self._state = np.zeros(N_STATE, dtype=np.int64)
        self._pending = b""
        self._tbuf = np.empty((TRIGGER_ROWS, 3), dtype=np.int64)
        self._triggers: list[np.ndarray] = []
        self.n_events = 0
        self.n_triggers = 0
        self.n_bytes = 0
        self.last_triggers = triggers_from_buffer(self._tbuf, 0)

    # ---- counters kept in the kernel state
    @property
    def n_dropped_out_of_bounds(self) -> int:
        """Events dropped because x >= width or y >= height."""
        return int(self._state[S_OOB])

    @property
    def n_dropped_before_time(self) -> int:
        """Events dropped because they came before the first TIME_HIGH word (no absolute time yet)."""
        return int(self._state[S_NOTIME])

    @property
    def n_unknown_words(self) -> int:
        """Words of a reserved type, skipped."""
        return int(self._state[S_UNKNOWN])

    @property
    def has_time(self) -> bool:
        """True once a TIME_HIGH word was decoded (events before it are dropped)."""
        return bool(self._state[S_VALID])

    @property
    def pending_bytes(self) -> int:
        """Bytes kept from the last chunk because they do not form a whole word yet."""
        return len(self._pending)

    @property
    def triggers(self) -> np.ndarray:
        """All trigger edges decoded since the last :meth:`pop_triggers` (TRIGGER_DTYPE)."""
        if len(self._triggers) == 1:
            return self._triggers[0]
        if not self._triggers:
            return triggers_from_buffer(self._tbuf, 0)
        merged = np.concatenate(self._triggers)
        self._triggers = [merged]
        return merged

    def pop_triggers(self) -> np.ndarray:
        """Return the trigger edges collected so far and forget them."""
        out = self.triggers
        self._triggers = []
        return out

    def decode(self, chunk) -> np.ndarray:
        """Decode the next chunk of the stream (any length, split anywhere) into an EVENT_DTYPE array.

        Trigger edges of this chunk are in :attr:`last_triggers` and are appended to :attr:`triggers`.
        """
        data = as_u8(chunk)
        self.n_bytes += data.shape[0]
        wb = self.WORD_BYTES
        if self._pending:
            data = np.concatenate([np.frombuffer(self._pending, dtype=np.uint8), data])
        n_words = data.shape[0] // wb
        tail = data.shape[0] - n_words * wb
        self._pending = data[n_words * wb :].tobytes() if tail else b""
        if n_words == 0:
            self.last_triggers = triggers_from_buffer(self._tbuf, 0)
            return empty_events(0)
        body = data[: n_words * wb]
        if body.ctypes.data % wb:
            body = body.copy()
        words = body.view(self.WORD_DTYPE)
        if not words.dtype.isnative:
            words = words.astype(words.dtype.newbyteorder("="))
        return self._run(words)

    def _run(self, words: np.ndarray) -> np.ndarray:
        nw = words.shape[0]
        per = self.MAX_EVENTS_PER_WORD
        # one event a word fits real recordings (0.5-1 event a word); denser vector streams grow once
        buf = new_event_buffer(nw + 64)
        tbuf = self._tbuf
        i = n = nt = 0
        while True:
            i, n, nt = self._kernel(words, i, self._state, buf, n, tbuf, nt, self.width, self.height)
            if i >= nw:
                break
            if tbuf.shape[0] - nt < TRIGGER_ROWS:
                grown = np.empty((2 * tbuf.shape[0], 3), dtype=np.int64)
                grown[:nt] = tbuf[:nt]
                tbuf = self._tbuf = grown
            else:  # the event buffer lacks room for the next block of words
                grown = new_event_buffer(2 * buf.shape[0] + 4 * per)
                grown[:n] = buf[:n]
                buf = grown
        return self._finish(buf, n, tbuf, nt)

    def _finish(self, buf: np.ndarray, n: int, tbuf: np.ndarray, nt: int) -> np.ndarray:
        """End of a decoded chunk: keep its ``nt`` trigger rows, count, and return its ``n`` events."""
        trig = triggers_from_buffer(tbuf, nt)
        self.last_triggers = trig
        if nt:
            self._triggers.append(trig)
            self.n_triggers += nt
        self.n_events += n
        return events_from_buffer(buf, n)

    def decode_with_triggers(self, chunk) -> tuple[np.ndarray, np.ndarray]:
        """Decode the next chunk; return (events, trigger edges of this chunk)."""
        ev = self.decode(chunk)
        return ev, self.last_triggers

    def stats(self) -> dict:
        """Counters of the stream so far."""
        return {
            "format": self.FORMAT,
            "bytes": self.n_bytes,
            "events": self.n_events,
            "triggers": self.n_triggers,
            "dropped_out_of_bounds": self.n_dropped_out_of_bounds,
            "dropped_before_time": self.n_dropped_before_time,
            "unknown_words": self.n_unknown_words,
            "pending_bytes": self.pending_bytes,
        }

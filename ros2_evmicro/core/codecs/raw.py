"""Prophesee RAW files (EVT 2.0 / EVT 3.0): header parsing, a chunked reader and a writer.

A RAW file is a text header of lines starting with ``%`` followed by the binary payload. Modern
(Metavision 4+) headers name the format and the geometry and end with ``% end``::

    % camera_integrator_name Prophesee
    % date 2024-05-01 10:00:00
    % evt 3.0
    % format EVT3;height=720;width=1280
    % geometry 1280x720
    % end

Older files (Metavision 2/3) carry only ``% evt 3.0`` and a ``% plugin_name`` such as
``hal_plugin_gen41_evk3``, without geometry: the reader infers it from the known plugin names
(:data:`PLUGIN_GEOMETRY`) or takes it from the ``width``/``height`` parameters.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros2_evmicro.core.codecs._common import TRIGGER_DTYPE, CodecError
from ros2_evmicro.core.codecs.evt2 import Evt2Decoder, encode_evt2
from ros2_evmicro.core.codecs.evt3 import Evt3Decoder, encode_evt3

__all__ = [
    "PLUGIN_GEOMETRY",
    "RawHeader",
    "RawReader",
    "RawTruncatedWarning",
    "parse_raw_header",
    "read_raw",
    "write_raw",
]

# substrings of HAL plugin names -> (width, height); first match wins (gen41 before gen4, gen31 before gen3)
PLUGIN_GEOMETRY: tuple[tuple[str, tuple[int, int]], ...] = (
    ("gen41", (1280, 720)),
    ("imx636", (1280, 720)),
    ("evk4", (1280, 720)),
    ("gen4", (1280, 720)),
    ("genx320", (320, 320)),
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
)

_FORMATS = {"evt3": "evt3", "evt3.0": "evt3", "3.0": "evt3", "evt2": "evt2", "evt2.0": "evt2", "2.0": "evt2"}
_DECODERS = {"evt3": Evt3Decoder, "evt2": Evt2Decoder}


class RawTruncatedWarning(UserWarning):
    """A RAW file ends inside an event word: every complete word was decoded, the rest is reported."""


@dataclass
class RawHeader:
    """What a RAW header says. ``fields`` holds every ``% key value`` line (keys lower-case)."""

    fmt: str | None = None
    width: int | None = None
    height: int | None = None
    plugin_name: str | None = None
    payload_offset: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def _norm_format(text: str) -> str | None:
    key = text.strip().lower().replace(" ", "")
    if key in _FORMATS:
        return _FORMATS[key]
    if key.startswith(("evt21", "evt2.1", "2.1")):
        return "evt2.1"
    return key or None


def parse_raw_header(data: bytes) -> RawHeader:
    """Parse the ``%`` header at the start of ``data`` (the first bytes of a RAW file).

    Raises :class:`CodecError` when the data ends inside the header (no payload byte and no ``% end``).
    """
    hdr = RawHeader()
    pos = 0
    while pos < len(data) and data[pos : pos + 1] == b"%":
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise CodecError(f"RAW header is truncated: no end of line after byte {pos}")
        line = data[pos + 1 : nl].decode("latin-1").strip()
        pos = nl + 1
        if line == "end":
            break
        key, _, value = line.partition(" ")
        key = key.strip().lower()
        value = value.strip()
        if key:
            hdr.fields[key] = value
    hdr.payload_offset = pos
    f = hdr.fields
    if "format" in f:
        parts = f["format"].split(";")
        hdr.fmt = _norm_format(parts[0])
        for part in parts[1:]:
            k, _, v = part.partition("=")
            if k.strip() == "width" and v.strip().isdigit():
                hdr.width = int(v)
            elif k.strip() == "height" and v.strip().isdigit():
                hdr.height = int(v)
    if hdr.fmt is None and "evt" in f:
        hdr.fmt = _norm_format(f["evt"])
    if "geometry" in f:
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", f["geometry"])
        if m:
            hdr.width, hdr.height = int(m.group(1)), int(m.group(2))
    hdr.plugin_name = f.get("plugin_name")
    if hdr.width is None and hdr.plugin_name:
        name = hdr.plugin_name.lower()
        for key, (w, h) in PLUGIN_GEOMETRY:
            if key in name:
                hdr.width, hdr.height = w, h
                break
    return hdr


class RawReader:
    """Read a Prophesee RAW file (EVT 2.0 or 3.0) chunk by chunk.

    ``for events in RawReader(path): ...`` yields one EVENT_DTYPE array per ``chunk_bytes`` of payload;
    :meth:`read_all` decodes the whole payload in one call. ``width``/``height`` (pixels) override the
    header and are required when the header names neither a geometry nor a known plugin; ``fmt``
    ('evt3'/'evt2') is used when the header names no format.

    After reading, :attr:`triggers` holds the trigger edges, :attr:`stats` the decoder counters and
    :attr:`truncated_bytes` the bytes of an incomplete last word (a :class:`RawTruncatedWarning` is
    issued too). ``threads`` caps the threads that decode an EVT 3.0 chunk (None: all of numba's, see
    :mod:`ros2_evmicro.core.codecs.evt3`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int | None = None,
        height: int | None = None,
        chunk_bytes: int = 8 << 20,
        fmt: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CodecError(f"RAW file {self.path} does not exist")
        if int(chunk_bytes) < 4:
            raise CodecError(f"chunk_bytes must be at least 4, got {chunk_bytes}")
        self.chunk_bytes = int(chunk_bytes)
        self.threads = threads
        with self.path.open("rb") as fh:
            head = fh.read(1 << 16)
            while True:  # headers longer than 64 KiB are unusual but legal
                try:
                    self.header = parse_raw_header(head)
                    break
                except CodecError:
                    more = fh.read(1 << 16)
                    if not more:
                        raise CodecError(f"RAW file {self.path}: the header is truncated") from None
                    head += more
        hdr = self.header
        self.fmt = _norm_format(fmt) if hdr.fmt is None and fmt is not None else hdr.fmt
        if self.fmt is None:
            raise CodecError(
                f"RAW file {self.path}: the header names no event format (no '% evt' or '% format' line); "
                "pass fmt='evt3' or fmt='evt2'"
            )
        if self.fmt not in _DECODERS:
            raise CodecError(
                f"RAW file {self.path}: event format {self.fmt!r} is not supported (supported: evt3, evt2)"
            )
        w = int(width) if width is not None else hdr.width
        h = int(height) if height is not None else hdr.height
        if w is None or h is None:
            raise CodecError(
                f"RAW file {self.path}: the header gives no geometry (no '% geometry' or '% format' size) "
                f"and the plugin {hdr.plugin_name!r} is not a known one; pass width= and height="
            )
        self.width: int = w
        self.height: int = h
        self.payload_bytes = self.path.stat().st_size - hdr.payload_offset
        self.triggers = np.zeros(0, dtype=TRIGGER_DTYPE)
        self.truncated_bytes = 0
        self.stats: dict = {}

    def _decoder(self):
        if self.fmt == "evt3":
            return Evt3Decoder(self.width, self.height, threads=self.threads)
        return _DECODERS[self.fmt](self.width, self.height)

    def _finish(self, dec) -> None:
        self.triggers = dec.pop_triggers()
        self.stats = dec.stats()
        self.truncated_bytes = dec.pending_bytes
        if self.truncated_bytes:
            warnings.warn(
                f"RAW file {self.path} ends inside an event word: {self.truncated_bytes} trailing byte(s) "
                f"ignored after {dec.n_events} events",
                RawTruncatedWarning,
                stacklevel=3,
            )

    def __iter__(self):
        dec = self._decoder()
        with self.path.open("rb") as fh:
            fh.seek(self.header.payload_offset)
            while True:
                chunk = fh.read(self.chunk_bytes)
                if not chunk:
                    break
                ev = dec.decode(chunk)
                if len(ev):
                    yield ev
        self._finish(dec)

    def read_all(self) -> np.ndarray:
        """Decode the whole payload into one EVENT_DTYPE array."""
        dec = self._decoder()
        data = np.fromfile(self.path, dtype=np.uint8, offset=self.header.payload_offset)
        ev = dec.decode(data)
        self._finish(dec)
        return ev

    def __repr__(self) -> str:
        return (
            f"RawReader({str(self.path)!r}, fmt={self.fmt}, {self.width}x{self.height}, "
            f"{self.payload_bytes} payload bytes)"
        )


def read_raw(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Read every event of a RAW file (see :class:`RawReader`)."""
    return RawReader(path, width=width, height=height).read_all()


def write_raw(
    path: str | os.PathLike,
    events: np.ndarray,
    fmt: str = "evt3",
    width: int = 1280,
    height: int = 720,
    triggers: np.ndarray | None = None,
    date: _dt.datetime | None = None,
) -> Path:
    """Write events (and optional trigger edges) as a RAW file with a modern Metavision header.

    ``fmt`` is 'evt3' or 'evt2'; ``width``/``height`` in pixels (events must lie inside). Returns the path.
    """
    key = _norm_format(fmt)
    if key not in _DECODERS:
        raise CodecError(f"cannot write RAW format {fmt!r} (supported: evt3, evt2)")
    if len(events) and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        raise CodecError(f"events lie outside the {width}x{height} geometry given to write_raw")
    payload = encode_evt3(events, triggers) if key == "evt3" else encode_evt2(events, triggers)
    date = date or _dt.datetime.now()
    version = "3.0" if key == "evt3" else "2.0"
    header = (
        "% camera_integrator_name Prophesee\n"
        f"% date {date.strftime('%Y-%m-%d %H:%M:%S')}\n"
        f"% evt {version}\n"
        f"% format {key.upper()};height={int(height)};width={int(width)}\n"
        f"% generation 4.2\n"
        f"% geometry {int(width)}x{int(height)}\n"
        "% end\n"
    )
    path = Path(path)
    with path.open("wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(payload)
    return path

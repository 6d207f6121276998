"""Codec throughput: EVT 3.0 decode vs the `evt3` and `faery` decoders, AEDAT4 read vs dv-processing.

Run from the repo root: ``python -m bench.bench_codecs`` (EVMICRO_BENCH_NO_WRITE=1 for a trial run).
The EVT 3.0 file (10 M events) is made by :func:`encode_evt3` from :func:`row_burst_events` (sorted time,
clustered x/y, row bursts that become vectors); every decoder reads the same file from the page cache.
Our decoder uses ``numba.get_num_threads()`` threads (its default, all cores); the `evt3` and `faery`
decoders are single-threaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numba
import numpy as np

from bench.harness import Row, best_rate, report
from ros2_evmicro.core.codecs import Aedat4Reader, RawReader, write_aedat4, write_raw
from ros2_evmicro.core.codecs.evt3 import decode_evt3
from ros2_evmicro.core.codecs.synthetic import row_burst_events

N_EVT3 = 10_000_000
N_AEDAT4 = 1_000_000
REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real"


def _evt3_rows(tmp: Path) -> list[Row]:
    ev = row_burst_events(N_EVT3, 1280, 720, duration_us=10_000_000, seed=0)
    path = write_raw(tmp / "bench.raw", ev, fmt="evt3", width=1280, height=720)
    words = (path.stat().st_size - RawReader(path).header.payload_offset) / 2
    del ev
    ours = best_rate(lambda: RawReader(path).read_all(), N_EVT3, repeat=5)
    ours_chunked = best_rate(
        lambda: sum(len(e) for e in RawReader(path, chunk_bytes=4 << 20)), N_EVT3, repeat=3
    )
    anchors: dict[str, float] = {}
    try:
        import evt3

        anchors["evt3 package decode_file"] = best_rate(lambda: evt3.decode_file(str(path)), N_EVT3, repeat=5)
    except ImportError:
        pass
    try:
        import faery

        def run_faery() -> int:
            return sum(len(p["events"]) for p in faery.evt.Decoder(str(path), None, None))

        anchors["faery evt.Decoder"] = best_rate(run_faery, N_EVT3, repeat=5)
    except ImportError:
        pass
    best_name, best = max(anchors.items(), key=lambda kv: kv[1]) if anchors else ("", None)
    threads = numba.get_num_threads()
    note = (
        f"10 M events, {words / N_EVT3:.2f} words/event, whole file to EVENT_DTYPE; "
        f"{threads} decode thread(s) (numba.get_num_threads(), the default), the anchors use 1"
    )
    rows = [
        Row(
            "EVT3 RawReader.read_all",
            ours / 1e6,
            "Mev/s",
            best_name,
            None if best is None else best / 1e6,
            note=note + "; goal 2x the best anchor",
        ),
        Row(
            "EVT3 RawReader iteration (4 MiB chunks)",
            ours_chunked / 1e6,
            "Mev/s",
            best_name,
            None if best is None else best / 1e6,
            note=f"streaming decoder, one array per chunk, {threads} thread(s) per chunk",
        ),
    ]
    rows += [Row(f"anchor: {k}", v / 1e6, "Mev/s", note="same file, same run") for k, v in anchors.items()]
    sample = REAL / "prophesee_raw" / "evt3_sample.raw"
    if sample.exists():
        payload = sample.read_bytes()[RawReader(sample).header.payload_offset :]
        n = len(decode_evt3(payload, 1280, 720))
        mine = best_rate(lambda: decode_evt3(payload, 1280, 720), n, repeat=20)
        anchor = None
        try:
            import evt3

            anchor = best_rate(lambda: evt3.decode_bytes(payload, 1280, 720), n, repeat=20) / 1e6
        except ImportError:
            pass
        rows.append(
            Row(
                "EVT3 decode_evt3, real evt3_sample.raw (bytes)",
                mine / 1e6,
                "Mev/s",
                "evt3 package decode_bytes",
                anchor,
                note=f"{n} events, Prophesee Gen4.1",
            )
        )
    return rows


def _aedat4_rows(tmp: Path) -> list[Row]:
    try:
        import dv_processing as dv
    except ImportError:
        return []
    ev = row_burst_events(N_AEDAT4, 346, 260, duration_us=5_000_000, seed=1)
    ev["t"] += 1_700_000_000_000_000
    path = write_aedat4(tmp / "bench.aedat4", ev, 346, 260, packet_events=5000)

    def dv_loop() -> int:
        rec = dv.io.MonoCameraRecording(str(path))
        n = 0
        while (batch := rec.getNextEventBatch()) is not None:
            n += batch.size()
        return n

    def dv_loop_numpy() -> int:
        rec = dv.io.MonoCameraRecording(str(path))
        return len(np.concatenate([b.numpy() for b in iter(rec.getNextEventBatch, None)]))

    ours = best_rate(lambda: Aedat4Reader(path).read_events(), N_AEDAT4, repeat=5)
    anchor = best_rate(dv_loop, N_AEDAT4, repeat=5)
    anchor_np = best_rate(dv_loop_numpy, N_AEDAT4, repeat=5)
    return [
        Row(
            "AEDAT4 Aedat4Reader.read_events",
            ours / 1e6,
            "Mev/s",
            "dv getNextEventBatch loop (no conversion)",
            anchor / 1e6,
            note="1 M events, LZ4, written by write_aedat4; ours converts to EVENT_DTYPE",
        ),
        Row(
            "AEDAT4 Aedat4Reader.read_events",
            ours / 1e6,
            "Mev/s",
            "dv loop + EventStore.numpy() + concatenate",
            anchor_np / 1e6,
            note="same file; anchor yields dv's own numpy layout",
        ),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = _evt3_rows(tmp)
        rows += _aedat4_rows(tmp)
    report("Codecs: EVT 3.0 decode and AEDAT4 read throughput", rows)


if __name__ == "__main__":
    main()

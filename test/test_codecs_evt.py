"""EVT 3.0 / EVT 2.0 decoders and encoders: hand-built word streams, round trips, streaming, real files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_file

from ros2_evmicro.core.codecs import (
    TRIGGER_DTYPE,
    CodecError,
    Evt2Decoder,
    Evt3Decoder,
    decode_evt2,
    decode_evt2_with_triggers,
    decode_evt3,
    decode_evt3_with_triggers,
    encode_evt2,
    encode_evt3,
)
from ros2_evmicro.core.codecs import evt3 as evt3_module
from ros2_evmicro.core.codecs.raw import RawReader
from ros2_evmicro.core.codecs.synthetic import row_burst_events
from ros2_evmicro.core.events import EVENT_DTYPE, concat_events, make_events


def w16(*words: int) -> bytes:
    return np.array(words, dtype="<u2").tobytes()


def w32(*words: int) -> bytes:
    return np.array(words, dtype="<u4").tobytes()


def feed(dec, data: bytes, cuts) -> np.ndarray:
    """Feed ``data`` to ``dec`` split at the sorted byte offsets ``cuts``."""
    edges = [0, *cuts, len(data)]
    return concat_events([dec.decode(data[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)])


# ------------------------------------------------------------------------------------------ EVT 3.0


def test_evt3_hand_built_stream():
    data = w16(
        0x2005,  # ADDR_X before any TIME_HIGH: dropped, counted
        0x8001,  # TIME_HIGH 1 -> 4096 us
        0x6005,  # TIME_LOW 5 -> t = 4101
        0x0003,  # ADDR_Y 3
        0x2802,  # ADDR_X x=2, ON
        0x3010,  # VECT_BASE_X x=16, OFF
        0x4005,  # VECT_12 bits 0, 2 -> x=16, 18; base 28
        0x5081,  # VECT_8 bits 0, 7 -> x=28, 35; base 36
        0xA301,  # EXT_TRIGGER id 3, rising
        0xE000,  # OTHERS
        0xF123,  # CONTINUED_12
        0x7001,  # CONTINUED_4
        0x1000,  # reserved type: skipped, counted
        0x6007,  # TIME_LOW 7
        0x0804,  # ADDR_Y 4 with the system-type bit set
        0x2001,  # ADDR_X x=1, OFF, t=4103
    )
    dec = Evt3Decoder(64, 64)
    ev = dec.decode(data)
    assert ev.dtype == EVENT_DTYPE
    assert ev["x"].tolist() == [2, 16, 18, 28, 35, 1]
    assert ev["y"].tolist() == [3, 3, 3, 3, 3, 4]
    assert ev["p"].tolist() == [1, 0, 0, 0, 0, 0]
    assert ev["t"].tolist() == [4101] * 5 + [4103]
    assert dec.triggers.tolist() == [(4101, 3, 1)]
    assert dec.triggers.dtype == TRIGGER_DTYPE
    assert dec.n_dropped_before_time == 1
    assert dec.n_unknown_words == 1
    assert dec.n_dropped_out_of_bounds == 0
    assert dec.time_us == 4103


def test_evt3_out_of_bounds_dropped_and_counted():
    data = w16(0x8000, 0x6000, 0x0002, 0x2009, 0x200A, 0x3008, 0x4FFF, 0x000A, 0x2001, 0x5003)
    # width 10, height 5: x=9 kept, x=10 dropped; vector at 8..19 keeps 8, 9; row 10 drops all of its events
    dec = Evt3Decoder(10, 5)
    ev = dec.decode(data)
    assert ev["x"].tolist() == [9, 8, 9]
    assert dec.n_dropped_out_of_bounds == 1 + 10 + 1 + 2


def test_evt3_time_high_wrap_and_jitter():
    # 0xFFF -> 0x000 is a wrap (+2^24 us); 0x005 -> 0x003 is jitter (a step back, not a wrap)
    data = w16(0x8FFF, 0x6001, 0x0000, 0x2000, 0x8000, 0x6002, 0x2001, 0x8005, 0x8003, 0x2002)
    ev = decode_evt3(data, 16, 16)
    assert ev["t"].tolist() == [0xFFF001, (1 << 24) + 2, (1 << 24) + 3 * 4096 + 2]


def test_evt3_empty_and_short_inputs():
    dec = Evt3Decoder(1280, 720)
    for chunk in (b"", b"\x00", np.zeros(0, np.uint8)):
        ev = dec.decode(chunk)
        assert ev.dtype == EVENT_DTYPE and ev.shape == (0,)
    assert dec.pending_bytes == 1
    assert decode_evt3(b"", 4, 4).dtype == EVENT_DTYPE
    ev, tr = decode_evt3_with_triggers(b"", 4, 4)
    assert len(ev) == 0 and tr.dtype == TRIGGER_DTYPE and len(tr) == 0


@pytest.mark.parametrize("bad", [(0, 10), (10, 0), (4096, 10), ("a", 3)])
def test_evt3_bad_geometry(bad):
    with pytest.raises(CodecError, match="geometry"):
        Evt3Decoder(*bad)


def test_evt3_rejects_non_bytes():
    with pytest.raises(CodecError, match="expected bytes"):
        Evt3Decoder(8, 8).decode([1, 2, 3])


def test_evt3_round_trip_with_vectors_and_triggers():
    ev = row_burst_events(20_000, 1280, 720, duration_us=2_000_000, seed=1)
    trig = np.array([(1_000_100, 0, 1), (1_500_000, 0, 0), (2_900_000, 5, 1)], dtype=TRIGGER_DTYPE)
    data = encode_evt3(ev, trig)
    words = np.frombuffer(data, "<u2") >> 12
    assert {3, 4, 5} <= set(words.tolist())  # vectors were used
    assert len(data) < 2 * 1.3 * len(ev)  # and make the stream compact
    out, tr = decode_evt3_with_triggers(data, 1280, 720)
    np.testing.assert_array_equal(out, ev)
    np.testing.assert_array_equal(tr, trig)
    plain = encode_evt3(ev, use_vectors=False)
    assert not {3, 4, 5} & set((np.frombuffer(plain, "<u2") >> 12).tolist())
    np.testing.assert_array_equal(decode_evt3(plain, 1280, 720), ev)


def test_evt3_split_at_every_byte():
    ev = row_burst_events(400, 64, 48, duration_us=30_000, seed=2)
    trig = np.array([(1_010_000, 1, 1)], dtype=TRIGGER_DTYPE)
    data = encode_evt3(ev, trig)
    dec = Evt3Decoder(64, 48)
    out = feed(dec, data, range(1, len(data)))
    np.testing.assert_array_equal(out, ev)
    np.testing.assert_array_equal(dec.pop_triggers(), trig)
    assert len(dec.triggers) == 0 and dec.pending_bytes == 0


def test_evt3_random_splits_and_buffer_growth(rng):
    # dense vectors (up to 12 events a word) force the output buffer to grow inside one call
    x = np.tile(np.arange(1200, dtype=np.uint16), 50)
    y = np.repeat(np.arange(50, dtype=np.uint16), 1200)
    t = np.repeat(np.arange(50, dtype=np.int64) * 7 + 100, 1200)
    ev = make_events(x, y, np.ones_like(x), t)
    data = encode_evt3(ev)
    assert len(data) // 2 < len(ev) / 5
    np.testing.assert_array_equal(decode_evt3(data, 1280, 720), ev)
    cuts = np.sort(rng.choice(np.arange(1, len(data)), size=40, replace=False))
    np.testing.assert_array_equal(feed(Evt3Decoder(1280, 720), data, cuts), ev)


def test_evt3_many_triggers_grow_trigger_buffer():
    trig = np.zeros(10_000, dtype=TRIGGER_DTYPE)
    trig["t"] = np.arange(10_000) * 3
    trig["value"] = np.arange(10_000) % 2
    ev, tr = decode_evt3_with_triggers(encode_evt3(make_events([], [], [], []), trig), 8, 8)
    assert len(ev) == 0
    np.testing.assert_array_equal(tr, trig)


def test_evt3_long_stream_unwraps_across_many_wraps():
    # 3 events 20 s apart (> 2^24 us): the encoder repeats TIME_HIGH so that the decoder follows
    ev = make_events([1, 2, 3], [0, 0, 0], [0, 1, 0], [5, 20_000_005, 60_000_123])
    np.testing.assert_array_equal(decode_evt3(encode_evt3(ev), 4, 4), ev)


def test_evt3_small_backward_steps_round_trip():
    ev = make_events([1, 2, 3, 4], [0, 0, 1, 1], [0, 1, 0, 1], [10_000, 9_990, 20_000, 15_000])
    np.testing.assert_array_equal(decode_evt3(encode_evt3(ev), 8, 8), ev)


@pytest.mark.parametrize(
    ("x", "y", "p", "t", "match"),
    [
        ([2048], [0], [0], [0], "coordinates"),
        ([0], [0], [2], [0], "polarity"),
        ([0], [0], [0], [-1], "non-negative"),
        ([0, 0], [0, 0], [0, 0], [1 << 23, 0], "step back"),
    ],
)
def test_evt3_encoder_rejects(x, y, p, t, match):
    with pytest.raises(CodecError, match=match):
        encode_evt3(make_events(x, y, p, t))


def test_encoder_rejects_wrong_dtype():
    with pytest.raises(CodecError, match="structured"):
        encode_evt3(np.zeros(3))
    with pytest.raises(CodecError, match="triggers"):
        encode_evt3(make_events([1], [1], [1], [1]), np.zeros(2))


# ------------------------------------------------------------------------------------------ EVT 3.0, parallel decode


def decode_all(data, width: int, height: int, threads: int, cuts=()) -> tuple:
    """Decode ``data`` (split at the byte offsets ``cuts``) with ``threads``: events, triggers, state, stats."""
    dec = Evt3Decoder(width, height, threads=threads)
    ev = feed(dec, data, cuts)
    return ev, dec.pop_triggers(), dec._state.copy(), dec.stats(), dec.time_us


def assert_same_decode(a: tuple, b: tuple) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert a[3] == b[3] and a[4] == b[4]


@pytest.fixture
def parallel_runs(monkeypatch):
    """Let small inputs take the parallel path (16 words a slice) and count the parallel decodes."""
    monkeypatch.setattr(evt3_module, "PARALLEL_MIN_WORDS", 16)
    calls = []
    original = Evt3Decoder._run_parallel

    def spy(self, words, cuts, threads):
        calls.append(len(cuts) - 1)
        return original(self, words, cuts, threads)

    monkeypatch.setattr(Evt3Decoder, "_run_parallel", spy)
    return calls


def hard_stream(rng) -> bytes:
    """Events over four 2^24 us time wraps with triggers, reserved words and OTHERS sprinkled in, and a
    head of event words before the first TIME_HIGH."""
    ev = row_burst_events(60_000, 1280, 720, duration_us=70_000_000, seed=7)
    trig = np.zeros(400, dtype=TRIGGER_DTYPE)
    trig["t"] = np.sort(rng.integers(int(ev["t"][0]), int(ev["t"][-1]), 400))
    trig["id"] = rng.integers(0, 16, 400)
    trig["value"] = rng.integers(0, 2, 400)
    words = np.frombuffer(encode_evt3(ev, trig), "<u2")
    extra = rng.choice([0x1000, 0x9000, 0xB000, 0xE000, 0xF123, 0x7001], 500).astype("<u2")
    words = np.insert(words, rng.choice(len(words), 500, replace=False), extra)
    head = np.array([0x0010, 0x2005, 0x3005, 0x4FFF, 0x6123, 0xA301, 0x5003], dtype="<u2")
    return np.concatenate([head, words]).tobytes()


def test_evt3_parallel_split_points_and_cut_states(rng):
    data = hard_stream(rng)
    words = np.frombuffer(data, "<u2")
    cuts = evt3_module._evt3_splits(words, 7)
    assert cuts[0] == 0 and cuts[-1] == len(words) and len(cuts) == 8
    assert np.all(np.diff(cuts) > 0) and np.all(words[cuts[1:-1]] >> 12 == 8)  # cuts at TIME_HIGH words
    table = evt3_module._EVENTS_PER_WORD
    cut_state = (0, 0, 0, 0)  # (time low, y, vector base x, polarity) of a new decoder
    for a, b in zip(cuts[:-2], cuts[1:-1], strict=True):
        seq = Evt3Decoder(1280, 720, threads=1)
        ev = seq.decode(words[:b].tobytes())
        st = seq._state
        # the scan counts the events the decoder writes, the triggers and the unwrapped time high
        scan = evt3_module._evt3_scan(words[:b], 0, 0, table)
        assert scan[:4] == (len(ev), len(seq.triggers), st[0], 1)
        # the slice's tail, chained from cut to cut, gives the decoder's time low, row, vector base, polarity
        cut_state = evt3_module._state_at_cut(cut_state, evt3_module._evt3_scan(words[a:b], 0, 0, table))
        assert cut_state == tuple(st[1:5])
    # a slice without TIME_LOW, ADDR_Y or vector words passes the state on; vectors without a base add up
    no_tail = evt3_module._evt3_scan(np.array([0x8001, 0x2003], dtype="<u2"), 0, 0, table)
    assert evt3_module._state_at_cut((7, 8, 9, 1), no_tail) == (7, 8, 9, 1)
    tail = evt3_module._evt3_scan(np.array([0x8001, 0x4001, 0x0005, 0x5001], dtype="<u2"), 0, 0, table)
    assert evt3_module._state_at_cut((7, 8, 9, 1), tail) == (7, 5, 9 + 20, 1)
    # a stream without TIME_HIGH after the first cut target has a single slice
    assert evt3_module._evt3_splits(np.full(1000, 0x2001, dtype="<u2"), 4).tolist() == [0, 1000]


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1000, 500)])  # 1000x500: events dropped
def test_evt3_parallel_equals_sequential(rng, parallel_runs, width, height):
    data = hard_stream(rng)
    ref = decode_all(data, width, height, threads=1)
    assert not parallel_runs
    assert ref[3]["dropped_before_time"] > 0 and ref[3]["unknown_words"] > 0 and len(ref[1]) == 400
    assert int(ref[0]["t"][-1]) > 4 << 24
    assert (ref[3]["dropped_out_of_bounds"] > 0) == (width < 1280)
    for threads in (2, 3, 8, 64):
        assert_same_decode(decode_all(data, width, height, threads), ref)
    assert len(parallel_runs) == 4 and all(n >= t for n, t in zip(parallel_runs, (2, 3, 8, 64), strict=True))


def test_evt3_parallel_streaming_chunks(rng, parallel_runs):
    data = hard_stream(rng)
    cuts = np.sort(rng.choice(np.arange(1, len(data)), size=30, replace=False))
    ref = decode_all(data, 1280, 720, threads=1)
    assert_same_decode(decode_all(data, 1280, 720, threads=1, cuts=cuts), ref)
    assert_same_decode(decode_all(data, 1280, 720, threads=4, cuts=cuts), ref)
    assert len(parallel_runs) >= 25


def test_evt3_parallel_sparse_slices_and_random_words(rng, parallel_runs):
    # slices without events, or with more words than rows (the scratch path at the end of a slice)
    quiet = np.tile(np.array([0x8001, 0x6001, 0x0001, 0x6002], dtype="<u2"), 200)
    quiet[::40] = 0x2003
    # vectors running far past the right edge: the vector base x saturates at 4096 in every path
    far = [0x8001, 0x37D0, *([0x4FFF, 0x5081] * 200), 0x8001, *([0x5081] * 50), 0x27FF, 0x2001, 0x5081]
    far = np.array(far * 3, dtype="<u2")
    noise = rng.integers(0, 1 << 16, 50_000).astype("<u2")
    for data in (quiet.tobytes(), far.tobytes(), noise.tobytes()):
        for width, height in ((1280, 720), (2048, 2048), (7, 5)):
            ref = decode_all(data, width, height, threads=1)
            assert_same_decode(decode_all(data, width, height, threads=5), ref)
    for width in (2048, 1280):  # all blocks in bounds / blocks with an ADDR_X outside
        assert decode_all(far.tobytes(), width, 720, threads=1)[2][3] == 4096
    assert len(parallel_runs) == 9


def test_evt3_parallel_default_threshold(rng, monkeypatch):
    calls = []
    original = Evt3Decoder._run_parallel
    monkeypatch.setattr(Evt3Decoder, "_run_parallel", lambda s, w, c, t: calls.append(len(c)) or original(s, w, c, t))
    words = np.frombuffer(hard_stream(rng), "<u2")
    big = np.tile(words, -(-2 * evt3_module.PARALLEL_MIN_WORDS // len(words))).tobytes()  # time jumps back: fine
    small = big[: 4 * evt3_module.PARALLEL_MIN_WORDS - 2]
    assert_same_decode(decode_all(small, 1280, 720, threads=2), decode_all(small, 1280, 720, threads=1))
    assert not calls  # below 2 * PARALLEL_MIN_WORDS words: sequential
    assert_same_decode(decode_all(big, 1280, 720, threads=2), decode_all(big, 1280, 720, threads=1))
    assert calls == [3]  # two slices of at least PARALLEL_MIN_WORDS words


def test_evt3_threads_argument():
    with pytest.raises(CodecError, match="threads"):
        Evt3Decoder(8, 8, threads=0)
    assert Evt3Decoder(8, 8).threads is None
    ev = make_events([1, 2], [3, 3], [0, 1], [10, 20])
    np.testing.assert_array_equal(decode_evt3(encode_evt3(ev), 8, 8, threads=3), ev)


# ------------------------------------------------------------------------------------------ EVT 2.0


def test_evt2_hand_built_stream():
    th = 8 << 28
    data = w32(
        (1 << 28) | (5 << 11) | 6,  # CD_ON before TIME_HIGH: dropped
        th | 3,  # TIME_HIGH 3 -> 192 us
        (0 << 28) | (7 << 22) | (10 << 11) | 20,  # CD_OFF x=10 y=20 t=199
        (1 << 28) | (63 << 22) | (11 << 11) | 21,  # CD_ON x=11 y=21 t=255
        (10 << 28) | (2 << 22) | (4 << 8) | 1,  # EXT_TRIGGER id 4 rising t=194
        (14 << 28),  # OTHERS
        (5 << 28),  # reserved
        (1 << 28) | (1 << 22) | (40 << 11) | 1,  # x=40 outside a 32-wide sensor
    )
    dec = Evt2Decoder(32, 32)
    ev = dec.decode(data)
    assert ev["x"].tolist() == [10, 11]
    assert ev["y"].tolist() == [20, 21]
    assert ev["p"].tolist() == [0, 1]
    assert ev["t"].tolist() == [199, 255]
    assert dec.triggers.tolist() == [(194, 4, 1)]
    assert (dec.n_dropped_before_time, dec.n_unknown_words, dec.n_dropped_out_of_bounds) == (1, 1, 1)


def test_evt2_round_trip_split_and_wrap(rng):
    ev = row_burst_events(3000, 640, 480, duration_us=1_000_000, seed=4)
    ev["t"] += (1 << 34) - 1_500_000  # starts before the 34-bit wrap of EVT 2.0 time and crosses it
    assert int(ev["t"][0]) < (1 << 34) < int(ev["t"][-1])
    trig = np.array([(int(ev["t"][10]), 2, 0)], dtype=TRIGGER_DTYPE)
    data = encode_evt2(ev, trig)
    out, tr = decode_evt2_with_triggers(data, 640, 480)
    np.testing.assert_array_equal(out, ev)
    np.testing.assert_array_equal(tr, trig)
    dec = Evt2Decoder(640, 480)
    cuts = np.sort(rng.choice(np.arange(1, len(data)), size=500, replace=False))
    np.testing.assert_array_equal(feed(dec, data, cuts), ev)
    small = ev[:50]
    d2 = Evt2Decoder(640, 480)
    enc = encode_evt2(small)
    np.testing.assert_array_equal(feed(d2, enc, range(1, len(enc))), small)
    assert decode_evt2(b"", 4, 4).dtype == EVENT_DTYPE


# ------------------------------------------------------------------------------------------ real files

EVT3_SAMPLE = "prophesee_raw/evt3_sample.raw"


def test_real_evt3_sample_golden_and_references():
    path = real_file(EVT3_SAMPLE)
    reader = RawReader(path)
    assert (reader.fmt, reader.width, reader.height) == ("evt3", 1280, 720)  # inferred from the plugin
    ev = reader.read_all()
    assert len(ev) == 219_596
    assert int(ev["p"].sum()) == 115_532
    assert int(ev["t"][0]) == 11_718_656 and int(ev["t"][-1]) == 11_727_457
    assert int(ev["t"].sum()) == 2_574_324_900_467
    assert reader.stats["dropped_before_time"] == 0 and reader.truncated_bytes == 0
    # x, y, p against the expelliarmus reference (its t is known to be wrong)
    ref = np.load(path.with_suffix(".npy"))
    np.testing.assert_array_equal(ev["x"], ref["x"])
    np.testing.assert_array_equal(ev["y"], ref["y"])
    np.testing.assert_array_equal(ev["p"], ref["p"])
    # t against the independent `evt3` package decoder (Rust)
    evt3 = pytest.importorskip("evt3")
    other = evt3.decode_file(str(path))
    np.testing.assert_array_equal(ev["t"], np.asarray(other.timestamp).astype(np.int64))
    np.testing.assert_array_equal(ev["x"], np.asarray(other.x))


def test_real_evt3_pedestrians_and_chunking():
    path = real_file("prophesee_raw/evt3_test_pedestrians.raw")
    ev = RawReader(path).read_all()
    assert len(ev) == 5000
    ref = np.load(path.with_name("evt3_test_pedestrians_reference.npy"))
    np.testing.assert_array_equal(ev[["x", "y", "p"]].tolist(), ref[["x", "y", "p"]].tolist())
    chunked = concat_events(list(RawReader(path, chunk_bytes=1001)))
    np.testing.assert_array_equal(chunked, ev)


@pytest.mark.parametrize(
    ("name", "n", "n_on", "t_first", "t_last", "t_sum"),
    [
        ("evt2_sample.raw", 539_481, 367_855, 1_317_888, 1_367_888, 724_340_275_912),
        ("evt2_test_sparklers.raw", 521_252, 185_861, 913_716_224, 913_812_095, 476_298_094_656_969),
    ],
)
def test_real_evt2_golden_and_faery(name, n, n_on, t_first, t_last, t_sum):
    path = real_file("prophesee_raw/" + name)
    reader = RawReader(path, width=640, height=480)  # gen3 plugin: 640x480 also inferred
    ev = reader.read_all()
    assert (len(ev), int(ev["p"].sum()), int(ev["t"][0]), int(ev["t"][-1])) == (n, n_on, t_first, t_last)
    assert int(ev["t"].sum()) == t_sum
    assert RawReader(path).width == 640
    faery = pytest.importorskip("faery")
    ref = np.concatenate([pk["events"] for pk in faery.evt.Decoder(str(path), (640, 480), None)])
    np.testing.assert_array_equal(ev["t"], ref["t"].astype(np.int64))
    np.testing.assert_array_equal(ev["x"], ref["x"])
    np.testing.assert_array_equal(ev["y"], ref["y"])
    np.testing.assert_array_equal(ev["p"], ref["on"].astype(np.int8))


@pytest.mark.parametrize("name", ["evt3_sample.raw", "evt3_test_pedestrians.raw"])
def test_real_evt3_parallel_equals_sequential(parallel_runs, name):
    path = real_file("prophesee_raw/" + name)
    data = path.read_bytes()[RawReader(path).header.payload_offset :]
    for width, height in ((1280, 720), (640, 360)):  # 640x360: most events dropped, gaps closed
        ref = decode_all(data, width, height, threads=1)
        for threads in (2, 4, 16):
            assert_same_decode(decode_all(data, width, height, threads), ref)
        # streaming in odd-sized chunks, from word 777 (events before its first TIME_HIGH are dropped)
        tail = data[1554:]
        start = decode_all(tail, width, height, threads=1)
        assert start[3]["dropped_before_time"] > 0
        cuts = range(len(tail) // 7 | 1, len(tail), len(tail) // 7 | 1)
        assert_same_decode(decode_all(tail, width, height, 3, cuts=cuts), start)
    assert len(parallel_runs) >= 2 * (3 + len(cuts))  # every decode and chunk but a short last one


def test_real_evt3_raw_reader_threads(parallel_runs):
    path = real_file(EVT3_SAMPLE)
    seq = RawReader(path, threads=1).read_all()
    assert not parallel_runs
    np.testing.assert_array_equal(RawReader(path, threads=2).read_all(), seq)
    np.testing.assert_array_equal(concat_events(list(RawReader(path, chunk_bytes=100_001, threads=2))), seq)
    assert len(parallel_runs) == 1 + 7  # read_all, and the 7 chunks
    assert RawReader(path).threads is None  # the decoder takes numba.get_num_threads()

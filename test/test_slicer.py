"""Slicer (Eq. 1): hand-computed count frames, window boundaries, late events, packetisation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_file

from ros2_evmicro.core.events import EVENT_DTYPE, EventError, EventPacket, empty_events, make_events
from ros2_evmicro.core.slicer import Frame, Slicer, SlicerError, count_frame, slice_events


def ev(rows):
    """Events from (x, y, p, t) rows."""
    if not rows:
        return empty_events(0)
    x, y, p, t = zip(*rows, strict=True)
    return make_events(x, y, p, t)


# --- count_frame ---------------------------------------------------------------------------------


def test_count_frame_hand_computed_polarity_channels():
    e = ev([(0, 0, 1, 0), (0, 0, 1, 5), (0, 0, 0, 6), (3, 1, 0, 7), (2, 1, 1, 9)])
    f = count_frame(e, 4, 2)
    assert f.shape == (2, 2, 4) and f.dtype == np.uint16
    want = np.zeros((2, 2, 4), np.uint16)
    want[1, 0, 0] = 2  # two ON at (0, 0)
    want[0, 0, 0] = 1  # one OFF at (0, 0)
    want[0, 1, 3] = 1
    want[1, 1, 2] = 1
    np.testing.assert_array_equal(f, want)


def test_count_frame_empty_same_shape_and_dtype():
    f = count_frame(empty_events(0), 346, 260)
    assert f.shape == (2, 260, 346) and f.dtype == np.uint16 and not f.any()
    f32 = count_frame(empty_events(0), 346, 260, dtype=np.float32)
    assert f32.dtype == np.float32 and f32.shape == (2, 260, 346)


@pytest.mark.parametrize("w,h", [(346, 260), (1280, 720), (640, 480), (7, 3)])
def test_count_frame_matches_numpy_histogram(w, h, rng):
    n = 20_000
    e = make_events(rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n), np.arange(n))
    f = count_frame(e, w, h)
    ref = np.zeros((2, h, w), np.int64)
    np.add.at(ref, (e["p"].astype(np.int64), e["y"].astype(np.int64), e["x"].astype(np.int64)), 1)
    np.testing.assert_array_equal(f, ref)
    assert int(f.sum()) == n


def test_count_frame_accumulates_into_out_and_from_packet():
    e = ev([(1, 2, 0, 0), (1, 2, 0, 1)])
    out = np.ones((2, 3, 2), np.float32)
    r = count_frame(EventPacket(e, 2, 3), out=out)
    assert r is out
    assert out[0, 2, 1] == 3.0 and out.sum() == 12 + 2


def test_count_frame_saturates_instead_of_wrapping():
    e = ev([(0, 0, 1, i) for i in range(300)])
    f = count_frame(e, 1, 1, dtype=np.uint8)
    assert f[1, 0, 0] == 255


def test_count_frame_errors():
    with pytest.raises(EventError, match="outside the 4x2 sensor"):
        count_frame(ev([(4, 0, 1, 0)]), 4, 2)
    with pytest.raises(EventError, match="polarity"):
        count_frame(make_events([0], [0], [-1], [0]), 4, 2)
    with pytest.raises(SlicerError, match="EVENT_DTYPE"):
        count_frame(np.zeros(3, dtype=[("x", "u2")]), 4, 2)
    with pytest.raises(SlicerError, match="shape"):
        count_frame(ev([(0, 0, 1, 0)]), 4, 2, out=np.zeros((2, 4, 2), np.uint16))
    with pytest.raises(SlicerError, match="width and height"):
        count_frame(ev([(0, 0, 1, 0)]))


def test_packed_copy_of_the_event_dtype_is_accepted():
    e = ev([(1, 0, 1, 0), (1, 0, 1, 1)])
    packed = np.concatenate([e, e])  # numpy drops the padding: 13-byte records
    assert packed.dtype != EVENT_DTYPE
    assert count_frame(packed, 2, 1)[1, 0, 1] == 4


def test_slice_events_half_open():
    e = ev([(0, 0, 1, t) for t in (0, 10, 32_999, 33_000, 40_000)])
    s = slice_events(e, 0, 33_000)
    assert list(s["t"]) == [0, 10, 32_999]
    assert slice_events(e, 50_000, 60_000).dtype == EVENT_DTYPE


# --- Slicer: windows ------------------------------------------------------------------------------


def test_boundary_event_goes_to_next_window_and_alignment_floors_to_grid():
    s = Slicer(4, 2, window_us=10, late_tolerance_us=0)
    frames = s.push(ev([(0, 0, 1, 23), (1, 0, 1, 29), (2, 0, 0, 30), (3, 1, 1, 31)]))
    # first event 23 floored to the grid of 10 -> window [20, 30); event at exactly 30 opens [30, 40)
    assert s.origin_us == 20
    assert [(f.t_start_us, f.t_end_us, f.n_events) for f in frames] == [(20, 30, 2)]
    f = frames[0]
    assert f.counts[1, 0, 0] == 1 and f.counts[1, 0, 1] == 1 and f.counts.sum() == 2
    rest = s.flush()
    assert [(f.t_start_us, f.n_events) for f in rest] == [(30, 2)]
    assert rest[0].counts[0, 0, 2] == 1 and rest[0].counts[1, 1, 3] == 1


def test_t0_sets_alignment_and_earlier_events_are_dropped():
    s = Slicer(4, 2, window_us=10, late_tolerance_us=0, t0=5)
    frames = s.push(ev([(0, 0, 1, 3), (0, 0, 1, 5), (0, 0, 1, 14), (0, 0, 1, 15)]))
    assert [(f.t_start_us, f.n_events) for f in frames] == [(5, 2)]
    assert s.stats.n_dropped_late == 1


def test_straddling_packets_and_empty_windows():
    s = Slicer(3, 2, window_us=100, late_tolerance_us=0)
    out: list[Frame] = []
    # packet 1 covers [0, 150): straddles windows 0 and 1
    out += s.push(ev([(0, 0, 1, 0), (1, 0, 0, 99), (2, 1, 1, 100), (2, 1, 1, 149)]))
    assert [f.t_start_us for f in out] == [0]
    # packet 2 jumps to 420: windows [100,200) closes with 2 events, [200,300) and [300,400) are empty
    out += s.push(ev([(1, 1, 0, 420)]))
    assert [(f.t_start_us, f.n_events) for f in out] == [(0, 2), (100, 2), (200, 0), (300, 0)]
    for f in out:
        assert f.counts.shape == (2, 2, 3) and f.counts.dtype == np.uint16
    assert not out[2].counts.any() and not out[3].counts.any()
    assert out[1].counts[1, 1, 2] == 2
    out += s.flush()
    assert [(f.t_start_us, f.n_events) for f in out][-1] == (400, 1)
    st = s.stats
    assert st.windows == 5 and st.empty_windows == 2 and st.events_counted == 5 and st.n_dropped_late == 0


def test_empty_packet_with_span_advances_time():
    s = Slicer(3, 2, window_us=100, late_tolerance_us=0)
    assert s.push(ev([(0, 0, 1, 10)])) == []
    frames = s.push(EventPacket(empty_events(0), 3, 2, t_start=11, t_end=301))
    # watermark = t_end - 1 = 300 closes [0,100), [100,200), [200,300)
    assert [(f.t_start_us, f.n_events) for f in frames] == [(0, 1), (100, 0), (200, 0)]


def test_first_packet_empty_with_span_sets_origin():
    s = Slicer(3, 2, window_us=100, late_tolerance_us=0)
    frames = s.push(EventPacket(empty_events(0), 3, 2, t_start=250, t_end=420))
    assert s.origin_us == 200
    assert [f.t_start_us for f in frames] == [200, 300]
    assert s.push(empty_events(0)) == []


def test_late_within_tolerance_is_merged_and_too_late_dropped():
    s = Slicer(2, 1, window_us=100, late_tolerance_us=20)
    assert s.push(ev([(0, 0, 1, 50), (0, 0, 1, 110)])) == []  # wm 110 < 100 + 20: window 0 still open
    # a late event for window 0 (t=90) arrives after t=110 was seen: merged
    assert s.push(ev([(1, 0, 0, 90)])) == []
    frames = s.push(ev([(0, 0, 1, 120)]))  # wm 120 >= 120: window 0 closes
    assert [(f.t_start_us, f.n_events, f.n_late_merged) for f in frames] == [(0, 2, 1)]
    assert frames[0].counts[0, 0, 1] == 1 and frames[0].counts[1, 0, 0] == 1
    # now an event for window 0 is too late: dropped and counted
    assert s.push(ev([(1, 0, 1, 99)])) == []
    assert s.stats.n_dropped_late == 1
    rest = s.flush()
    assert [(f.t_start_us, f.n_events) for f in rest] == [(100, 2)]
    assert s.stats.n_late_merged == 1 and s.stats.events_counted == 4


def test_out_of_order_within_one_packet_beyond_tolerance_is_dropped():
    # the decision is per event against the running watermark, even inside one packet
    s = Slicer(2, 1, window_us=100, late_tolerance_us=5)
    frames = s.push(ev([(0, 0, 1, 10), (0, 0, 1, 250), (0, 0, 1, 20)]))
    assert s.stats.n_dropped_late == 1
    assert [f.n_events for f in frames] == [1, 0]
    assert [f.n_events for f in s.flush()] == [1]


def test_frames_do_not_depend_on_packetisation(rng):
    n = 30_000
    t = np.sort(rng.integers(1_000, 400_000, n))
    t = t + rng.integers(-300, 1, n)  # jitter: reordering by up to 300 us
    e = make_events(rng.integers(0, 46, n), rng.integers(0, 26, n), rng.integers(0, 2, n), t)

    def run(cuts):
        s = Slicer(46, 26, window_us=33_000, late_tolerance_us=500)
        frames = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            frames += s.push(e[a:b])
        frames += s.flush()
        return frames, s.stats

    whole, st1 = run([0, n])
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, 50)]))
    pieces, st2 = run(list(cuts))
    assert len(whole) == len(pieces) > 10
    for a, b in zip(whole, pieces, strict=True):
        assert (a.t_start_us, a.n_events, a.n_late_merged) == (b.t_start_us, b.n_events, b.n_late_merged)
        np.testing.assert_array_equal(a.counts, b.counts)
    assert st1.n_dropped_late == st2.n_dropped_late
    # every event is either counted or dropped
    assert st1.events_counted + st1.n_dropped_late == n
    # with a tolerance larger than the jitter nothing is dropped, and counts agree with count_frame
    s = Slicer(46, 26, window_us=33_000, late_tolerance_us=1_000)
    frames = s.push(e) + s.flush()
    assert s.stats.n_dropped_late == 0
    for f in frames:
        sel = e[(e["t"] >= f.t_start_us) & (e["t"] < f.t_end_us)]
        np.testing.assert_array_equal(f.counts, count_frame(sel, 46, 26))


@pytest.mark.parametrize("w,h", [(346, 260), (1280, 720), (640, 480)])
def test_sensor_sizes_and_many_windows_in_one_packet(w, h, rng):
    n = 5_000
    e = make_events(rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n), np.linspace(0, 329_999, n))
    s = Slicer(w, h)  # defaults: 33 ms windows
    frames = s.push(e) + s.flush()
    assert len(frames) == 10
    assert all(f.counts.shape == (2, h, w) for f in frames)
    assert sum(f.n_events for f in frames) == n
    assert sum(int(f.counts.sum()) for f in frames) == n
    assert [f.t_start_us for f in frames] == [33_000 * k for k in range(10)]


def test_time_jump_skips_long_runs_of_empty_windows():
    s = Slicer(2, 2, window_us=10, late_tolerance_us=0, max_empty_windows=3)
    frames = s.push(ev([(0, 0, 1, 0), (0, 0, 1, 1_000)]))
    assert [f.t_start_us for f in frames] == [0, 10, 20, 30]
    assert s.stats.windows_skipped == 96
    rest = s.flush()
    assert [(f.t_start_us, f.n_events) for f in rest] == [(1_000, 1)]


def test_invalid_events_raise_or_are_dropped():
    s = Slicer(4, 2, window_us=10, late_tolerance_us=0)
    with pytest.raises(EventError, match="outside the 4x2 sensor"):
        s.push(ev([(0, 0, 1, 0), (0, 2, 1, 1)]))
    assert s.stats.events_counted == 0
    d = Slicer(4, 2, window_us=10, late_tolerance_us=0, on_invalid="drop")
    d.push(ev([(0, 0, 1, 0), (9, 0, 1, 1)]))
    frames = d.flush()
    assert d.stats.n_invalid == 1 and frames[0].n_events == 1


def test_bad_parameters_and_packet_size():
    with pytest.raises(SlicerError, match="window_us"):
        Slicer(4, 2, window_us=0)
    with pytest.raises(SlicerError, match="late_tolerance_us"):
        Slicer(4, 2, late_tolerance_us=-1)
    with pytest.raises(SlicerError, match="sensor size"):
        Slicer(0, 2)
    with pytest.raises(SlicerError, match="on_invalid"):
        Slicer(4, 2, on_invalid="ignore")
    with pytest.raises(SlicerError, match="built for 4x2"):
        Slicer(4, 2).push(EventPacket(ev([(0, 0, 1, 0)]), 5, 2))


def test_many_open_windows_grow_the_buffers():
    # tolerance of 10 windows: up to 11 windows stay open at once
    s = Slicer(2, 2, window_us=10, late_tolerance_us=100)
    frames = s.push(ev([(0, 0, 1, t) for t in range(0, 150, 5)]))
    frames += s.push(ev([(1, 1, 0, 3)]))  # late by 140 us: window 0 closed at wm 110 -> dropped
    frames += s.flush()
    assert [f.n_events for f in frames] == [2] * 15
    assert s.stats.n_dropped_late == 1


def test_stats_as_dict():
    s = Slicer(2, 2, window_us=10, late_tolerance_us=0)
    s.push(ev([(0, 0, 1, 0), (0, 0, 1, 1), (0, 0, 1, 25)]))
    s.flush()
    d = s.stats.as_dict()
    assert d["windows"] == 3 and d["empty_windows"] == 1 and d["events_per_window_max"] == 2
    assert d["events_per_window_mean"] == 1.0


def test_real_davis346_recording_in_33ms_windows():
    """117,667 DAVIS346 events (45,304 OFF, 72,363 ON) over 0.13 s: every event lands in one window."""
    path = real_file("davis346_aedat4/davis346_sample.aedat4")
    dv = pytest.importorskip("dv_processing")
    rec = dv.io.MonoCameraRecording(str(path))
    w, h = rec.getEventResolution()
    s = Slicer(w, h)
    frames = []
    n = 0
    while (batch := rec.getNextEventBatch()) is not None:
        a = batch.numpy()
        n += len(a)
        frames += s.push(make_events(a["x"], a["y"], a["polarity"], a["timestamp"]))
    frames += s.flush()
    assert n == 117_667
    assert s.stats.n_dropped_late == 0 and s.stats.events_counted == n
    total = np.sum([f.counts.sum(axis=(1, 2)) for f in frames], axis=0)
    assert total.tolist() == [45_304, 72_363]
    assert all(f.t_end_us - f.t_start_us == 33_000 for f in frames)
    assert frames[0].t_start_us % 33_000 == 0 and 4 <= len(frames) <= 5


def test_reset_forgets_open_windows():
    s = Slicer(2, 2, window_us=10, late_tolerance_us=0)
    s.push(ev([(0, 0, 1, 5), (1, 1, 0, 6)]))
    s.reset()
    assert s.origin_us is None and s.watermark_us is None
    frames = s.push(ev([(1, 0, 1, 1_003)])) + s.flush()
    assert [(f.t_start_us, f.n_events) for f in frames] == [(1_000, 1)]
    assert frames[0].counts.sum() == 1 and frames[0].counts[1, 0, 1] == 1


# --- zero-copy paths the slicer node uses ------------------------------------------------------


def test_wire_view_push_equals_event_push(rng):
    """Slicing the WIRE_DTYPE view of a message buffer (relative t + stamp) gives the frames of the widened copy."""
    from ros2_evmicro.core.wire import events_to_wire, wire_bytes, wire_view

    n = 20_000
    t = np.sort(rng.integers(5_000_000, 5_300_000, n)) + rng.integers(-200, 1, n)
    e = make_events(rng.integers(0, 46, n), rng.integers(0, 26, n), rng.integers(0, 2, n), t)
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, 20)]))
    a = Slicer(46, 26, window_us=33_000, late_tolerance_us=100)
    b = Slicer(46, 26, window_us=33_000, late_tolerance_us=100)
    fa, fb = [], []
    for i0, i1 in zip(cuts[:-1], cuts[1:], strict=True):
        fa += a.push(e[i0:i1])
        wire, t_ref = events_to_wire(e[i0:i1])
        view = wire_view(bytes(wire_bytes(wire)))  # what a received PointCloud2 gives
        fb += [Frame(f.t_start_us, f.t_end_us, f.counts.copy(), f.n_events, f.n_late_merged)
               for f in b.push(view, t_offset_us=t_ref)]
    assert len(fa) == len(fb) > 5
    for x, y in zip(fa, fb, strict=True):
        assert (x.t_start_us, x.n_events, x.n_late_merged) == (y.t_start_us, y.n_events, y.n_late_merged)
        np.testing.assert_array_equal(x.counts, y.counts)
    assert a.stats.n_dropped_late == b.stats.n_dropped_late > 0
    assert a.stats.n_late_merged == b.stats.n_late_merged > 0
    assert a.origin_us == b.origin_us == (int(e["t"][0]) // 33_000) * 33_000
    # an offset makes no sense for absolute times, nor for packets
    with pytest.raises(SlicerError, match="WIRE_DTYPE"):
        Slicer(46, 26).push(e[:10], t_offset_us=5)
    with pytest.raises(SlicerError, match="EventPacket"):
        Slicer(46, 26).push(EventPacket(e[:10], 46, 26), t_offset_us=5)


def test_wire_view_invalid_event_raises_before_counting():
    from ros2_evmicro.core.wire import events_to_wire

    e = ev([(1, 1, 1, 100), (50, 1, 0, 200)])
    wire, t_ref = events_to_wire(e)
    s = Slicer(46, 26, window_us=1_000, late_tolerance_us=0)
    with pytest.raises(EventError, match="x=50"):
        s.push(wire, t_offset_us=t_ref)
    assert s.stats.events_counted == 0 and not s.flush()


def test_frame_views_equal_copies_and_stay_valid_until_the_next_call(rng):
    n = 40_000
    t = np.sort(rng.integers(0, 500_000, n))
    e = make_events(rng.integers(0, 46, n), rng.integers(0, 26, n), rng.integers(0, 2, n), t)
    copy = Slicer(46, 26, window_us=33_000, late_tolerance_us=0)
    view = Slicer(46, 26, window_us=33_000, late_tolerance_us=0, frame_views=True)
    for i0 in range(0, n, 7_000):
        fc = copy.push(e[i0:i0 + 7_000])
        fv = view.push(e[i0:i0 + 7_000])
        assert len(fc) == len(fv)
        for c, v in zip(fc, fv, strict=True):  # every view of this call is intact (no slot reused within a call)
            np.testing.assert_array_equal(c.counts, v.counts)
            assert not v.counts.flags.writeable
            with pytest.raises(ValueError):
                v.counts[0, 0, 0] = 1
    np.testing.assert_array_equal(copy.flush()[-1].counts, view.flush()[-1].counts)
    # empty windows share one read-only zero frame
    s = Slicer(4, 4, window_us=1_000, late_tolerance_us=0, frame_views=True)
    frames = s.push(ev([(0, 0, 1, 0), (1, 1, 1, 5_500)]))
    assert [f.n_events for f in frames] == [1, 0, 0, 0, 0]
    assert not frames[2].counts.any() and not frames[2].counts.flags.writeable


def test_push_iter_hands_out_each_frame_before_the_rest_of_its_packet_is_counted(rng):
    """One packet spanning five 1 ms windows: each window comes out at the event that first reaches its end
    plus the tolerance (the watermark then), with the counts of Eq. 1, and the views stay valid to the end."""
    n = 5_000
    t = np.sort(rng.integers(0, 5_000, n))
    e = make_events(rng.integers(0, 8, n), rng.integers(0, 8, n), rng.integers(0, 2, n), t)
    s = Slicer(8, 8, window_us=1_000, late_tolerance_us=100, frame_views=True)
    seen, views = [], []
    for f in s.push_iter(e):
        seen.append((f.t_start_us, s.watermark_us, f.counts.copy(), f.n_events))
        views.append(f.counts)
    assert [x[0] for x in seen] == [0, 1_000, 2_000, 3_000]  # window 4 needs an event at 5,100 us or later
    for t0, wm, counts, n_ev in seen:
        closing = int(t[np.searchsorted(t, t0 + 1_000 + 100)])  # the first event at window end + tolerance
        assert wm == closing < int(t[-1])
        want = count_frame(e[(t >= t0) & (t < t0 + 1_000)], 8, 8)
        np.testing.assert_array_equal(counts, want)
        assert n_ev == int(want.sum())
    for (_, _, counts, _), view in zip(seen, views, strict=True):
        np.testing.assert_array_equal(view, counts)
    assert s.watermark_us == int(t[-1])
    # the same frames and statistics as push, which is push_iter run to the end
    s2 = Slicer(8, 8, window_us=1_000, late_tolerance_us=100)
    assert [(f.t_start_us, f.n_events) for f in s2.push(e)] == [(x[0], x[3]) for x in seen]
    assert s2.stats.as_dict() == s.stats.as_dict()


def _random_stream(rng, n: int, w: int, h: int, t_max_us: int) -> np.ndarray:
    """``n`` uniformly random events on a ``w`` x ``h`` sensor, sorted over ``[0, t_max_us)``."""
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n),
                       np.sort(rng.integers(0, t_max_us, n)))


def test_watermark_closes_windows_that_ended_without_the_tolerance():
    s = Slicer(2, 1, window_us=100, late_tolerance_us=20)
    assert s.complete(500) == []  # no grid before the first event: nothing to close
    assert s.push(ev([(0, 0, 1, 50), (1, 0, 0, 99)])) == []
    assert s.complete(99) == []  # window 0 ends at 100: a watermark at 99 does not close it
    frames = s.complete(100)  # every event before 100 is in: window 0 closes now, not at an event >= 120
    assert [(f.t_start_us, f.n_events) for f in frames] == [(0, 2)]
    assert frames[0].counts[1, 0, 0] == 1 and frames[0].counts[0, 0, 1] == 1
    assert s.watermark_us == 99
    # a stale watermark changes nothing; a jump closes the empty windows between
    assert s.complete(50) == []
    assert [(f.t_start_us, f.n_events) for f in s.complete(350)] == [(100, 0), (200, 0)]
    # an event the source promised not to send is late: dropped and counted
    assert s.push(ev([(0, 0, 1, 250)])) == []
    assert s.stats.n_dropped_late == 1
    frames = s.push(ev([(0, 0, 1, 310)])) + s.complete(400)
    assert [(f.t_start_us, f.n_events) for f in frames] == [(300, 1)]
    assert s.stats.events_counted == 3


def test_watermarks_give_the_frames_of_the_event_rule(rng):
    """Closing windows on watermarks changes when frames come out, never what they hold."""
    e = _random_stream(rng, 20_000, 46, 26, 400_000)
    t = e["t"]
    a = Slicer(46, 26, window_us=33_000, late_tolerance_us=2_000)
    ref = a.push(e) + a.flush()
    b = Slicer(46, 26, window_us=33_000, late_tolerance_us=2_000)
    got = []
    edges = [0, *range(33_000, 400_000, 33_000)]
    for lo, hi in zip(edges, [*edges[1:], 400_001], strict=True):
        got += b.push(e[(t >= lo) & (t < hi)])
        if hi <= 400_000:
            closed = b.complete(hi)
            assert closed and closed[-1].t_end_us == hi  # the window that just ended comes out at once
            got += closed
    got += b.flush()
    assert [f.t_start_us for f in got] == [f.t_start_us for f in ref]
    for x, y in zip(ref, got, strict=True):
        assert x.n_events == y.n_events
        np.testing.assert_array_equal(x.counts, y.counts)
    assert b.stats.n_dropped_late == 0


def test_region_counts_only_its_pixels_and_keeps_everything_else(rng):
    n = 40_000
    e = _random_stream(rng, n, 128, 72, 200_000)
    full = Slicer(128, 72, window_us=33_000, late_tolerance_us=1_000)
    ref = full.push(e) + full.flush()
    part = Slicer(128, 72, window_us=33_000, late_tolerance_us=1_000)
    part.set_region((30, 10, 90, 60))
    assert part.region == (30, 10, 90, 60)
    got = part.push(e[: n // 2]) + part.push(e[n // 2:]) + part.flush()
    assert len(got) == len(ref) > 5
    for a, b in zip(ref, got, strict=True):
        assert a.n_events == b.n_events  # every event still counts in its window
        np.testing.assert_array_equal(b.counts[:, 10:60, 30:90], a.counts[:, 10:60, 30:90])
        outside = b.counts.copy()
        outside[:, 10:60, 30:90] = 0
        assert not outside.any()
    assert part.stats.events_counted == full.stats.events_counted == n
    # clipped to the sensor; None is the whole sensor again; an empty region is an error
    part.set_region((-5, -5, 500, 20))
    assert part.region == (0, 0, 128, 20)
    part.set_region(None)
    assert part.region == (0, 0, 128, 72)
    with pytest.raises(SlicerError, match="no pixel"):
        part.set_region((200, 0, 300, 10))


def test_crop_of_the_region_is_the_crop_of_the_full_frame(rng):
    from ros2_evmicro.core.roi import center_box, crop_counts, crop_region

    n = 60_000
    e = make_events(rng.integers(0, 1280, n), rng.integers(0, 720, n), rng.integers(0, 2, n),
                    np.sort(rng.integers(0, 33_000, n)))
    for box, margin, size in [(center_box(1280, 720, 0.6), 0.2, 64), ((1000.3, -40.0, 1400.0, 300.0), 0.1, 64),
                              ((600.0, 300.0, 630.0, 330.0), 0.2, 64)]:
        full = Slicer(1280, 720, window_us=33_000, late_tolerance_us=0)
        part = Slicer(1280, 720, window_us=33_000, late_tolerance_us=0)
        part.set_region(crop_region(box, margin, 1280, 720))
        (a,) = full.push(e) + full.flush()
        (b,) = part.push(e) + part.flush()
        np.testing.assert_array_equal(crop_counts(b.counts, box, size, margin),
                                      crop_counts(a.counts, box, size, margin))

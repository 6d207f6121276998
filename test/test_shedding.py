"""Load shedding: Slicer.shed drops whole windows and nothing else; the LoadShedder's policy on backlog traces."""

from __future__ import annotations

import numpy as np
import pytest

from ros2_evmicro.core.events import make_events
from ros2_evmicro.core.shedding import LoadShedder
from ros2_evmicro.core.slicer import Slicer
from ros2_evmicro.core.wire import events_to_wire

W_US = 33_000


def _stream(rng, n: int, w: int, h: int, t_max_us: int) -> np.ndarray:
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n),
                       np.sort(rng.integers(0, t_max_us, n)))


def _reference(e: np.ndarray, w: int, h: int) -> dict[int, tuple[int, np.ndarray]]:
    s = Slicer(w, h, window_us=W_US, late_tolerance_us=2_000)
    return {f.t_start_us: (f.n_events, f.counts.copy()) for f in s.push(e) + s.flush()}


def _packets(e: np.ndarray, edges: list[int]) -> list[np.ndarray]:
    t = e["t"]
    return [e[(t >= lo) & (t < hi)] for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


@pytest.mark.parametrize("cut", ["grid", "straddling"])
@pytest.mark.parametrize("views", [False, True])
def test_shed_windows_give_no_frame_and_the_others_are_unchanged(rng, cut, views):
    """Windows 2 and 5 are shed before any of their events come, window 7 after part of it was counted; the other
    frames equal the frames of a slicer that sheds nothing, whatever the packets straddle."""
    w, h = 46, 26
    e = _stream(rng, 30_000, w, h, 12 * W_US)
    ref = _reference(e, w, h)
    if cut == "grid":  # as the drivers cut with watermarks: 10, 10, 10, 3 ms per window
        edges = sorted({*range(0, 12 * W_US, 10_000), *range(0, 12 * W_US + 1, W_US)})
    else:  # 7 ms packets across the window boundaries
        edges = [*range(0, 12 * W_US, 7_000), 12 * W_US]
    s = Slicer(w, h, window_us=W_US, late_tolerance_us=2_000, frame_views=views)
    got: dict[int, tuple[int, np.ndarray]] = {}

    def take(frames):
        for f in frames:
            got[f.t_start_us] = (f.n_events, f.counts.copy())

    first, late_shed = True, False
    for pkt in _packets(e, edges):
        if not len(pkt):
            continue
        t0 = int(pkt["t"][0])
        if not first and t0 // W_US in (2, 5):
            assert s.shed(t0 // W_US)
        if t0 >= 7 * W_US + 20_000 and not late_shed:  # window 7 partly counted already
            assert s.shed(7)
            late_shed = True
        first = False
        wire, ref_us = events_to_wire(pkt)
        take(s.push_iter(wire, t_offset_us=ref_us))
    take(s.flush())
    shed = {2 * W_US, 5 * W_US, 7 * W_US}
    assert set(got) == set(ref) - shed
    for k, (n, counts) in got.items():
        assert n == ref[k][0]
        np.testing.assert_array_equal(counts, ref[k][1])
    assert s.stats.windows_shed == 3
    assert 0 < s.stats.events_shed <= sum(ref[k][0] for k in shed)
    assert s.stats.events_counted == sum(n for n, _ in got.values())
    assert s.stats.events_in == len(e)
    assert s.stats.n_dropped_late == 0


def test_shed_of_a_closed_window_or_before_the_grid_changes_nothing():
    s = Slicer(4, 4, window_us=100, late_tolerance_us=0)
    assert s.window_index(50) is None and not s.shed(0)  # no grid yet
    ev = make_events([0, 1, 2], [0, 0, 0], [1, 1, 0], [10, 150, 250])
    frames = s.push(ev[:2])
    assert [f.t_start_us for f in frames] == [0]
    assert s.window_index(150) == 1 and s.window_index(99) == 0
    assert not s.shed(0)  # closed already
    assert s.shed(1)
    assert s.push(ev[2:]) == []  # window 1 closes, shed: no frame
    assert [f.t_start_us for f in s.flush()] == [200]
    assert s.stats.windows_shed == 1 and s.stats.windows == 2


def test_shed_windows_are_closed_by_watermarks_and_free_their_slots(rng):
    """A long run with every other window shed and closed by watermarks: the slots are reused (no growth)."""
    w, h = 16, 8
    e = _stream(rng, 50_000, w, h, 200 * W_US)
    s = Slicer(w, h, window_us=W_US, late_tolerance_us=2_000, frame_views=True)
    n_slots = s._bufs.shape[0]
    out = []
    for k in range(200):
        pkt = e[(e["t"] >= k * W_US) & (e["t"] < (k + 1) * W_US)]
        if k % 2 and k > 0:
            s.shed(k)
        out += [f.t_start_us for f in s.push(pkt)] + [f.t_start_us for f in s.complete((k + 1) * W_US)]
    assert out == [k * W_US for k in range(0, 200, 2)]
    assert s._bufs.shape[0] == n_slots
    assert s.stats.windows_shed == 100


# -- the policy -----------------------------------------------------------------------------------


def test_shedder_rejects_bad_settings():
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            LoadShedder(bad, 33.0)
    with pytest.raises(ValueError):
        LoadShedder(50.0, 0.0)
    with pytest.raises(ValueError):
        LoadShedder(50.0, 33.0, max_every=0)


def test_shedder_keeps_every_window_while_the_backlog_stays_under_the_limit(rng):
    sh = LoadShedder(50.0, 33.0)
    for k in range(3000):
        for _ in range(4):  # four packets per window, up to 45 ms late at times
            assert sh.on_message(k, k, float(rng.uniform(0, 45))) == []
    assert sh.every == 1 and sh.stats.windows_shed == 0 and sh.stats.windows_decided == 3000


def test_stalls_shed_nothing_even_when_they_repeat():
    """A stall (another callback holding the executor, the host busy): the packets queued during it come late,
    then the backlog falls. However often it happens, every window is still counted."""
    sh = LoadShedder(50.0, 33.0)
    k = 0
    for _ in range(20):  # a 150 ms stall every ~10 windows
        for b in (140.0, 120.0, 95.0, 70.0, 52.0, 20.0, 3.0, 2.0, 2.0, 2.0):
            for _ in range(4):
                assert sh.on_message(k, k, b) == []
            k += 1
    assert sh.every == 1 and sh.stats.windows_shed == 0 and sh.stats.overloads == 0


def test_the_start_up_burst_is_not_an_overload():
    """The packets published while the pipeline was still being built come first, late and later still while the
    models make their first calls: in the first second of event time that is not taken for an overload."""
    sh = LoadShedder(50.0, 33.0)
    for k, b in enumerate((800.0, 850.0, 900.0, 950.0, 600.0, 300.0, 40.0, 5.0)):
        assert sh.on_message(k, k, b) == []
    assert sh.every == 1 and sh.stats.windows_shed == 0
    # past the grace, the same rise is an overload
    sh = LoadShedder(50.0, 33.0)
    sh.on_message(0, 0, 2.0)
    assert [sh.on_message(k, k, b) for k, b in zip(range(40, 44), (800.0, 850.0, 900.0, 950.0), strict=True)] == [
        [], [], [42], [43]]


def test_a_backlog_that_keeps_rising_is_an_overload():
    sh = LoadShedder(50.0, 33.0, grace_s=0.0)
    assert [sh.on_message(k, k, b) for k, b in enumerate((10.0, 30.0, 55.0, 60.0))] == [[], [], [], []]
    assert sh.every == 1  # over the limit for two window starts, rising: not yet
    assert sh.on_message(4, 4, 65.0) == [4]  # the third rising start: overloaded, shed
    assert sh.every == 2 and sh.stats.overloads == 1
    # overloaded, a window counted so far is shed when one of its later packets comes over the limit
    assert sh.on_message(6, 6, 3.0) == []
    assert sh.on_message(6, 6, 70.0) == [6]
    assert sh.stats.shed_over_limit == 1 and sh.every == 3  # a new episode while shedding: not enough


def _simulate(sh: LoadShedder, n_windows: int, cost) -> tuple[list[float], list[bool]]:
    """A consumer whose counted window costs ``cost(k)`` windows of time and a shed one 0.1: the backlog at
    each window's first packet, and whether the window was counted."""
    backlog = 0.0
    starts, counted = [], []
    for k in range(n_windows):
        starts.append(backlog)
        shed = sh.on_message(k, k, backlog)
        c = k not in shed
        counted.append(c)
        backlog = max(0.0, backlog + ((cost(k) if c else 0.1) - 1.0) * 33.0)
    return starts, counted


def test_sustained_overload_sheds_to_the_capacity_and_the_counted_windows_are_current():
    sh = LoadShedder(50.0, 33.0)
    starts, counted = _simulate(sh, 1500, lambda k: 1.8)  # counting costs 1.8x real time
    assert sh.every >= 2 and sh.stats.overloads >= 1
    late = [b for b, c in zip(starts[300:], counted[300:], strict=True) if c]
    assert late, "some windows must still be counted"
    # after the first second: the backlog stays bounded and the counted windows start calm, but the probes
    assert max(starts[300:]) <= 50.0
    assert np.percentile(late, 95) <= sh.calm_ms
    frac = np.mean(counted[300:])
    assert 0.3 <= frac <= 1 / 1.8 + 0.05  # about what the machine can do, not much less
    # a failed probe doubles the wait before the next one
    assert sh.stats.probes >= 1 and sh.stats.probes_failed >= 1
    assert sh._probe_after > sh.probe_base


def test_the_shedder_comes_back_to_every_window_when_the_load_goes():
    sh = LoadShedder(50.0, 33.0, probe_max_s=5.0)
    starts, counted = _simulate(sh, 3000, lambda k: 1.6 if k < 600 else 0.5)
    assert sh.every == 1
    assert all(counted[-300:])  # the last 10 s: every window counted again
    assert max(starts[-300:]) <= sh.calm_ms


def test_a_shed_window_in_a_skipped_gap_counts_as_shed():
    """With max_empty_windows 0 the empty windows of a gap are skipped, not emitted: a shed one among them still
    counts as shed (its events were not counted, it was not empty)."""
    s = Slicer(4, 4, window_us=100, late_tolerance_us=0, max_empty_windows=0)
    frames = s.push(make_events([0], [0], [1], [10]))
    assert s.shed(3)
    frames += s.push(make_events([1], [0], [1], [350]))  # window 3's only event: not counted
    frames += s.complete(400) + s.push(make_events([2], [0], [1], [650])) + s.flush()
    assert [f.t_start_us for f in frames] == [0, 600]
    assert (s.stats.windows_shed, s.stats.events_shed) == (1, 1)
    assert s.stats.windows_skipped == 2 + 2  # windows 1, 2 and 4, 5

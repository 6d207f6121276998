import numpy as np
import pytest

from ros2_evmicro.core.events import EVENT_DTYPE, make_events
from ros2_evmicro.core.stream import Packetizer


def _ev(ts):
    ts = np.asarray(ts)
    return make_events(np.zeros(len(ts)), np.zeros(len(ts)), np.ones(len(ts)), ts)


def test_packets_follow_the_grid_and_lose_nothing(rng):
    t = np.sort(rng.integers(1_000, 101_000, 5000))
    pk = Packetizer(10_000)
    out = []
    for chunk in np.array_split(_ev(t), 37):
        out += pk.push(chunk)
    out.append(pk.flush())
    assert sum(len(p) for p in out) == 5000
    np.testing.assert_array_equal(np.concatenate(out)["t"], t)
    t0 = t[0]
    for p in out[:-1]:
        k = (p["t"][0] - t0) // 10_000
        assert np.all((p["t"] - t0) // 10_000 == k), "a packet crosses a grid line"


def test_boundary_event_goes_to_next_packet_and_gaps_are_skipped():
    pk = Packetizer(10)
    out = pk.push(_ev([0, 5, 9, 10, 15, 1000]))
    assert [list(p["t"]) for p in out] == [[0, 5, 9], [10, 15]]
    assert list(pk.flush()["t"]) == [1000]
    assert pk.flush().dtype == EVENT_DTYPE and len(pk.flush()) == 0


def test_packetizer_errors():
    with pytest.raises(ValueError, match="positive"):
        Packetizer(0)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        Packetizer(10).push(np.zeros(3))


def _grid(period):
    return lambda t: (t // period + 1) * period


def test_extra_cuts_end_packets_on_the_window_grid_and_lose_nothing(rng):
    t = np.sort(rng.integers(1_000, 301_000, 20_000))
    pk = Packetizer(10_000, cuts=_grid(33_000))
    out = []
    for chunk in np.array_split(_ev(t), 53):
        out += pk.push_marked(chunk)
    rest = pk.flush()
    got = np.concatenate([p for p, _ in out] + [rest])["t"]
    np.testing.assert_array_equal(got, t)
    marks = [c for _, c in out if c is not None]
    assert marks == list(range(33_000, 300_001, 33_000)), "one watermark per window boundary, in order"
    seen = 0
    for pkt, c in out:
        seen += len(pkt)
        if c is not None:  # every event before the cut has been handed out, none at or after it
            assert seen == np.searchsorted(t, c)
        if len(pkt):
            # no packet crosses a window boundary, or a 10 ms period boundary of the grid restarted there
            assert (pkt["t"][0] // 33_000) == (pkt["t"][-1] // 33_000)
            w0 = max(int(t[0]), pkt["t"][0] // 33_000 * 33_000)
            assert (pkt["t"][0] - w0) // 10_000 == (pkt["t"][-1] - w0) // 10_000


def test_extra_cut_on_an_event_time_and_gaps_cost_one_watermark():
    pk = Packetizer(1000, cuts=_grid(33))
    out = pk.push_marked(_ev([0, 5, 33, 40]))
    assert [(list(p["t"]), c) for p, c in out] == [([0, 5], 33)]  # the event at 33 opens the next packet
    out = pk.push_marked(_ev([50, 500]))  # 500: windows 66..495 passed without events
    assert [(list(p["t"]), c) for p, c in out] == [([33, 40, 50], 66), ([], 495)]
    assert list(pk.flush()["t"]) == [500]
    # the plain push never returns the empty watermark packets
    pk2 = Packetizer(1000, cuts=_grid(33))
    assert [list(p["t"]) for p in pk2.push(_ev([0, 5, 33, 40, 50, 500]))] == [[0, 5], [33, 40, 50]]


def test_extra_cuts_must_move_forward():
    pk = Packetizer(1000, cuts=lambda t: t)
    with pytest.raises(ValueError, match="after the time"):
        pk.push(_ev([0, 1]))

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

import numpy as np
import pytest

from ros2_evmicro.core.events import (
    EVENT_DTYPE,
    EventError,
    EventPacket,
    SensorSize,
    concat_events,
    empty_events,
    make_events,
    validate_events,
)


def test_dtype_layout():
    assert EVENT_DTYPE.itemsize == 16
    assert [EVENT_DTYPE.fields[k][1] for k in "xypt"] == [0, 2, 4, 8]
    assert EVENT_DTYPE["t"] == np.dtype("<i8")


def test_make_and_validate_ok():
    ev = make_events([0, 345], [0, 259], [0, 1], [10, 10])
    assert validate_events(ev, 346, 260) is ev
    assert ev["t"].dtype == np.int64


@pytest.mark.parametrize(
    "ev, match",
    [
        (np.zeros(3, dtype=[("x", "u2"), ("y", "u2"), ("p", "i1"), ("t", "i8")]), "dtype"),
        (make_events([346], [0], [1], [0]), r"outside the 346x260 sensor"),
        (make_events([0], [260], [1], [0]), r"outside"),
        (make_events([0, 0], [0, 0], [2, 0], [0, 1]), "polarity 2"),
        (make_events([0, 0, 0], [0, 0, 0], [0, 0, 0], [100, 50, 120]), "backwards by 50 us at event 1"),
        ([1, 2, 3], "numpy array"),
    ],
)
def test_validate_rejects(ev, match):
    with pytest.raises(EventError, match=match):
        validate_events(ev, 346, 260)


def test_time_tolerance():
    ev = make_events([0, 0, 0], [0, 0, 0], [0, 1, 0], [100, 95, 120])
    validate_events(ev, 10, 10, time_tolerance_us=5)
    with pytest.raises(EventError, match="backwards by 5 us"):
        validate_events(ev, 10, 10, time_tolerance_us=4)
    with pytest.raises(EventError, match="before the end of the previous packet"):
        validate_events(ev, 10, 10, time_tolerance_us=5, t_min=200)


def test_empty_and_concat_keep_dtype():
    e = empty_events()
    assert e.dtype == EVENT_DTYPE and e.shape == (0,)
    validate_events(e, 1, 1)
    c = concat_events([e, make_events([1], [1], [1], [5]), empty_events(0)])
    assert c.dtype == EVENT_DTYPE and len(c) == 1
    assert concat_events([]).dtype == EVENT_DTYPE


def test_packet_span_and_sensor():
    p = EventPacket(make_events([1, 2], [1, 2], [0, 1], [10, 20]), 346, 260)
    assert (p.t_start, p.t_end) == (10, 21)
    assert p.sensor_size.shape == (260, 346)
    empty = EventPacket(empty_events(), 346, 260, t_start=0, t_end=10_000)
    assert len(empty) == 0 and empty.t_end == 10_000
    with pytest.raises(EventError, match="before it starts"):
        EventPacket(empty_events(), 346, 260, t_start=10, t_end=5)
    with pytest.raises(EventError, match="sensor size"):
        SensorSize(0, 10)


def test_concat_keeps_aligned_layout():
    a = make_events([1, 2], [1, 2], [0, 1], [1, 2])
    b = make_events([3], [3], [1], [3])
    c = concat_events([a, b])
    assert c.dtype == EVENT_DTYPE and c.dtype.itemsize == 16
    assert list(c["t"]) == [1, 2, 3]

"""PointCloud2 / Image conversions: zero-copy views, round trips through rclpy's own serialization."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField

from ros2_evmicro.core.events import EVENT_DTYPE, make_events
from ros2_evmicro.core.wire import WIRE_DTYPE, WireError, events_to_wire, image_view, wire_bytes, wire_view
from ros2_evmicro.ros import convert


def _events(rng, n=1000, w=346, h=260, t0=1_700_000_000_000_000):
    t = t0 + np.sort(rng.integers(0, 10_000, n))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n), t)


def test_wire_layout_is_contract():
    assert WIRE_DTYPE.itemsize == 12
    assert [WIRE_DTYPE.fields[k][1] for k in "xypt"] == [0, 2, 4, 8]


def test_events_to_wire_relative_time_and_zero_padding(rng):
    ev = _events(rng)
    wire, t_ref = events_to_wire(ev)
    assert t_ref == ev["t"][0]
    np.testing.assert_array_equal(wire["t"], ev["t"] - t_ref)
    raw = wire_bytes(wire).reshape(-1, 12)
    assert not raw[:, 5:8].any(), "padding bytes must be zero"
    assert np.shares_memory(wire_bytes(wire), wire)


def test_wire_view_is_zero_copy():
    buf = bytearray(24)
    v = wire_view(buf)
    v["x"][1] = 7
    assert buf[12] == 7
    with pytest.raises(WireError, match="multiple of point_step"):
        wire_view(bytes(13))


def test_span_over_int32_rejected():
    ev = make_events([0, 0], [0, 0], [0, 1], [0, 2**31])
    with pytest.raises(WireError, match="2\\^31"):
        events_to_wire(ev)


@pytest.mark.parametrize("n", [0, 1, 100_000])
def test_pointcloud2_roundtrip_through_rclpy_serialization(rng, n):
    ev = _events(rng, n)
    msg = convert.events_to_msg(ev, frame_id="davis346_optical")
    assert msg.point_step == 12 and msg.row_step == 12 * n and msg.width == n and msg.height == 1
    blob = serialize_message(msg)
    back = deserialize_message(blob, PointCloud2)
    assert [(f.name, f.offset, f.datatype) for f in back.fields] == [("x", 0, 4), ("y", 2, 4), ("p", 4, 1),
                                                                      ("t", 8, 5)]
    got = convert.events_from_msg(back)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)
    assert bytes(back.data) == wire_bytes(events_to_wire(ev)[0]).tobytes()
    # receive side: the wire view shares the message's buffer
    view = convert.events_from_msg(back, copy=False)
    assert len(view) == n and (n == 0 or np.shares_memory(view, np.frombuffer(back.data, np.uint8)))


def test_header_stamp_is_first_event_time(rng):
    ev = _events(rng, 10)
    msg = convert.events_to_msg(ev)
    assert convert.stamp_to_ns(msg.header.stamp) == int(ev["t"][0]) * 1000
    msg2 = convert.events_to_msg(ev, stamp_ns=5_000_000_000)
    got = convert.events_from_msg(msg2)
    np.testing.assert_array_equal(got["t"] - got["t"][0], ev["t"] - ev["t"][0])
    assert got["t"][0] == 5_000_000


def _bad_cloud(fields, step=12, n=2):
    m = PointCloud2()
    m.fields = fields
    m.point_step = step
    m.width, m.height, m.row_step = n, 1, step * n
    m.data = bytes(step * n)
    return m


@pytest.mark.parametrize(
    "fields, step, match",
    [
        ([PointField(name="x", offset=0, datatype=7, count=1)], 12, "missing"),
        ([PointField(name="x", offset=0, datatype=4, count=1), PointField(name="y", offset=2, datatype=4, count=1),
          PointField(name="polarity", offset=4, datatype=1, count=1), PointField(name="t", offset=8, datatype=5,
                                                                                  count=1)], 12, "unexpected"),
        (list(convert._FIELDS), 16, "point_step is 16"),
    ],
)
def test_malformed_pointcloud_rejected(fields, step, match):
    with pytest.raises(WireError, match=match):
        convert.events_from_msg(_bad_cloud(fields, step))


def test_pointcloud_size_mismatch_rejected():
    m = _bad_cloud(list(convert._FIELDS), 12, 2)
    m.width = 3
    with pytest.raises(WireError, match="holds 2 points"):
        convert.events_from_msg(m)


@pytest.mark.parametrize("enc, shape, dtype", [("mono8", (260, 346), np.uint8), ("bgr8", (4, 6, 3), np.uint8),
                                               ("32FC2", (64, 64, 2), np.float32)])
def test_image_roundtrip(rng, enc, shape, dtype):
    a = (rng.random(shape) * 200).astype(dtype)
    msg = convert.image_to_msg(a, enc, stamp_ns=123, frame_id="f")
    back = deserialize_message(serialize_message(msg), Image)
    v = convert.image_from_msg(back)
    np.testing.assert_array_equal(v, a)
    assert np.shares_memory(v, np.frombuffer(back.data, np.uint8))


def test_frames_roundtrip_channel_order(rng):
    counts = rng.integers(0, 9, (2, 64, 48)).astype(np.float32)
    msg = convert.frames_to_msg(counts, 42)
    inter = convert.image_from_msg(msg)
    assert inter.shape == (64, 48, 2)
    np.testing.assert_array_equal(inter[..., 0], counts[0])  # channel 0 = OFF
    np.testing.assert_array_equal(convert.frames_from_msg(deserialize_message(serialize_message(msg), Image)),
                                  counts)


def test_image_view_checks_sizes():
    with pytest.raises(WireError, match="expected step\\*height"):
        image_view(bytes(7), 2, 4, 4, "mono8")
    with pytest.raises(WireError, match="unsupported"):
        image_view(bytes(10), 1, 1, 1, "yuv422")
    padded = np.arange(12, dtype=np.uint8)  # 2 rows of 4 pixels, step 6
    v = image_view(padded, 2, 4, 6, "mono8")
    np.testing.assert_array_equal(v, [[0, 1, 2, 3], [6, 7, 8, 9]])


def test_au_and_box_messages():
    s = np.linspace(0, 1, 21)
    m = convert.au_to_msg(s, 7)
    assert m.name[0] == "AU2" and m.name[-1] == "AU64"
    m.name = list(reversed(m.name))
    m.position = list(reversed(m.position))
    np.testing.assert_allclose(convert.au_from_msg(m), s)
    with pytest.raises(WireError, match="21 values"):
        convert.au_to_msg(s[:3], 0)
    poly = convert.box_to_polygon((10, 20, 50, 80), 1)
    assert len(poly.polygon.points) == 4
    assert convert.box_from_polygon(poly) == (10, 20, 50, 80)

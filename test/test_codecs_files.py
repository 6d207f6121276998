"""RAW files, EventPacket bags and AEDAT4 files: written by the project, then the real recordings."""

from __future__ import annotations

import datetime as dt
import sqlite3
import warnings

import numpy as np
import pytest
from conftest import real_file

from ros2_evmicro.core.codecs import (
    IMU_DTYPE,
    TRIGGER_DTYPE,
    Aedat4Frame,
    Aedat4Reader,
    CodecError,
    LibcaerDecoder,
    RawReader,
    RawTruncatedWarning,
    encode_evt3,
    encode_libcaer,
    parse_raw_header,
    read_eventpacket_bag,
    read_raw,
    write_aedat4,
    write_eventpacket_bag,
    write_raw,
)
from ros2_evmicro.core.codecs.synthetic import row_burst_events
from ros2_evmicro.core.events import EVENT_DTYPE, concat_events, make_events

# ------------------------------------------------------------------------------------------ RAW


@pytest.mark.parametrize("fmt", ["evt3", "evt2"])
def test_write_raw_read_back(tmp_path, fmt):
    ev = row_burst_events(5000, 346, 260, duration_us=500_000, seed=7)
    trig = np.array([(1_200_000, 1, 1)], dtype=TRIGGER_DTYPE)
    path = write_raw(
        tmp_path / f"s.{fmt}.raw",
        ev,
        fmt=fmt,
        width=346,
        height=260,
        triggers=trig,
        date=dt.datetime(2025, 1, 2, 3, 4, 5),
    )
    head = path.read_bytes()[:300].decode("latin-1")
    v = fmt[-1]
    assert head.startswith("% camera_integrator_name Prophesee\n% date 2025-01-02 03:04:05\n")
    assert f"% evt {v}.0\n% format EVT{v};height=260;width=346\n" in head
    assert "% geometry 346x260\n% end\n" in head
    reader = RawReader(path, chunk_bytes=999)
    assert (reader.fmt, reader.width, reader.height) == (fmt, 346, 260)
    np.testing.assert_array_equal(reader.read_all(), ev)
    np.testing.assert_array_equal(reader.triggers, trig)
    np.testing.assert_array_equal(concat_events(list(reader)), ev)
    np.testing.assert_array_equal(read_raw(path), ev)


def test_write_raw_rejects():
    ev = make_events([400], [0], [1], [5])
    with pytest.raises(CodecError, match="outside the 346x260"):
        write_raw("/nonexistent/x.raw", ev, width=346, height=260)
    with pytest.raises(CodecError, match="cannot write RAW format"):
        write_raw("/nonexistent/x.raw", ev, fmt="dat")


def _old_header(plugin: str, evt: str = "3.0") -> bytes:
    return (
        f"% Date 2020-09-25 07:48:29\n% evt {evt}\n% firmware_version 3.2.3\n% integrator_name Prophesee\n"
        f"% plugin_name {plugin}\n% serial_number 00000307\n"
    ).encode()


def test_old_header_geometry_from_plugin_or_parameter(tmp_path):
    ev = make_events([3, 700], [2, 500], [1, 0], [10, 20])
    payload = encode_evt3(ev)
    (tmp_path / "gen41.raw").write_bytes(_old_header("hal_plugin_gen41_evk3") + payload)
    r = RawReader(tmp_path / "gen41.raw")
    assert (r.fmt, r.width, r.height, r.header.plugin_name) == ("evt3", 1280, 720, "hal_plugin_gen41_evk3")
    np.testing.assert_array_equal(r.read_all(), ev)
    (tmp_path / "odd.raw").write_bytes(_old_header("hal_plugin_mystery") + payload)
    with pytest.raises(CodecError, match="pass width= and height="):
        RawReader(tmp_path / "odd.raw")
    r = RawReader(tmp_path / "odd.raw", width=800, height=600)
    np.testing.assert_array_equal(r.read_all(), ev)


def test_unknown_or_missing_format(tmp_path):
    (tmp_path / "e21.raw").write_bytes(b"% format EVT21;height=720;width=1280\n% end\n" + b"\0" * 8)
    with pytest.raises(CodecError, match="'evt2.1' is not supported"):
        RawReader(tmp_path / "e21.raw")
    (tmp_path / "none.raw").write_bytes(
        b"% geometry 640x480\n% end\n" + encode_evt3(make_events([1], [1], [0], [7]))
    )
    with pytest.raises(CodecError, match="names no event format"):
        RawReader(tmp_path / "none.raw")
    assert len(RawReader(tmp_path / "none.raw", fmt="evt3").read_all()) == 1
    with pytest.raises(CodecError, match="does not exist"):
        RawReader(tmp_path / "missing.raw")


def test_truncated_header_and_payload(tmp_path):
    (tmp_path / "h.raw").write_bytes(b"% evt 3.0\n% geometry 640x48")
    with pytest.raises(CodecError, match="header is truncated"):
        RawReader(tmp_path / "h.raw")
    ev = row_burst_events(300, 640, 480, duration_us=20_000, seed=8)
    path = write_raw(tmp_path / "t.raw", ev, fmt="evt2", width=640, height=480)
    data = path.read_bytes()
    (tmp_path / "t2.raw").write_bytes(data[:-3])  # cut inside the last 32-bit word
    reader = RawReader(tmp_path / "t2.raw", chunk_bytes=64)
    with pytest.warns(RawTruncatedWarning, match="1 trailing byte"):
        got = concat_events(list(reader))
    np.testing.assert_array_equal(got, ev[:-1])
    assert reader.truncated_bytes == 1
    with pytest.warns(RawTruncatedWarning):
        assert len(reader.read_all()) == len(ev) - 1


def test_parse_raw_header_fields():
    h = parse_raw_header(b"% format EVT3;height=720;width=1280\n% serial_number 42\n% end\n\x00\x80")
    assert (h.fmt, h.width, h.height, h.payload_offset) == ("evt3", 1280, 720, 61)
    assert h.fields["serial_number"] == "42"
    h = parse_raw_header(b"\x00\x80")
    assert (h.fmt, h.width, h.payload_offset) == (None, None, 0)


# ------------------------------------------------------------------------------------------ bags


def _evt3_packets(ev: np.ndarray, n_msgs: int, width: int, height: int, seed: int) -> list[dict]:
    """Split one EVT3 stream at random (odd) byte offsets into messages, as a driver would."""
    data = encode_evt3(ev)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(data) // 2), size=n_msgs - 1, replace=False) * 2 + 1)
    edges = [0, *cuts.tolist(), len(data)]
    return [
        {
            "bag_time_ns": 10**18 + k * 10**6,
            "stamp_ns": 10**18 + k * 10**6 - 500,
            "payload": data[a:b],
            "encoding": "evt3",
            "width": width,
            "height": height,
            "frame_id": "evk4",
        }
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]


@pytest.mark.parametrize(("storage", "embed"), [("sqlite3", True), ("sqlite3", False), ("mcap", True)])
def test_eventpacket_bag_round_trip_evt3(tmp_path, storage, embed):
    ev = row_burst_events(4000, 640, 480, duration_us=300_000, seed=9)
    pkts = _evt3_packets(ev, 17, 640, 480, seed=1)
    bag = write_eventpacket_bag(tmp_path / "bag", pkts, storage=storage, embed_definition=embed)
    got = list(read_eventpacket_bag(bag))
    assert len(got) == 17
    assert got[0].bag_time_ns == 10**18 and got[0].header_stamp_ns == 10**18 - 500
    assert got[3].info.encoding == "evt3" and got[3].info.frame_id == "evk4" and got[3].info.seq == 3
    np.testing.assert_array_equal(concat_events([g.events for g in got]), ev)


def test_eventpacket_bag_libcaer_wrap(tmp_path):
    ev = row_burst_events(3000, 346, 260, duration_us=2_000_000, seed=10)
    ev["t"] += (1 << 31) - 1_500_000  # crosses the 2^31 us wrap of libcaer timestamps
    data = encode_libcaer(ev)
    pkts = [
        {
            "bag_time_ns": k,
            "stamp_ns": k,
            "payload": data[a : a + 8 * 500],
            "encoding": "libcaer",
            "width": 346,
            "height": 260,
            "time_base": 7,
        }
        for k, a in enumerate(range(0, len(data), 8 * 500))
    ]
    got = list(read_eventpacket_bag(write_eventpacket_bag(tmp_path / "bag", pkts)))
    assert got[0].info.time_base == 7
    np.testing.assert_array_equal(concat_events([g.events for g in got]), ev)


def test_libcaer_invalid_and_split():
    ev = make_events([1, 2, 3], [4, 5, 6], [1, 0, 1], [10, 20, 30])
    raw = bytearray(encode_libcaer(ev))
    raw[8] &= 0xFE  # clear the valid bit of the second event
    dec = LibcaerDecoder(8, 8)
    out = concat_events([dec.decode(bytes(raw[k : k + 3])) for k in range(0, len(raw), 3)])
    np.testing.assert_array_equal(out, ev[[0, 2]])
    assert dec.n_invalid == 1 and dec.pending_bytes == 0


def test_bag_errors(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    path = tmp_path / "strings"
    with Writer(path, version=9) as w:
        con = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        msg = store.types["std_msgs/msg/String"](data="hi")
        w.write(con, 1, store.serialize_cdr(msg, "std_msgs/msg/String"))
    with pytest.raises(CodecError, match="no event_camera_msgs/msg/EventPacket topic"):
        list(read_eventpacket_bag(path))
    with pytest.raises(CodecError, match="has type std_msgs/msg/String"):
        list(read_eventpacket_bag(path, topic="/chatter"))
    with pytest.raises(CodecError, match="no topic '/x'"):
        list(read_eventpacket_bag(path, topic="/x"))
    with pytest.raises(CodecError, match="could not open bag"):
        list(read_eventpacket_bag(tmp_path / "nothing"))
    pk = [
        {"bag_time_ns": 1, "stamp_ns": 1, "payload": b"\0" * 4, "encoding": "mono", "width": 4, "height": 4}
    ]
    with pytest.raises(CodecError, match="encoding 'mono' is not supported"):
        list(read_eventpacket_bag(write_eventpacket_bag(tmp_path / "mono", pk)))


# ------------------------------------------------------------------------------------------ AEDAT4


def test_aedat4_write_read_round_trip(tmp_path):
    pytest.importorskip("dv_processing")
    ev = row_burst_events(3000, 346, 260, duration_us=100_000, seed=11)
    ev["t"] += 1_700_000_000_000_000
    frames = [
        Aedat4Frame(int(ev["t"][0]) + k * 30_000, np.full((260, 346), 40 * k, np.uint8)) for k in range(3)
    ]
    imu = np.zeros(4, dtype=IMU_DTYPE)
    imu["t"] = int(ev["t"][0]) + np.arange(4) * 1000
    imu["accel"] = [0.0, -9.81, 0.5]
    imu["gyro"] = [0.1, 0.0, -0.2]
    imu["temperature"] = 30.0
    trig = np.array([(int(ev["t"][5]), 1, 1), (int(ev["t"][9]), 2, 0)], dtype=TRIGGER_DTYPE)
    path = write_aedat4(
        tmp_path / "s.aedat4", ev, 346, 260, frames=frames, imu=imu, triggers=trig, packet_events=700
    )
    data = Aedat4Reader(path).read_all()
    assert (data.width, data.height) == (346, 260)
    assert data.counts == {"events": 3000, "frames": 3, "imu": 4, "triggers": 2}
    np.testing.assert_array_equal(data.events, ev)
    assert [f.t_us for f in data.frames] == [f.t_us for f in frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(data.frames, frames, strict=True))
    np.testing.assert_allclose(data.imu["accel"], imu["accel"], atol=1e-4)
    np.testing.assert_allclose(data.imu["gyro"], imu["gyro"], atol=1e-5)
    np.testing.assert_array_equal(data.triggers, trig)
    empty = Aedat4Reader(write_aedat4(tmp_path / "e.aedat4", ev[:0], 8, 8)).read_all()
    assert empty.events.dtype == EVENT_DTYPE and len(empty.events) == 0 and len(empty.frames) == 0


def test_aedat4_truncated_and_missing(tmp_path):
    pytest.importorskip("dv_processing")
    ev = row_burst_events(2000, 346, 260, duration_us=50_000, seed=12)
    data = write_aedat4(tmp_path / "s.aedat4", ev, 346, 260).read_bytes()
    (tmp_path / "cut.aedat4").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CodecError, match="truncated or corrupt.*nothing was read"):
        Aedat4Reader(tmp_path / "cut.aedat4")
    with pytest.raises(CodecError, match="does not exist"):
        Aedat4Reader(tmp_path / "none.aedat4")
    with pytest.raises(CodecError, match="outside the 8x8"):
        write_aedat4(tmp_path / "x.aedat4", ev, 8, 8)


# ------------------------------------------------------------------------------------------ real recordings


@pytest.mark.parametrize(
    ("name", "n_msgs", "n_off", "n_on", "n_trig", "t_first", "t_last", "t_sum"),
    [
        ("evt3_1280x720_trigger", 105, 41_030, 41_439, 2, 14_224_870, 15_476_187, 1_222_326_831_810),
        ("evt3_640x480", 517, 218_291, 125_183, 4_157, 7_139_845, 9_218_023, 2_851_601_611_994),
        (
            "libcaer_640x480_rollover",
            201,
            152_423,
            181_908,
            0,
            2_146_490_012,
            2_148_489_998,
            717_973_252_360_524,
        ),
    ],
)
def test_real_eventpacket_bags(name, n_msgs, n_off, n_on, n_trig, t_first, t_last, t_sum):
    bag = real_file("event_packet_bags/" + name)
    got = list(read_eventpacket_bag(bag, topic="/event_camera/events"))
    ev = concat_events([g.events for g in got])
    trig = np.concatenate([g.triggers for g in got])
    assert len(got) == n_msgs
    assert (int((ev["p"] == 0).sum()), int((ev["p"] == 1).sum()), len(trig)) == (n_off, n_on, n_trig)
    assert (int(ev["t"][0]), int(ev["t"][-1]), int(ev["t"].sum())) == (t_first, t_last, t_sum)
    assert int(np.diff(ev["t"]).min()) >= 0
    if name == "evt3_1280x720_trigger":
        assert trig.tolist() == [(14_547_491, 0, 0), (14_549_491, 0, 1)]
    if name == "evt3_640x480":  # rise/fall pairs of channel 6, 500 us apart
        assert set(trig["id"].tolist()) == {6} and int(np.diff(trig["t"]).max()) <= 600
    if name.startswith("libcaer"):  # the sensor's 31-bit clock wrapped inside the bag
        assert t_first < (1 << 31) < t_last
        assert got[0].info.time_base == 1_702_306_974_272_224_018


def test_real_bag_without_embedded_definition_uses_known_fields():
    bag = real_file("event_packet_bags/libcaer_640x480_rollover")
    db = next(bag.glob("*.db3"))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert "message_definitions" not in tables
    first = next(read_eventpacket_bag(bag))
    assert first.info.encoding == "libcaer" and len(first.events) == first.info.n_bytes // 8


def test_real_davis346_aedat4():
    pytest.importorskip("dv_processing")
    path = real_file("davis346_aedat4/davis346_sample.aedat4")
    data = Aedat4Reader(path).read_all()
    assert data.camera_name == "DAVIS346_00000104" and (data.width, data.height) == (346, 260)
    assert data.counts == {"events": 117_667, "frames": 3, "imu": 130, "triggers": 15}
    ev = data.events
    t0 = int(ev["t"][0])
    assert (t0, int(ev["t"][-1]), int(ev["p"].sum())) == (
        1_633_953_690_975_950,
        1_633_953_691_105_949,
        72_363,
    )
    assert int((ev["t"] - t0).sum()) == GOLDEN_DAVIS_DT_SUM
    assert data.frames[0].image.shape == (260, 346) and data.frames[0].t_us == 1_633_953_690_976_518
    # the camera lies still: gravity along -y, about 9.8 m/s^2
    assert abs(float(np.linalg.norm(data.imu["accel"], axis=1).mean()) - 9.81) < 0.3
    assert data.triggers["id"].tolist()[:4] == [8, 9, 7, 6]  # APS exposure start/end, frame end/start
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = list(Aedat4Reader(path).iter_events())
    np.testing.assert_array_equal(concat_events(batches), ev)


GOLDEN_DAVIS_DT_SUM = 7_327_758_848  # sum of (t - t_first), us

"""rosbag2 I/O: round trips, CDR identity with rclpy, real sqlite3 bags, check and repair after a crash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import real_file

from ros2_evmicro.core.bagio import BagError, BagReader, BagWriter, check_bag, qos_profile, repair_bag
from ros2_evmicro.core.events import EVENT_DTYPE, concat_events, make_events

T0 = 1_700_000_000_123_456_789


def _events(rng, n, t0_us=1_000_000):
    return make_events(
        rng.integers(0, 346, n),
        rng.integers(0, 260, n),
        rng.integers(0, 2, n),
        np.sort(rng.integers(0, 10_000, n)) + t0_us,
    )


def _write_sample(path, rng, storage="mcap", **kw):
    """10 event packets, 3 images, 2 markers, 1 AU message; returns what was written."""
    evs = [_events(rng, 50 + 10 * i, 1_000_000 + 10_000 * i) for i in range(10)]
    imgs = [rng.integers(0, 255, (6, 8, 3), dtype=np.uint8) for _ in range(3)]
    markers = [
        {"stamp_ns": T0 + 5, "phase": "countdown", "au": 12},
        {"stamp_ns": T0 + 9, "phase": "perform", "au": 12},
    ]
    with BagWriter(path, storage, **kw) as w:
        w.add_topic("/davis/events", "sensor_msgs/msg/PointCloud2", qos_profile(True, 1000))
        for i, ev in enumerate(evs):
            w.write_events("/davis/events", ev, T0 + i * 10_000_000, frame_id="davis346_optical")
        for i, im in enumerate(imgs):
            w.write_image("/webcam/image_raw", im, "bgr8", T0 + i * 16_000_000 + 1, stamp_ns=T0 + i)
        for m in markers:
            w.write_marker("/protocol/marker", m)
        w.write_au("/evmicro/au", np.linspace(0, 1, 21), T0 + 3, stamp_ns=T0)
    return evs, imgs, markers


@pytest.mark.parametrize(
    "storage,compression", [("mcap", ""), ("mcap", "zstd"), ("mcap", "lz4"), ("sqlite3", "")]
)
def test_round_trip(tmp_path, rng, storage, compression):
    bag = tmp_path / "bag"
    evs, imgs, markers = _write_sample(bag, rng, storage, compression=compression, chunk_size=4096)
    with BagReader(bag) as r:
        assert r.storage == storage
        assert r.topics == {
            "/davis/events": ("sensor_msgs/msg/PointCloud2", 10),
            "/webcam/image_raw": ("sensor_msgs/msg/Image", 3),
            "/protocol/marker": ("std_msgs/msg/String", 2),
            "/evmicro/au": ("sensor_msgs/msg/JointState", 1),
        }
        assert r.message_count == 16
        got = r.events("/davis/events")
        assert got.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(got, concat_events(evs))
        out = list(r.images("/webcam/image_raw"))
        assert [t for t, _, _ in out] == [T0 + i * 16_000_000 + 1 for i in range(3)]
        assert [s for _, s, _ in out] == [T0, T0 + 1, T0 + 2]
        for (_, _, a), b in zip(out, imgs, strict=True):
            np.testing.assert_array_equal(a, b)
        assert r.markers() == markers
        ts = [m.t_ns for m in r]
        assert ts == sorted(ts)
        (au,) = [m for _, _, m in r.messages(["/evmicro/au"])]
        assert list(au.name)[:2] == ["AU2", "AU4"] and au.position[-1] == 1.0
    assert check_bag(bag).ok


def test_time_window_and_topic_filter(tmp_path, rng):
    bag = tmp_path / "bag"
    evs, _, _ = _write_sample(bag, rng)
    with BagReader(bag, topics=["/davis/events"]) as r:
        assert r.message_count == 10
        assert {m.topic for m in r} == {"/davis/events"}
        got = r.events("/davis/events", T0 + 20_000_000, T0 + 40_000_000)  # packets 2 and 3
        np.testing.assert_array_equal(got, concat_events(evs[2:4]))
        assert len(r.events("/davis/events", T0 + 500_000_000)) == 0
        assert r.events("/davis/events", T0 + 500_000_000).dtype == EVENT_DTYPE


def test_mcap_is_valid_for_the_reference_reader(tmp_path, rng):
    """The official mcap reader (CRC checks on) agrees with what was written, chunk by chunk."""
    mcap_reader = pytest.importorskip("mcap.reader")
    bag = tmp_path / "bag"
    _write_sample(bag, rng, chunk_size=2000, crc=True)
    with open(bag / "bag_0.mcap", "rb") as fh:
        r = mcap_reader.make_reader(fh, validate_crcs=True)
        s = r.get_summary()
        assert s.statistics.message_count == 16
        assert s.statistics.chunk_count > 3
        assert sorted(c.topic for c in s.channels.values()) == sorted(
            ["/davis/events", "/webcam/image_raw", "/protocol/marker", "/evmicro/au"]
        )
        assert all(sch.encoding == "ros2msg" for sch in s.schemas.values())
        msgs = list(r.iter_messages())
        assert len(msgs) == 16
        assert all(ch.message_encoding == "cdr" for _, ch, _ in msgs)


def test_metadata_yaml_version_8(tmp_path, rng):
    import yaml

    bag = tmp_path / "bag"
    _write_sample(bag, rng)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8
    assert meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["bag_0.mcap"]
    assert meta["message_count"] == 16
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts["/davis/events"] == 10
    ev = [t for t in meta["topics_with_message_count"] if t["topic_metadata"]["name"] == "/davis/events"][0]
    assert ev["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert "reliability: 1" in ev["topic_metadata"]["offered_qos_profiles"]
    assert meta["starting_time"]["nanoseconds_since_epoch"] == T0
    assert meta["duration"]["nanoseconds"] == 90_000_000


def test_split_files(tmp_path, rng):
    bag = tmp_path / "s"
    with BagWriter(bag) as w:
        for i in range(6):
            if i in (2, 4):
                assert w.split() == f"s_{i // 2}.mcap"
            w.write_string("/x", f"m{i}", T0 + i)
    assert sorted(p.name for p in bag.glob("*.mcap")) == ["s_0.mcap", "s_1.mcap", "s_2.mcap"]
    with BagReader(bag) as r:
        assert r.files == ["s_0.mcap", "s_1.mcap", "s_2.mcap"]
        assert [m.data for _, _, m in r.messages()] == [f"m{i}" for i in range(6)]
    rep = check_bag(bag)
    assert rep.ok and [f.messages for f in rep.files] == [2, 2, 2]


def test_writer_errors(tmp_path):
    bag = tmp_path / "b"
    with pytest.raises(BagError, match="storage must be"):
        BagWriter(bag, "rosbag1")
    with pytest.raises(BagError, match="compression"):
        BagWriter(bag, compression="gzip")
    with BagWriter(bag) as w:
        with pytest.raises(BagError, match="not registered"):
            w.write_raw("/nope", 0, b"")
        w.add_topic("/a", "std_msgs/msg/String")
        w.add_topic("/a", "std_msgs/String")  # same type: idempotent
        with pytest.raises(BagError, match="already registered with type"):
            w.add_topic("/a", "sensor_msgs/msg/Image")
        with pytest.raises(BagError, match="not in the Jazzy typestore"):
            w.add_topic("/b", "my_msgs/msg/Thing")
        with pytest.raises(BagError, match="log time"):
            w.write_string("/a", "x", -1)
    with pytest.raises(BagError, match="already holds a bag"):
        BagWriter(bag)
    with pytest.raises(BagError, match="is closed"):
        w.write_string("/a", "y", 5)


def test_reader_errors(tmp_path):
    with pytest.raises(BagError, match="no rosbag2"):
        BagReader(tmp_path)
    bag = tmp_path / "b"
    with BagWriter(bag) as w:
        w.write_string("/a", "x", 1)
    with pytest.raises(BagError, match="no topic"):
        BagReader(bag, topics=["/zzz"])


def test_empty_bag(tmp_path):
    bag = tmp_path / "e"
    BagWriter(bag).close()
    with BagReader(bag) as r:
        assert r.message_count == 0 and list(r) == [] and r.markers() == []
    assert check_bag(bag).ok


# -- CDR identity with rclpy ---------------------------------------------------------------------------------


def _same_cdr(ours: bytes, theirs: bytes, msg_cls) -> None:
    """Byte identity on every data byte. rclpy (Fast CDR) leaves alignment padding and up to 8 trailing
    bytes uninitialised, so those bytes are excluded: ours must be a prefix of theirs except at positions
    where ours holds zero padding, and each side must decode the other's bytes to the same message."""
    from rclpy.serialization import deserialize_message

    from ros2_evmicro.core.bagio import serialize, typestore

    assert len(ours) <= len(theirs) <= len(ours) + 8
    diff = [i for i in range(len(ours)) if ours[i] != theirs[i]]
    assert all(ours[i] == 0 for i in diff), diff
    runs, prev = [], -2
    for i in diff:  # alignment gaps are at most 7 bytes long
        if i == prev + 1:
            runs[-1] += 1
        else:
            runs.append(1)
        prev = i
    assert max(runs, default=0) <= 7
    assert deserialize_message(ours, msg_cls) == deserialize_message(theirs, msg_cls)
    name = msg_cls.__module__.split(".")[0] + "/msg/" + msg_cls.__name__
    ts = typestore()
    assert bytes(serialize(ts.deserialize_cdr(theirs[: len(ours)], name), name)) == ours


def _cases(rng):
    from geometry_msgs.msg import PolygonStamped  # noqa: F401 - imported for the message classes below
    from sensor_msgs.msg import Imu
    from std_msgs.msg import Header

    from ros2_evmicro.ros import convert as cv

    ev = _events(rng, 37)
    img = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    mono = rng.integers(0, 255, (3, 4), dtype=np.uint8)
    imu = Imu()
    imu.header = Header(stamp=cv.ns_to_stamp(T0), frame_id="imu")
    imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = 0.1, -9.8, 0.3
    imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = 1.5, 2.5, -3.5
    imu.orientation_covariance[0] = -1.0
    scores = np.linspace(0, 1, 21)
    K = np.array([[300.0, 0, 173], [0, 300.0, 130], [0, 0, 1]])
    marker = {
        "stamp_ns": T0,
        "session": "1",
        "subject": "S01",
        "run": "main",
        "au": 12,
        "trial": 1,
        "phase": "perform",
        "segment": "S01_AU12_t1",
    }
    return [
        (
            "events",
            lambda w: w.write_events("/t", ev, frame_id="davis346_optical"),
            cv.events_to_msg(ev, frame_id="davis346_optical"),
        ),
        (
            "events_stamp",
            lambda w: w.write_events("/t", ev, stamp_ns=T0, frame_id="evk4_optical", t_ref_us=999_000),
            cv.events_to_msg(ev, stamp_ns=T0, frame_id="evk4_optical", t_ref_us=999_000),
        ),
        ("empty_events", lambda w: w.write_events("/t", ev[:0], T0), cv.events_to_msg(ev[:0])),
        (
            "bgr8",
            lambda w: w.write_image("/t", img, "bgr8", stamp_ns=T0, frame_id="webcam"),
            cv.image_to_msg(img, "bgr8", T0, "webcam"),
        ),
        (
            "mono8",
            lambda w: w.write_image("/t", mono, "mono8", stamp_ns=T0, frame_id="davis346_optical"),
            cv.image_to_msg(mono, "mono8", T0, "davis346_optical"),
        ),
        ("au", lambda w: w.write_au("/t", scores, stamp_ns=T0), cv.au_to_msg(scores, T0)),
        ("marker", lambda w: w.write_marker("/t", marker), cv.marker_to_msg(marker)),
        (
            "time_reference",
            lambda w: w.write_time_reference("/t", T0, 123_456_789, "DAVIS346_00000104"),
            cv.time_reference_msg(T0, 123_456_789, "DAVIS346_00000104"),
        ),
        (
            "imu",
            lambda w: w.write_imu("/t", [0.1, -9.8, 0.3], [1.5, 2.5, -3.5], stamp_ns=T0, frame_id="imu"),
            imu,
        ),
        (
            "camera_info",
            lambda w: w.write_camera_info("/t", 346, 260, stamp_ns=T0, frame_id="davis346_optical", K=K),
            cv.camera_info_msg(346, 260, T0, "davis346_optical", K=K),
        ),
        (
            "camera_info_bare",
            lambda w: w.write_camera_info("/t", 1280, 720, stamp_ns=T0, frame_id="evk4_optical"),
            cv.camera_info_msg(1280, 720, T0, "evk4_optical"),
        ),
        (
            "polygon",
            lambda w: w.write_polygon("/t", (10, 20, 110, 140), stamp_ns=T0, frame_id="davis346_optical"),
            cv.box_to_polygon((10, 20, 110, 140), T0, "davis346_optical"),
        ),
    ]


@pytest.mark.parametrize("case", range(12))
def test_typed_writers_match_rclpy(tmp_path, case):
    from rclpy.serialization import serialize_message

    name, write, ref = _cases(np.random.default_rng(7))[case]
    bag = tmp_path / name
    with BagWriter(bag) as w:
        write(w)
    with BagReader(bag) as r:
        (m,) = list(r)
    _same_cdr(bytes(m.raw), serialize_message(ref), type(ref))


# -- real bags -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,count", [("evt3_1280x720_trigger", 105), ("evt3_640x480", 517), ("libcaer_640x480_rollover", 201)]
)
def test_real_sqlite3_event_packet_bags(name, count):
    path = real_file(f"event_packet_bags/{name}")
    with BagReader(path) as r:
        assert r.storage == "sqlite3"
        assert r.topics == {"/event_camera/events": ("event_camera_msgs/msg/EventPacket", count)}
        msgs = list(r.messages())
        assert len(msgs) == count
        first = msgs[0][2]  # decodable even for v5 bags that do not embed the definition
        assert first.encoding in ("evt3", "libcaer") and first.width in (640, 1280) and len(first.events) > 0
    rep = check_bag(path)
    assert rep.messages == count and rep.storage == "sqlite3"


# -- crash recovery ------------------------------------------------------------------------------------------


def _chunked_bag(tmp_path, rng, n=40):
    """A bag whose writer 'crashed': its file descriptor closed without summary and footer."""
    bag = tmp_path / "crash"
    w = BagWriter(bag, chunk_size=3000)
    sent = []
    for i in range(n):
        ev = _events(rng, 60)
        w.write_events("/davis/events", ev, T0 + i * 1_000_000)
        sent.append(ev)
        if i % 7 == 0:
            w.write_marker("/protocol/marker", {"stamp_ns": T0 + i * 1_000_000 + 1, "i": i})
    w.abort()
    return bag, sent, w.flushed_count, w


def test_repair_after_kill(tmp_path, rng):
    bag, sent, flushed, w = _chunked_bag(tmp_path, rng)
    assert 0 < flushed < w.message_count  # the last chunk was still in memory
    rep = check_bag(bag)
    assert not rep.ok and rep.metadata == "stale" and not rep.files[0].complete
    assert rep.messages == flushed
    with pytest.raises(BagError, match="repair"):
        BagReader(bag)
    after = repair_bag(bag)
    assert after.ok, after.text()
    assert after.messages == flushed
    with BagReader(bag) as r:
        got = r.events("/davis/events")
        n_ev = r.topics["/davis/events"][1]
        np.testing.assert_array_equal(got, concat_events(sent[:n_ev]))
        assert [m["i"] for m in r.markers()] == list(range(0, 40, 7))[: len(r.markers())]
    assert repair_bag(bag).ok  # idempotent


def test_repair_at_every_cut(tmp_path, rng):
    """Truncate a complete file at many offsets (a kill mid-write): repair recovers exactly the messages of
    the chunks that end before the cut."""
    bag, _, _, _ = _chunked_bag(tmp_path, rng, n=12)
    repair_bag(bag)
    from ros2_evmicro.core.bagio import _scan_mcap

    full = bag / "crash_0.mcap"
    scan = _scan_mcap(full)
    data = full.read_bytes()
    chunk_ends = [(c.offset + c.length, c) for c in scan.chunks]
    per_chunk = []
    with BagReader(bag) as r:
        all_t = [m.t_ns for m in r]
    for _, c in chunk_ends:
        per_chunk.append(sum(1 for t in all_t if c.start_ns <= t <= c.end_ns))
    cuts = sorted(
        {
            8,
            20,
            *[e - 1 for e, _ in chunk_ends],
            *[e for e, _ in chunk_ends],
            *[e + 5 for e, _ in chunk_ends],
            *range(100, len(data), 997),
        }
    )
    for cut in cuts:
        if cut >= len(data) - 200:
            continue
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "crash_0.mcap").write_bytes(data[:cut])
        rep = repair_bag(d)
        expect = sum(n for (e, _), n in zip(chunk_ends, per_chunk, strict=True) if e <= cut)
        assert rep.ok and rep.messages == expect, (cut, rep.text())
        with BagReader(d) as r:
            assert sum(1 for _ in r) == expect


def test_repair_rebuilds_missing_metadata(tmp_path, rng):
    bag = tmp_path / "m"
    _write_sample(bag, rng)
    (bag / "metadata.yaml").unlink()
    rep = check_bag(bag)
    assert not rep.ok and rep.metadata == "missing"
    assert repair_bag(bag).ok
    with BagReader(bag) as r:
        assert r.message_count == 16 and r.topics["/davis/events"][1] == 10


def test_repair_sqlite3_metadata(tmp_path):
    src = real_file("event_packet_bags/evt3_640x480")
    bag = tmp_path / "sq"
    shutil.copytree(src, bag)
    (bag / "metadata.yaml").chmod(0o644)
    (bag / "metadata.yaml").unlink()
    rep = repair_bag(bag)
    assert rep.ok and rep.messages == 517
    with BagReader(bag) as r:
        assert r.message_count == 517


def test_check_reports_corrupt_chunk(tmp_path, rng):
    bag = tmp_path / "c"
    with BagWriter(bag, chunk_size=1000, crc=True) as w:
        for i in range(10):
            w.write_string("/a", "x" * 500, T0 + i)
    f = bag / "c_0.mcap"
    data = bytearray(f.read_bytes())
    from ros2_evmicro.core.bagio import _scan_mcap

    third = _scan_mcap(f).chunks[2]
    data[third.offset + 80] ^= 0xFF  # flip a payload byte of the third chunk
    data = data[: third.offset + third.length + 40]  # and drop the summary (as after a crash)
    f.write_bytes(bytes(data))
    rep = check_bag(bag)
    assert not rep.ok and any("CRC mismatch" in p for p in rep.files[0].problems)
    assert rep.messages == 4  # two 2-message chunks before the corrupt one
    assert repair_bag(bag).messages == 4
    assert json.dumps(rep.topics) == '{"/a": 4}'

"""Session folders: markers table, segments, summary (counts, gaps, drops, sync residuals), segment export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros2_evmicro.core.bagio import BagWriter
from ros2_evmicro.core.events import concat_events, make_events
from ros2_evmicro.core.protocol import ProtocolStateMachine, load_protocol
from ros2_evmicro.core.session import (
    MarkerTable,
    SessionError,
    SessionInfo,
    clock_fit_residuals,
    export_segment,
    format_summary,
    new_session_dir,
    read_markers,
    segments_from_markers,
    summarize_session,
)

CONFIG = Path(__file__).resolve().parent.parent / "config" / "protocol.yaml"
S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
DROPPED = range(150, 155)


def _markers():
    """The demo run (AU12, AU45, AU51; 10 s per AU) at time_scale 0.1: 1 s per AU, perform at +0.5..0.8 s."""
    sm = ProtocolStateMachine(load_protocol(CONFIG), "demo", "S01", "1", time_scale=0.1)
    sm.tick(T0)
    sm.tick(T0 + 10 * S)
    return sm.history


def _packet(k: int) -> np.ndarray:
    rng = np.random.default_rng([11, k])
    return make_events(
        rng.integers(0, 346, 100),
        rng.integers(0, 260, 100),
        rng.integers(0, 2, 100),
        np.sort(rng.integers(0, 10_000, 100)) + k * 10_000 + 5_000_000,
    )


@pytest.fixture
def session(tmp_path):
    """A 3 s session: DAVIS events every 10 ms (packets 150-154 lost), webcam at 20 fps, a drifting clock
    pairing (50 ppm, +-2 us jitter) and the protocol markers."""
    folder = tmp_path / "S01_1"
    with BagWriter(folder, chunk_size=20_000) as w:
        w.write_camera_info("/davis/camera_info", 346, 260, T0, stamp_ns=T0, frame_id="davis346_optical")
        for k in range(300):
            t = T0 + k * 10 * MS
            if k not in DROPPED:
                w.write_events("/davis/events", _packet(k), t, stamp_ns=t, frame_id="davis346_optical")
            host = T0 + int(k * 10 * MS * (1 + 50e-6)) + (2000 if k % 2 else -2000)
            w.write_time_reference("/davis/time_reference", host, k * 10_000, "DAVIS346_1", host)
            if k % 5 == 0:
                w.write_image(
                    "/webcam/image_raw", np.full((16, 16, 3), k % 250, np.uint8), "bgr8", t, stamp_ns=t
                )
        for m in _markers():
            w.write_marker("/protocol/marker", m)
    info = SessionInfo(
        "S01",
        "1",
        lux=300.0,
        cameras=["davis", "webcam"],
        software_version="0.1.0",
        start_ns=T0,
        end_ns=T0 + 3 * S,
        status="complete",
    )
    info.write(folder)
    table = MarkerTable(folder / "markers.csv")
    for m in _markers():
        table.append(m, m["stamp_ns"] + 1000, "S01_1_0.mcap")
    table.close()
    return folder


def test_markers_table_round_trip(tmp_path):
    t = MarkerTable(tmp_path / "markers.csv")
    ms = _markers()
    for m in ms:
        t.append(m, m["stamp_ns"] + 7, "f.mcap")
    t.close()
    rows = read_markers(tmp_path)
    assert len(rows) == 13
    assert [r["phase"] for r in rows] == [m["phase"] for m in ms]
    assert rows[0]["stamp_ns"] == T0 and rows[0]["recv_ns"] == T0 + 7 and rows[0]["au"] == 12
    assert rows[0]["segment"] == "S01_AU12_t1" and rows[0]["bag_file"] == "f.mcap"
    assert read_markers(tmp_path / "nothing") == []


def test_segments_from_markers():
    segs = segments_from_markers(_markers())
    assert [s.name for s in segs] == ["S01_AU12_t1", "S01_AU45_t1", "S01_AU51_t1"]
    assert [s.status for s in segs] == ["ok"] * 3
    assert segs[0].perform == (T0 + 500 * MS, T0 + 800 * MS)
    assert (segs[1].start_ns, segs[1].end_ns) == (T0 + S, T0 + 2 * S)
    assert segs[2].end_ns == T0 + 3 * S  # the done marker
    assert segs[0].phases == ["demo", "countdown", "perform", "rest"]


def test_segments_with_redo_and_skip():
    def m(t, ph, au, tr):
        return {
            "stamp_ns": t,
            "phase": ph,
            "au": au,
            "trial": tr,
            "run": "main",
            "segment": f"S01_AU{au}_t{tr}" if au else "",
        }

    ms = [
        m(0, "countdown", 2, 1),
        m(3, "perform", 2, 1),
        m(4, "redo", 2, 1),
        m(4, "countdown", 2, 2),
        m(7, "perform", 2, 2),
        m(12, "rest", 2, 2),
        m(18, "demo", 4, 1),
        m(19, "done", 0, 0),
    ]
    segs = segments_from_markers(ms)
    assert [(s.name, s.status, s.perform) for s in segs] == [
        ("S01_AU2_t1", "redo", (3, 4)),
        ("S01_AU2_t2", "ok", (7, 12)),
        ("S01_AU4_t1", "incomplete", None),
    ]
    assert segments_from_markers([]) == []


def test_new_session_dir_never_overwrites(tmp_path):
    a = new_session_dir(tmp_path, "S01", "1")
    assert a == tmp_path / "S01_1"
    a.mkdir()
    assert new_session_dir(tmp_path, "S01", "1") == a  # an empty folder may be reused
    (a / "x").write_text("data")
    b = new_session_dir(tmp_path, "S01", "1")
    assert b == tmp_path / "S01_1_2"
    b.mkdir()
    (b / "y").write_text("data")
    assert new_session_dir(tmp_path, "S01", "1") == tmp_path / "S01_1_3"


def test_clock_fit_residuals_golden():
    k = np.arange(100)
    sensor = k * 10_000_000
    host = 5 * S + (sensor * (1 + 100e-6)).astype(np.int64) + np.where(k % 2, 3000, -3000)
    r = clock_fit_residuals(list(zip(host.tolist(), sensor.tolist(), strict=True)))
    assert r["pairs"] == 100
    # the alternating jitter correlates with k: slope bias = 50 * 3000 ns / sum((k - 49.5)^2) = 1.8 ns per
    # 10 ms step, i.e. +0.18 ppm
    assert r["drift_ppm"] == pytest.approx(100.0 + 150_000 / 83_325 / 10, abs=0.005)
    assert r["rms_us"] == pytest.approx(3.0, abs=0.01) and r["max_us"] == pytest.approx(3.0, abs=0.1)
    assert np.isnan(clock_fit_residuals([(1, 2)])["rms_us"])


def test_summarize_session(session):
    s = summarize_session(session)
    topics = {t["topic"]: t for t in s["topics"]}
    ev = topics["/davis/events"]
    assert ev["count"] == 295 and ev["events"] == 29_500
    assert ev["largest_gap_s"] == pytest.approx(0.06)  # packets 150-154 missing
    assert ev["rate_hz"] == pytest.approx(294 / 2.99)
    assert topics["/webcam/image_raw"]["count"] == 60
    assert s["drops"]["source"].startswith("packet gaps")
    assert s["drops"]["estimated_missing_packets"] == {"/davis/events": 5}
    segs = {r["segment"]: r for r in s["segments"]}
    assert segs["S01_AU12_t1"]["perform_s"] == pytest.approx(0.3)
    assert segs["S01_AU12_t1"]["events/davis/events"] == 3000  # packets 50..79
    assert segs["S01_AU45_t1"]["events/davis/events"] == 2500  # packets 150..179 less the 5 lost
    assert segs["S01_AU45_t1"]["frames/webcam/image_raw"] == 6
    sync = s["sync"]["/davis/time_reference"]
    assert sync["pairs"] == 300 and sync["drift_ppm"] == pytest.approx(50.0, abs=0.05)
    assert sync["rms_us"] == pytest.approx(2.0, abs=0.05)
    assert s["info"]["lux"] == 300.0 and s["markers"] == 13
    text = format_summary(s)
    assert "S01_AU45_t1" in text and "drift 50.0" in text and "/davis/events 5" in text


def test_export_segment(session, tmp_path):
    import cv2

    from ros2_evmicro.core.codecs import read_raw

    out = tmp_path / "export"
    files = export_segment(session, "S01_AU45_t1", out, window="perform")
    assert sorted(f.name for f in files) == ["S01_AU45_t1_davis.raw", "S01_AU45_t1_webcam.mp4"]
    got = read_raw(out / "S01_AU45_t1_davis.raw")
    # the contract's time base: header.stamp (the packet's log time here) + t relative to the first event
    parts = []
    for k in range(155, 180):
        p = _packet(k).copy()
        p["t"] = p["t"] - p["t"][0] + (T0 + k * 10 * MS) // 1000
        parts.append(p)
    want = concat_events(parts)
    np.testing.assert_array_equal(got["x"], want["x"])
    np.testing.assert_array_equal(got["p"], want["p"])
    np.testing.assert_array_equal(got["t"] - got["t"][0], want["t"] - want["t"][0])
    cap = cv2.VideoCapture(str(out / "S01_AU45_t1_webcam.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 6
    with pytest.raises(SessionError, match="no segment 'S01_AU99_t1'"):
        export_segment(session, "S01_AU99_t1", out)
    with pytest.raises(SessionError, match="window must be"):
        export_segment(session, "S01_AU45_t1", out, window="rest")


def test_session_info_errors(tmp_path):
    with pytest.raises(SessionError, match="not a session folder"):
        SessionInfo.read(tmp_path)


def test_cli_session_and_bag(session, capsys):
    from ros2_evmicro.cli import main

    assert main(["session", "info", str(session)]) == 0
    assert "S01_AU51_t1" in capsys.readouterr().out
    assert main(["bag", "check", str(session)]) == 0
    assert "OK" in capsys.readouterr().out
    mcap = next(session.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])  # a killed writer
    assert main(["bag", "check", str(session)]) == 1
    assert "NEEDS REPAIR" in capsys.readouterr().out
    assert main(["bag", "repair", str(session)]) == 0
    assert "repaired" in capsys.readouterr().out
    assert main(["bag", "check", str(session)]) == 0

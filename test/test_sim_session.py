"""Simulated sessions (`evmicro sim session`): recorder layout, protocol timing, ground truth, determinism."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from ros2_evmicro.cli import main as cli_main
from ros2_evmicro.core.bagio import BagReader, check_bag
from ros2_evmicro.core.session import SessionInfo, read_markers, segments_from_markers, summarize_session
from ros2_evmicro.core.sim.session_gen import (
    EPOCH_NS,
    MAIN_RUN_PHASES_S,
    SessionGenError,
    SessionSpec,
    file_digests,
    generate_session,
    generate_sessions,
    main_run_protocol,
    session_start_ns,
    session_topics,
)

AUS = (12, 45)
SCALE = 0.1


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out = tmp_path_factory.mktemp("simsess")
    done = generate_sessions(out, 1, cameras=("davis",), aus=AUS, time_scale=SCALE, seed=3)
    return done[0]


def test_start_time_is_fixed_epoch_plus_seed_days_and_subject_hours():
    assert EPOCH_NS == 1_735_722_000_000_000_000  # 2025-01-01T09:00:00Z
    assert session_start_ns(0, 0) == EPOCH_NS
    assert session_start_ns(2, 3) == EPOCH_NS + 2 * 86_400 * 10**9 + 3 * 3_600 * 10**9
    assert session_start_ns(3650, 0) == EPOCH_NS  # seed days wrap after ten years


def test_main_run_phases_match_protocol_yaml():
    from ros2_evmicro.core.protocol import load_protocol
    from ros2_evmicro.graphs import config_dir

    steps = load_protocol(config_dir() / "protocol.yaml", check_clips=False).run("main").steps
    assert len(steps) == 21
    for st in steps:
        assert {p: st.duration_s(p) for p in MAIN_RUN_PHASES_S} == MAIN_RUN_PHASES_S


def test_protocol_scaling_keeps_takes_inside_perform():
    p = main_run_protocol((12, 45), 0.1, seed=0)
    perform = [s for s in p.segments if s.phase == "perform"]
    # 5 s x 0.1 = 0.5 s is shorter than 1.25 x the longest AU12 take (0.5 s) + 0.1 s -> 0.725 s
    assert [round(s.t_end_s - s.t_start_s, 6) for s in perform] == [0.725, 0.725]
    demo = [s for s in p.segments if s.phase == "demo"]
    assert [round(s.t_end_s - s.t_start_s, 6) for s in demo] == [0.6, 0.6]
    for seg, act in zip(perform, p.actions, strict=True):
        assert seg.t_start_s <= act.t_start_s and act.t_end_s <= seg.t_end_s
    full = main_run_protocol(None, 1.0)
    assert round(full.duration_s - 0.5, 6) == 21 * 20.0  # the 7-minute main run after a 0.5 s lead


def test_session_folder_is_a_recorder_session(session):
    folder = session.folder
    assert folder.name == "S01_sim"
    assert sorted(p.name for p in folder.iterdir()) == ["S01_sim_0.mcap", "markers.csv", "metadata.yaml",
                                                          "session.yaml"]
    chk = check_bag(folder)
    assert chk.ok, chk.problems
    info = SessionInfo.read(folder)
    assert (info.subject, info.session, info.status, info.cameras) == ("S01", "sim", "complete", ["davis"])
    assert info.calibration_files == ["sim"] and info.lux == 600.0
    assert info.start_ns == session_start_ns(3, 1) == session.start_ns
    raw = yaml.safe_load((folder / "session.yaml").read_text())
    assert raw["simulated"] is True and raw["seed"] == 3 and raw["subject_seed"] == 3001
    assert set(raw["ground_truth"]) == {"/davis/face_roi", "/sim/truth"}
    assert info.topics["/davis/events"]["count"] == session.counts["/davis/events"]
    assert info.files == [{"path": "S01_sim_0.mcap", "segment": "", "messages": sum(session.counts.values())}]


def test_topics_types_frame_ids_and_rates(session):
    expect = {t: typ for t, typ, _ in session_topics(["davis"])}
    with BagReader(session.folder) as r:
        assert {t: typ for t, (typ, _) in r.topics.items()} == expect
        dur = session.duration_s
        assert r.topics["/davis/imu"][1] == round(dur * 1000)  # 1 kHz
        assert r.topics["/davis/face_roi"][1] == pytest.approx(dur * 30, abs=2)  # 30 Hz ground truth
        assert r.topics["/davis/camera_info"][1] == 1
        frames = {}
        for topic, t_ns, m in r.messages(["/davis/events", "/davis/camera_info", "/davis/face_roi",
                                           "/davis/image_raw", "/davis/imu", "/davis/time_reference"]):
            frames.setdefault(topic, set()).add(m.header.frame_id)
            if topic == "/davis/events":
                stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                assert t_ns == stamp  # bag time = header stamp (first event)
            if topic == "/davis/camera_info":
                assert (m.width, m.height, m.k[0], m.k[2]) == (346, 260, 540.0, 173.0)
        assert frames == {"/davis/events": {"davis346_optical"}, "/davis/camera_info": {"davis346_optical"},
                          "/davis/face_roi": {"davis346_optical"}, "/davis/image_raw": {"davis346_optical"},
                          "/davis/imu": {"davis346_imu"}, "/davis/time_reference": {"davis346_optical"}}
        ev = r.events("/davis/events")
        t0_us = session.start_ns // 1000
        assert len(ev) > 10_000
        assert ev["t"].min() >= t0_us and ev["t"].max() < t0_us + dur * 1e6
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].max() < 346 and ev["y"].max() < 260
        # bag times never go back (the recorder writes in receive order)
        times = [m.t_ns for m in r.raw()]
        assert times == sorted(times)


def test_markers_follow_the_protocol_and_match_markers_csv(session):
    folder = session.folder
    with BagReader(folder) as r:
        bag_markers = r.markers()
        truth = [json.loads(m.data) for _, _, m in r.messages(["/sim/truth"])]
    csv_rows = read_markers(folder)
    assert [m["phase"] for m in bag_markers] == ["demo", "countdown", "perform", "rest"] * 2 + ["done"]
    assert [(m["stamp_ns"], m["phase"], m["segment"]) for m in bag_markers] == \
        [(m["stamp_ns"], m["phase"], m["segment"]) for m in csv_rows]
    assert all(row["recv_ns"] == row["stamp_ns"] and row["bag_file"] == "S01_sim_0.mcap" for row in csv_rows)
    t0 = session.start_ns
    assert bag_markers[0]["stamp_ns"] == t0 + 500_000_000  # 0.5 s lead
    assert bag_markers[1]["stamp_ns"] - bag_markers[0]["stamp_ns"] == 600_000_000  # demo 6 s x 0.1
    segs = segments_from_markers(bag_markers)
    assert [(s.name, s.au, s.status) for s in segs] == [("S01_AU12_t1", 12, "ok"), ("S01_AU45_t1", 45, "ok")]
    # the ground truth says the performed AU happens inside its perform window
    for s in segs:
        # (a truth item exactly at a phase change may carry either phase: float phase bounds in the sim)
        inside = [t for t in truth if s.perform[0] < t["stamp_ns"] < s.perform[1]]
        assert any(s.au in t["performed"] for t in inside)
        assert all(t["phase"] == "perform" and t["segment"] == s.name for t in inside)
    with open(folder / "markers.csv", newline="") as fh:
        assert next(csv.reader(fh))[:8] == ["stamp_ns", "session", "subject", "run", "au", "trial", "phase",
                                            "segment"]


def test_face_roi_is_the_ground_truth_box(session):
    with BagReader(session.folder) as r:
        truth = {json.loads(m.data)["stamp_ns"]: json.loads(m.data) for _, _, m in r.messages(["/sim/truth"])}
        n = 0
        for _, t_ns, m in r.messages(["/davis/face_roi"]):
            xs = [p.x for p in m.polygon.points]
            ys = [p.y for p in m.polygon.points]
            box = truth[t_ns]["face_boxes"]["davis"]
            assert [min(xs), min(ys), max(xs), max(ys)] == pytest.approx(box, abs=0.01)
            assert 0 <= min(xs) < max(xs) <= 346 and 0 <= min(ys) < max(ys) <= 260
            n += 1
        assert n == len(truth)


def test_session_info_cli_reads_it(session, capsys):
    assert cli_main(["session", "info", str(session.folder)]) == 0
    out = capsys.readouterr().out
    assert "subject S01 session sim  status complete" in out
    assert "S01_AU12_t1" in out and "S01_AU45_t1" in out
    s = summarize_session(session.folder)
    assert [row["status"] for row in s["segments"]] == ["ok", "ok"]
    assert s["sync"]["/davis/time_reference"]["max_us"] < 1.0  # the sim's clock is exact


def test_dataset_builder_reads_it(session, tmp_path):
    from ros2_evmicro.core.dataset import build_sessions

    rep = build_sessions(tmp_path / "ds", [session.folder], quiet=True)
    assert not rep.failures, rep.failures
    clips = sorted(p.stem for p in (tmp_path / "ds" / "clips").glob("*.npz"))
    assert clips == ["S01_AU12_t1", "S01_AU45_t1"]


@pytest.mark.slow
def test_same_seed_same_bytes_and_resume(tmp_path):
    spec = SessionSpec(cameras=("davis",), aus=(45,), time_scale=0.05, seed=7)
    a = generate_session(tmp_path / "a", spec)
    b = generate_session(tmp_path / "b", spec)
    da, db = file_digests(a.folder), file_digests(b.folder)
    assert set(da) == {"S01_sim_0.mcap", "markers.csv", "metadata.yaml", "session.yaml"}
    assert da == db
    c = generate_session(tmp_path / "c", SessionSpec(cameras=("davis",), aus=(45,), time_scale=0.05, seed=8))
    assert file_digests(c.folder)["S01_sim_0.mcap"] != da["S01_sim_0.mcap"]
    again = generate_session(tmp_path / "a", spec)  # a complete session is kept (resumable)
    assert again.skipped and file_digests(a.folder) == da
    (tmp_path / "d" / "S01_sim").mkdir(parents=True)
    (tmp_path / "d" / "S01_sim" / "junk.txt").write_text("x")
    with pytest.raises(SessionGenError, match="not a complete session"):
        generate_session(tmp_path / "d", spec)
    assert not generate_session(tmp_path / "d", spec, overwrite=True).skipped
    assert file_digests(tmp_path / "d" / "S01_sim") == da


@pytest.mark.slow
def test_davis_and_webcam_session(tmp_path, capsys):
    rc = cli_main(["sim", "session", "--subjects", "1", "--out", str(tmp_path), "--cameras", "davis,webcam",
                   "--aus", "45", "--time-scale", "0.05", "--seed", "1", "--no-imu", "--compression", "zstd",
                   "--quiet"])
    assert rc == 0
    assert "S01_sim" in capsys.readouterr().out
    folder = tmp_path / "S01_sim"
    with BagReader(folder) as r:
        assert "/davis/imu" not in r.topics
        assert r.topics["/webcam/image_raw"][0] == "sensor_msgs/msg/Image"
        assert r.topics["/webcam/face_roi"][1] == r.topics["/davis/face_roi"][1]
        n_web = r.topics["/webcam/image_raw"][1]
        assert r.topics["/webcam/time_reference"][1] == n_web > 0
        _, _, img = next(r.images("/webcam/image_raw"))
        assert img.shape == (1080, 1920, 3) and img.dtype == np.uint8
        (_, _, m), = list(r.messages(["/webcam/camera_info"]))
        assert (m.width, m.height, m.header.frame_id) == (1920, 1080, "webcam_optical")
    assert SessionInfo.read(folder).cameras == ["davis", "webcam"]
    assert check_bag(folder).ok


@pytest.mark.parametrize("kwargs, match", [
    ({"cameras": ("davis", "kinect")}, "cameras must be"),
    ({"cameras": ()}, "cameras must be"),
    ({"time_scale": 0.0}, "time_scale"),
    ({"lux": 1.0}, "lux"),
    ({"face_roi_hz": 0.0}, "face_roi_hz"),
    ({"seed": -1}, ">= 0"),
    ({"compression": "gzip"}, "compression"),
])
def test_bad_specs_are_refused(kwargs, match):
    with pytest.raises(SessionGenError, match=match):
        SessionSpec(**kwargs)


def test_bad_cli_arguments(tmp_path, capsys):
    with pytest.raises(SessionGenError, match="subjects must be"):
        generate_sessions(tmp_path, 0)
    with pytest.raises(SessionGenError, match="AU"):
        main_run_protocol((12, 99), 1.0)
    assert cli_main(["sim", "session", "--out", str(tmp_path), "--cameras", "davis,kinect"]) == 2
    assert "cameras must be" in capsys.readouterr().err

"""Protocol definition checks and the state machine's marker sequences (hand-checked)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros2_evmicro.core.au import AU_CODES
from ros2_evmicro.core.protocol import (
    ProtocolError,
    ProtocolStateMachine,
    load_protocol,
    parse_protocol,
    segment_name,
)

CONFIG = Path(__file__).resolve().parent.parent / "config" / "protocol.yaml"
S = 1_000_000_000  # ns per second


def _doc(**run_over):
    """A small protocol: AU12 and AU45, 1 demo rep of 2 s, countdown 3, perform 5, rest 6 (16 s per AU)."""
    doc = {
        "protocol": {
            "name": "t",
            "defaults": {
                "demo_reps": 1,
                "demo_clip_s": 2.0,
                "countdown_s": 3.0,
                "perform_s": 5.0,
                "rest_s": 6.0,
            },
            "aus": [{"au": 12, "clip": ""}, {"au": 45, "clip": ""}, {"au": 51}],
            "runs": {"main": {"aus": [12, 45], **run_over}, "demo": {"aus": [51], "demo_reps": 0}},
        }
    }
    return doc


def _sm(**kw):
    return ProtocolStateMachine(parse_protocol(_doc()), "main", "S01", "2", **kw)


def _brief(markers):
    return [(m["stamp_ns"] / S, m["phase"], m["au"], m["trial"]) for m in markers]


# -- definition ----------------------------------------------------------------------------------------------


def test_shipped_protocol():
    d = load_protocol(CONFIG)
    main = d.run("main")
    assert [s.code for s in main.steps] == list(AU_CODES)  # all 21, Table 1 order
    assert main.duration_s == pytest.approx(21 * (3 * 2 + 3 + 5 + 6))  # 7 minutes
    assert 6 * 60 <= main.duration_s <= 8 * 60
    demo = d.run("demo")
    assert [s.au for s in demo.steps] == [12, 45, 51]
    assert demo.duration_s < 60
    assert all(s.demo_reps == 3 for s in main.steps)
    assert all(s.clip == "" for s in main.steps)  # built-in illustrations
    st = main.steps[5]
    assert (st.au, st.name, st.region) == (12, "Lip Corner Puller", "mouth")
    assert d.instruction("perform", st) == "NOW: Lip Corner Puller"


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda p: p["aus"].append({"au": 13}), r"unknown Action Unit 13"),
        (lambda p: p["runs"]["main"].update(aus=[12, 99]), r"runs.main: unknown Action Unit 99"),
        (
            lambda p: p["aus"][0].update(clip="missing_clip.mp4"),
            r"demo clip for AU12 not found: .*missing_clip.mp4",
        ),
        (lambda p: p["defaults"].update(rest_s=-1), r"rest_s must not be negative, got -1"),
        (lambda p: p["aus"][1].update(countdown_s=-0.5), r"aus\[1\]: countdown_s must not be negative"),
        (lambda p: p["runs"]["main"].update(perform_s=0), r"zero perform window"),
        (lambda p: p["defaults"].update(demo_reps=1.5), r"demo_reps must be an integer"),
        (lambda p: p["defaults"].update(perform_s="long"), r"perform_s must be a number"),
        (lambda p: p["aus"].append({"au": "AU12"}), r"AU12 is listed twice"),
        (lambda p: p["runs"]["main"].update(aus=[12, 12]), r"listed twice"),
        (lambda p: p["runs"]["main"].update(aus=[12, 4]), r"AU4 has no entry"),
        (lambda p: p["aus"][0].update(colour="red"), r"unknown key\(s\) \['colour'\]"),
        (lambda p: p["aus"][0].update(arrow="sideways"), r"arrow must be one of"),
        (lambda p: p.update(redo_from="rest"), r"redo_from must be"),
        (lambda p: p.pop("runs"), r"'runs' must map"),
        (lambda p: p.update(aus=[]), r"'aus' must be a non-empty list"),
    ],
)
def test_validation_errors(mutate, match):
    doc = copy.deepcopy(_doc())
    mutate(doc["protocol"])
    with pytest.raises(ProtocolError, match=match):
        parse_protocol(doc)


def test_file_errors(tmp_path):
    with pytest.raises(ProtocolError, match="does not exist"):
        load_protocol(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol: [unclosed")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(bad)
    (tmp_path / "x.yaml").write_text("something: 1\n")
    with pytest.raises(ProtocolError, match="must hold a 'protocol' mapping"):
        load_protocol(tmp_path / "x.yaml")


def test_clip_paths_relative_to_file(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "au12.mp4").write_bytes(b"x")
    doc = _doc()
    doc["protocol"]["clips_dir"] = "clips"
    doc["protocol"]["aus"][0]["clip"] = "au12.mp4"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    d = load_protocol(tmp_path / "p.yaml")
    assert d.run("main").steps[0].clip == str(tmp_path / "clips" / "au12.mp4")
    with pytest.raises(ProtocolError, match="no run 'other'"):
        d.run("other")


# -- state machine -------------------------------------------------------------------------------------------


def test_full_sequence_and_marker_fields():
    sm = _sm()
    out = sm.tick(10 * S)  # first tick starts the run
    assert out == [
        {
            "stamp_ns": 10 * S,
            "session": "2",
            "subject": "S01",
            "run": "main",
            "au": 12,
            "trial": 1,
            "phase": "demo",
            "segment": "S01_AU12_t1",
        }
    ]
    assert sm.tick(11 * S) == []
    assert sm.remaining_s(11 * S) == pytest.approx(1.0)
    out = sm.tick(100 * S)  # a late tick: every boundary with its scheduled stamp
    # demo 10-12, countdown 12-15, perform 15-20, rest 20-26; AU45 26-42
    assert _brief(out) == [
        (12, "countdown", 12, 1),
        (15, "perform", 12, 1),
        (20, "rest", 12, 1),
        (26, "demo", 45, 1),
        (28, "countdown", 45, 1),
        (31, "perform", 45, 1),
        (36, "rest", 45, 1),
        (42, "done", 0, 0),
    ]
    assert out[-1]["segment"] == "" and sm.done and not sm.aborted
    assert sm.tick(200 * S) == []
    assert len(sm.history) == 9


def test_pause_resume_restarts_perform_with_countdown():
    sm = _sm()
    sm.tick(0)
    sm.tick(6 * S)  # demo 0-2, countdown 2-5, perform from 5
    assert sm.phase == "perform"
    out = sm.pause(7 * S)
    assert _brief(out) == [(7, "paused", 12, 1)]
    assert sm.phase == "paused" and sm.tick(50 * S) == []  # the clock stops while paused
    out = sm.resume(60 * S)
    assert _brief(out) == [(60, "countdown", 12, 1)]  # perform restarts after a fresh countdown
    assert _brief(sm.tick(70 * S)) == [(63, "perform", 12, 1), (68, "rest", 12, 1)]
    with pytest.raises(ProtocolError, match="not paused"):
        sm.resume(71 * S)
    sm.pause(71 * S)
    with pytest.raises(ProtocolError, match="already paused"):
        sm.pause(72 * S)
    assert _brief(sm.resume(80 * S)) == [(80, "rest", 12, 1)]  # other phases restart as they were


def test_redo_marks_take_and_increments_trial():
    sm = _sm()
    sm.tick(0)
    sm.tick(6 * S)  # perform of AU12 trial 1
    out = sm.redo(8 * S)
    assert _brief(out) == [(8, "redo", 12, 1), (8, "countdown", 12, 2)]
    assert out[0]["segment"] == "S01_AU12_t1" and out[1]["segment"] == "S01_AU12_t2"
    assert _brief(sm.tick(17 * S)) == [(11, "perform", 12, 2), (16, "rest", 12, 2)]
    # redo while paused: resumes at once with the next trial
    sm.pause(18 * S)
    assert _brief(sm.redo(30 * S)) == [(30, "redo", 12, 2), (30, "countdown", 12, 3)]
    assert sm.segment == segment_name("S01", 12, 3) == "S01_AU12_t3"


def test_redo_from_demo():
    doc = _doc()
    doc["protocol"]["redo_from"] = "demo"
    sm = ProtocolStateMachine(parse_protocol(doc), "main", "S01", "1")
    sm.tick(0)
    assert _brief(sm.redo(1 * S)) == [(1, "redo", 12, 1), (1, "demo", 12, 2)]


def test_skip_and_abort():
    sm = _sm()
    sm.tick(0)
    assert _brief(sm.skip(1 * S)) == [(1, "demo", 45, 1)]
    assert _brief(sm.tick(4 * S)) == [(3, "countdown", 45, 1)]
    assert _brief(sm.skip(4 * S)) == [(4, "done", 0, 0)]  # skipping the last AU ends the run
    with pytest.raises(ProtocolError, match="is done"):
        sm.skip(5 * S)
    sm2 = _sm()
    sm2.tick(0)
    sm2.pause(1 * S)
    out = sm2.abort(2 * S)
    assert _brief(out) == [(2, "done", 0, 0)] and sm2.aborted and sm2.done
    with pytest.raises(ProtocolError, match="already done"):
        sm2.abort(3 * S)
    with pytest.raises(ProtocolError, match="aborted"):
        sm2.pause(3 * S)


def test_controls_before_start_and_zero_demo():
    sm = ProtocolStateMachine(parse_protocol(_doc()), "demo", "S02", "1")
    with pytest.raises(ProtocolError, match="has not started"):
        sm.pause(0)
    out = sm.tick(5 * S)  # demo_reps 0: straight to the countdown
    assert _brief(out) == [(5, "countdown", 51, 1)]
    with pytest.raises(ProtocolError, match="already started"):
        sm.start(6 * S)


def test_time_scale():
    sm = _sm(time_scale=0.01)
    sm.tick(0)
    out = sm.tick(S)
    assert [m["stamp_ns"] for m in out] == [
        20_000_000,
        50_000_000,
        100_000_000,
        160_000_000,
        180_000_000,
        210_000_000,
        260_000_000,
        320_000_000,
    ]
    with pytest.raises(ProtocolError, match="time_scale must be positive"):
        _sm(time_scale=0)


# -- presentation (pure functions of the player module) ------------------------------------------------------


def test_beeps():
    from ros2_evmicro.nodes.protocol_player import beep, countdown_tone

    b = beep(1000.0, 0.1, sample_rate=8000)
    assert b.dtype == np.int16 and len(b) == 800
    assert b[0] == 0 and np.abs(b).max() == pytest.approx(0.5 * 32767, rel=0.01)
    # a 1 kHz tone at 8 kHz: 100 periods -> 200 sign changes
    assert abs(int(np.sum(np.diff(np.sign(b[b != 0])) != 0)) - 200) <= 3
    double = countdown_tone("rest")
    assert len(double) == 2 * int(0.12 * 44100) + int(round(0.08 * 44100))
    assert countdown_tone("demo") is None


def test_render_screens():
    from ros2_evmicro.nodes.protocol_player import render_screen

    d = load_protocol(CONFIG)
    st = d.run("main").steps[13]  # AU51 head turn left
    imgs = {}
    for phase in ("demo", "countdown", "perform", "rest", "paused", "done"):
        img = render_screen(
            (360, 640),
            phase,
            st,
            instruction=d.instruction(phase, st),
            remaining_s=2.3,
            phase_t=0.5,
            progress=(13, 21),
        )
        assert img.shape == (360, 640, 3) and img.dtype == np.uint8
        assert img.any()
        imgs[phase] = img
    assert (imgs["perform"][12, 320] == [0, 220, 0]).all()  # the green frame of the perform cue
    clip = np.full((100, 200, 3), 77, np.uint8)
    img = render_screen((360, 640), "demo", st, clip_frame=clip)
    assert (img[150, 320] == 77).all()

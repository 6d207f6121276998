"""Offline replay evaluation: the replay stream, the offline pipeline (== the replay graph), scoring."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import write_test_checkpoints

from ros2_evmicro.core.au import AU_CODES, NUM_AUS, au_index
from ros2_evmicro.core.bagio import BagWriter, qos_profile
from ros2_evmicro.core.events import make_events
from ros2_evmicro.core.replay import (
    ReplayConfig,
    ReplayError,
    RoiHistory,
    evaluate_recorded,
    format_report,
    offline_pipeline,
    parse_camera_map,
    replay_stream,
    score_segments,
)

T0 = 1_700_000_000_000_000_000  # ns


def _marker(t_ns, au, phase, trial=1):
    return {"stamp_ns": int(t_ns), "session": "s", "subject": "S01", "run": "main", "au": au, "trial": trial,
            "phase": phase, "segment": f"S01_AU{au}_t{trial}"}


def small_bag(path, *, n_packets=20, box=(100.0, 80.0, 200.0, 200.0), seed=0):
    """A session-like bag: camera_info, 10 ms event packets, a face box every 30 ms, markers."""
    rng = np.random.default_rng(seed)
    with BagWriter(path, fsync_period_s=-1) as w:
        w.add_topic("/davis/camera_info", "sensor_msgs/msg/CameraInfo", qos_profile(True, 1, True))
        w.write_camera_info("/davis/camera_info", 346, 260, stamp_ns=T0, frame_id="davis346_optical")
        for k in range(n_packets):
            t_ns = T0 + k * 10_000_000
            if k % 3 == 0:
                b = (box[0] + k, box[1], box[2] + k, box[3])
                w.write_polygon("/davis/face_roi", b, stamp_ns=t_ns, frame_id="davis346_optical")
            if k == 2:
                w.write_marker("/protocol/marker", _marker(t_ns, 12, "perform"))
            if k == 14:
                w.write_marker("/protocol/marker", _marker(t_ns, 12, "rest"))
            n = 200
            t = np.sort(rng.integers(0, 10_000, n)) + t_ns // 1000
            ev = make_events(rng.integers(90, 230, n), rng.integers(70, 210, n), rng.integers(0, 2, n), t)
            w.write_events("/davis/events", ev, stamp_ns=int(t[0]) * 1000, frame_id="davis346_optical")
    return path


# -- replay stream ----------------------------------------------------------------------------------------


def test_replay_stream_order_filter_and_offsets(tmp_path):
    bag = small_bag(tmp_path / "b")
    items = list(replay_stream(bag))
    times = [it.t_ns for it in items]
    assert times == sorted(times)
    assert items[0].topic == "/davis/camera_info" and items[0].t_ns == T0
    assert sum(it.topic == "/davis/events" for it in items) == 20
    assert all(isinstance(it.raw, bytes) and it.events is None for it in items)
    only = list(replay_stream(bag, topics=["/protocol/marker"]))
    assert [json.loads(bytes(it.raw[8:]).split(b"\0")[0])["phase"] for it in only] == ["perform", "rest"]
    # [50 ms, 100 ms): camera_info (latched state) first at the start offset, then what lies inside
    cut = list(replay_stream(bag, start_s=0.05, end_s=0.1))
    assert cut[0].topic == "/davis/camera_info" and cut[0].t_ns == T0 + 50_000_000
    rest = cut[1:]
    assert rest and all(T0 + 50_000_000 <= it.t_ns < T0 + 100_000_000 for it in rest)
    assert sum(it.topic == "/davis/events" for it in rest) == 5
    with pytest.raises(ReplayError, match="no topic"):
        list(replay_stream(bag, topics=["/evk4/events"]))
    with pytest.raises(ReplayError, match="start_s < end_s"):
        list(replay_stream(bag, start_s=1.0, end_s=0.5))


def test_camera_map_parsing():
    assert parse_camera_map(["", "dvs/events=davis", "/prophesee/events = evk4"]) == {
        "/dvs/events": "davis", "/prophesee/events": "evk4"}
    with pytest.raises(ReplayError, match="TOPIC=CAMERA"):
        parse_camera_map(["/dvs/events"])
    with pytest.raises(ReplayError, match="empty"):
        parse_camera_map(["=davis"])


def test_foreign_eventpacket_bag_becomes_contract_events(tmp_path):
    from ros2_evmicro.core.codecs import encode_evt3, write_eventpacket_bag

    rng = np.random.default_rng(1)
    packets, sent = [], []
    stamp0 = T0 + 5_000_000  # the driver's ROS time of the first event (sensor t = 1000 us)
    for k in range(4):
        t = np.sort(rng.integers(0, 10_000, 50)) + 1_000 + k * 10_000
        ev = make_events(rng.integers(0, 346, 50), rng.integers(0, 260, 50), rng.integers(0, 2, 50), t)
        ev["t"][0] = 1_000 + k * 10_000
        sent.append(ev)
        packets.append({"bag_time_ns": stamp0 + k * 10_000_000 + 300_000, "stamp_ns": stamp0 + k * 10_000_000,
                        "payload": encode_evt3(ev), "encoding": "evt3", "width": 346, "height": 260,
                        "frame_id": "dvs"})
    bag = write_eventpacket_bag(tmp_path / "fb", packets, topic="/dvs/events", storage="mcap")
    items = list(replay_stream(bag))
    assert [it.topic for it in items] == ["/davis/events"] * 4  # 346x260 -> davis
    for it, ev in zip(items, sent, strict=True):
        assert it.raw is None and (it.width, it.height, it.frame_id) == (346, 260, "dvs")
        np.testing.assert_array_equal(it.events["x"], ev["x"])
        # one constant offset: sensor 1000 us <-> stamp0
        np.testing.assert_array_equal(it.events["t"], ev["t"] - 1_000 + stamp0 // 1000)
    mapped = list(replay_stream(bag, camera_map={"/dvs/events": "evk4"}))
    assert mapped[0].topic == "/evk4/events"
    bad = write_eventpacket_bag(tmp_path / "fb2", [dict(packets[0], width=640, height=480)], topic="/x",
                                storage="mcap")
    with pytest.raises(ReplayError, match="matches no known camera"):
        list(replay_stream(bad))


# -- offline pipeline -----------------------------------------------------------------------------------


def test_roi_history_is_the_slicer_nodes():
    from ros2_evmicro.nodes.slicer import RoiHistory as NodeRoiHistory

    rng = np.random.default_rng(4)
    a, b = RoiHistory(), NodeRoiHistory()
    assert a.at(5) is None and b.at(5) is None
    t = 0
    for _ in range(200):
        t += int(rng.integers(-5, 30))  # some boxes out of order (ignored)
        box = tuple(float(v) for v in rng.uniform(0, 100, 4))
        a.add(t, box)
        b.add(t, box)
        q = int(rng.integers(t - 300, t + 10))
        assert a.at(q) == b.at(q)
    assert len(a) == len(b) == 64


def test_offline_frames_use_the_box_received_before_the_window_closes(tmp_path):
    from ros2_evmicro.core.dataset import crop_counts
    from ros2_evmicro.core.slicer import Slicer

    bag = small_bag(tmp_path / "b")
    res = offline_pipeline(bag, ReplayConfig(roi_deadband=0.0))  # follow every box: which box a window takes
    # windows on the 33 ms grid of ROS time (T0 lies 5 ms into one): [-5, 28) ... [160, 193) ms close;
    # the last, open window is not flushed (as the node)
    assert (res.frame_stamps_ns - T0).tolist() == [(-5 + 33 * k) * 1_000_000 for k in range(6)]
    assert np.all(res.frame_stamps_ns % 33_000_000 == 0)
    assert res.roi_sources == ["topic"] * 6
    assert res.frames.shape == (6, 2, 64, 64) and res.frames.dtype == np.float32
    assert res.scores.shape == (0, NUM_AUS) and [m["phase"] for m in res.markers] == ["perform", "rest"]
    # by hand: all events, one slicer, boxes known at the time each window closed
    from ros2_evmicro.core.bagio import BagReader

    with BagReader(bag) as r:
        ev = r.events("/davis/events")
    s = Slicer(346, 260, 33_000, 2_000, dtype=np.uint16)
    frames = s.push(ev)
    assert [f.t_start_us * 1000 for f in frames] == list(res.frame_stamps_ns)
    for f, got in zip(frames, res.frames, strict=True):
        # the box of the window: newest stamped <= window end (boxes every 30 ms: k = 0, 3, 6, ...)
        k = max(kk for kk in range(0, 20, 3) if T0 + kk * 10_000_000 <= f.t_end_us * 1000)
        box = (100.0 + k, 80.0, 200.0 + k, 200.0)
        np.testing.assert_array_equal(got, crop_counts(f.counts, box, 64, 0.2))
    center = offline_pipeline(bag, ReplayConfig(roi_mode="center", normalization="max"))
    assert center.roi_sources == ["center"] * 6 and center.frames.max() == 1.0


def test_replay_config_is_checked_against_the_node_specs():
    cfg = ReplayConfig()
    assert (cfg.window_ms, cfg.crop_size_px, cfg.reset_policy, cfg.mode) == (33.0, 64, "sliding", "stream")
    with pytest.raises(ReplayError, match="reset_policy"):
        ReplayConfig(reset_policy="sometimes")
    with pytest.raises(ReplayError, match="camera"):
        ReplayConfig(camera="webcam")


# -- scoring --------------------------------------------------------------------------------------------


def _scores(top: int, second: int, third: int) -> np.ndarray:
    s = np.zeros(NUM_AUS, np.float32)
    s[au_index(top)], s[au_index(second)], s[au_index(third)] = 0.9, 0.5, 0.2
    return s


def test_score_segments_golden():
    ms = 1_000_000
    markers = [_marker(0, 12, "demo"), _marker(100 * ms, 12, "perform"), _marker(200 * ms, 12, "rest"),
               _marker(300 * ms, 45, "perform"), _marker(400 * ms, 45, "rest"),
               _marker(500 * ms, 4, "perform"), _marker(600 * ms, 4, "redo"),
               _marker(700 * ms, 26, "perform"), _marker(800 * ms, 26, "rest"), _marker(900 * ms, 26, "done")]
    stamps = np.array([150, 190, 310, 390, 550, 810]) * ms
    scores = np.stack([_scores(45, 12, 2), _scores(12, 2, 4),  # AU12: last output -> correct
                       _scores(2, 4, 45), _scores(12, 2, 45),  # AU45: third in the last output
                       _scores(4, 2, 5),  # AU4 was redone: not scored
                       _scores(26, 2, 4)])  # AU26: output after its window -> unscored
    rep = score_segments(stamps, scores, markers)
    assert [(s.segment, s.predicted, s.correct_top1, s.correct_top3, s.outputs) for s in rep.segments] == [
        ("S01_AU12_t1", "AU12", True, True, 2), ("S01_AU45_t1", "AU12", False, True, 2)]
    assert rep.segments[1].top3 == ["AU12", "AU2", "AU45"]
    assert rep.segments[1].true_score == pytest.approx(0.2)
    assert rep.unscored == ["S01_AU26_t1"]
    assert (rep.accuracy, rep.top3_accuracy, rep.scored) == (0.5, 1.0, 2)
    mean = score_segments(stamps, scores, markers, aggregate="mean")
    # AU12 window: mean of (AU45 .9, AU12 .5) and (AU12 .9, AU2 .5) -> AU12 .7 leads
    assert mean.segments[0].predicted == "AU12" and mean.segments[0].true_score == pytest.approx(0.7)
    assert "top-1 0.500, top-3 1.000" in format_report(rep)
    assert rep.to_dict()["segments"][0]["segment"] == "S01_AU12_t1"
    # ties rank in Table 1 order; no output at all -> nothing scored, accuracy nan
    tie = score_segments(np.array([150 * ms]), np.zeros((1, NUM_AUS)), markers)
    assert tie.segments[0].predicted == AU_CODES[0] and tie.segments[0].top3 == list(AU_CODES[:3])
    empty = score_segments(np.zeros(0, np.int64), np.zeros((0, NUM_AUS)), markers)
    assert empty.scored == 0 and np.isnan(empty.accuracy) and len(empty.unscored) == 3
    with pytest.raises(ReplayError, match="aggregate"):
        score_segments(stamps, scores, markers, aggregate="median")
    with pytest.raises(ReplayError, match="stamps"):
        score_segments(stamps[:2], scores, markers)


def test_evaluate_recorded_reads_jointstate_outputs(tmp_path):
    ms = 1_000_000
    markers = [_marker(T0 + 100 * ms, 12, "perform"), _marker(T0 + 200 * ms, 12, "rest")]
    with BagWriter(tmp_path / "out" / "replay_replay", fsync_period_s=-1) as w:
        for m in markers:
            w.write_marker("/protocol/marker", m)
        w.write_au("/evmicro/au", _scores(12, 2, 4), stamp_ns=T0 + 150 * ms)
        w.write_au("/evmicro/au", _scores(9, 12, 4), stamp_ns=T0 + 250 * ms)
    rep = evaluate_recorded(tmp_path / "out")
    assert [(s.segment, s.predicted, s.outputs) for s in rep.segments] == [("S01_AU12_t1", "AU12", 1)]
    with BagWriter(tmp_path / "nomarkers", fsync_period_s=-1) as w:
        w.write_au("/evmicro/au", _scores(12, 2, 4), stamp_ns=T0 + 150 * ms)
    with pytest.raises(ReplayError, match="no protocol markers"):
        evaluate_recorded(tmp_path / "nomarkers")
    with pytest.raises(ReplayError, match="holds no /evmicro/au"):
        evaluate_recorded(small_bag(tmp_path / "b"))


# -- offline == replay graph ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_test_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("reset_policy", ["segment"])
def test_offline_path_equals_replay_graph(tmp_path, checkpoints, reset_policy):
    """A simulated session replayed through the replay graph (bag_player at rate 0 -> slicer -> AU + recon,
    recorder) gives the offline pipeline's frames exactly and its AU scores."""
    from ros2_evmicro.core.replay import evaluate_offline, recorded_outputs
    from ros2_evmicro.core.sim.session_gen import SessionSpec, generate_session
    from ros2_evmicro.graphs import GRAPHS
    from ros2_evmicro.ros.runner import GraphRun

    snn, cvae = checkpoints
    sess = generate_session(tmp_path / "s", SessionSpec(cameras=("davis",), aus=(12, 45), time_scale=0.1,
                                                        seed=2, aps=False, imu=False)).folder
    decls = []
    for d in GRAPHS["replay"].nodes({"bag": str(sess), "rate": "0", "au_checkpoint": str(snn),
                                     "recon_checkpoint": str(cvae), "out_dir": str(tmp_path / "out"),
                                     "device": "cpu"}):
        if d.kind == "bag_player":  # the recorder must be listening before the first frame
            d = dataclasses.replace(d, parameters={**d.parameters, "wait_for_topics": ["/davis/frames",
                                                                                       "/evmicro/au"]})
        if d.kind == "au":
            d = dataclasses.replace(d, parameters={**d.parameters, "reset_policy": reset_policy})
        decls.append(d)
    with GraphRun(decls) as run:
        assert run.spin(duration_s=120) == "finished"
        assert run.node("au").diag.counters.get("dropped_frames", 0) == 0
    rec = recorded_outputs(tmp_path / "out", frames_topic="/davis/frames")
    res = evaluate_offline(sess, snn, ReplayConfig(reset_policy=reset_policy))
    assert len(res.frame_stamps_ns) > 100
    np.testing.assert_array_equal(rec["frame_stamps_ns"], res.frame_stamps_ns)
    off_frames = offline_pipeline(sess).frames
    np.testing.assert_array_equal(rec["frames"], off_frames)  # bit-identical frames
    assert off_frames.sum() > 1000
    np.testing.assert_array_equal(rec["score_stamps_ns"], res.score_stamps_ns)
    np.testing.assert_allclose(rec["scores"], res.scores, atol=1e-6)
    assert res.scores.max() > 0  # the net fires: the comparison is not between zeros
    # the same report from the recorded outputs and from the offline path
    rep = evaluate_recorded(tmp_path / "out")
    assert rep.scored == res.report.scored == 2
    assert [s.top3 for s in rep.segments] == [s.top3 for s in res.report.segments]


def test_evaluate_replay_cli(tmp_path, capsys):
    from ros2_evmicro.cli import main as cli_main

    ms = 1_000_000
    with BagWriter(tmp_path / "out" / "replay_replay", fsync_period_s=-1) as w:
        w.write_marker("/protocol/marker", _marker(T0 + 100 * ms, 45, "perform"))
        w.write_marker("/protocol/marker", _marker(T0 + 200 * ms, 45, "rest"))
        w.write_au("/evmicro/au", _scores(12, 45, 4), stamp_ns=T0 + 150 * ms)
    assert cli_main(["evaluate-replay", "--outputs", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "1 perform windows scored" in out and "top-1 0.000, top-3 1.000" in out
    assert cli_main(["evaluate-replay", "--outputs", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"][0]["top3"] == ["AU12", "AU45", "AU4"]
    assert cli_main(["evaluate-replay", "--bag", str(tmp_path / "out")]) == 2
    assert "needs --bag SESSION and --checkpoint" in capsys.readouterr().err


def test_crop_box_dead_band_holds_small_moves_and_follows_large_ones():
    from ros2_evmicro.core.roi import hold_box

    held = (100.0, 100.0, 200.0, 220.0)  # side 120: the dead band is 30 px at 0.25
    assert hold_box(None, (1, 2, 3, 4), 0.25) == (1.0, 2.0, 3.0, 4.0)
    assert hold_box(held, (129.0, 100.0, 229.0, 220.0), 0.25) == held  # centre 29 px right: held
    assert hold_box(held, (131.0, 100.0, 231.0, 220.0), 0.25) == (131.0, 100.0, 231.0, 220.0)  # 31 px: moves
    assert hold_box(held, (100.0, 70.5, 200.0, 190.5), 0.25) == held  # 29.5 px up: held
    assert hold_box(held, (86.0, 86.0, 215.0, 235.0), 0.25) == held  # side 149: +29 px, held
    assert hold_box(held, (85.0, 85.0, 215.0, 235.0), 0.25) == (85.0, 85.0, 215.0, 235.0)  # +30 px: moves
    assert hold_box(held, (80.0, 80.0, 220.0, 240.0), 0.25) == (80.0, 80.0, 220.0, 240.0)  # side +40: moves
    assert hold_box(held, (101.0, 100.0, 201.0, 220.0), 0.0) == (101.0, 100.0, 201.0, 220.0)  # 0: follows

    # in the history: the held box is stored under each new stamp; a slow drift moves the crop in one step
    h = RoiHistory(deadband=0.25)
    for i in range(8):
        h.add(i * 10, (100.0 + 5 * i, 100.0, 200.0 + 5 * i, 220.0))
    boxes = [h.at(i * 10)[0][0] for i in range(8)]
    assert boxes == [100.0] * 6 + [130.0, 130.0]  # 30 px (not < 30) at the 7th box: the crop moves there
    assert h.at(55) == ((100.0, 100.0, 200.0, 220.0), 50)
    with pytest.raises(ValueError):
        RoiHistory(deadband=-0.1)


def test_dataset_boxes_and_replay_use_the_slicer_nodes_dead_band():
    from ros2_evmicro.core.dataset import BoxTrack, BuildConfig
    from ros2_evmicro.specs.slicer import SPEC

    default = SPEC.values({}).roi_deadband
    assert BuildConfig().roi_deadband == ReplayConfig().roi_deadband == default > 0
    tr, h = BoxTrack(), RoiHistory(deadband=default)
    rng = np.random.default_rng(3)
    for i in range(50):
        box = (100 + rng.normal(0, 12), 80 + rng.normal(0, 12), 200 + rng.normal(0, 12), 200 + rng.normal(0, 12))
        tr.add(i * 33_000, box)
        h.add(i * 33_000_000, box)
    held = tr.held(default)
    assert [held.at(i * 33_000) for i in range(50)] == [h.at(i * 33_000_000)[0] for i in range(50)]
    assert len(set(held.boxes)) < len(set(tr.boxes))


def test_crop_box_re_anchors_on_a_still_face():
    """A first box taken off the face (start-up) is not kept: once the face is still elsewhere, the crop
    moves there, even inside the dead band."""
    from ros2_evmicro.core.roi import SteadyBox

    st = SteadyBox(0.25)
    assert st.update((90.0, 100.0, 190.0, 220.0)) == (90.0, 100.0, 190.0, 220.0)  # side 120, 10 px off
    for i in range(3):  # the face sits at x0 = 100 (+- 1 px): within the dead band, not yet settled
        assert st.update((100.0 + (-1) ** i, 100.0, 200.0 + (-1) ** i, 220.0))[0] == 90.0
    got = [st.update((100.0, 100.0, 200.0, 220.0))[0] for _ in range(3)]
    assert got[-1] == pytest.approx(100.0, abs=1.0)  # 5 boxes within 6 px (5 %): moved to their mean
    # a face moving steadily (5 px per box) is not still: the held box stays until the dead band is left
    st = SteadyBox(0.25)
    xs = [st.update((100.0 + 5 * i, 100.0, 200.0 + 5 * i, 220.0))[0] for i in range(8)]
    assert xs == [100.0] * 6 + [130.0, 130.0]

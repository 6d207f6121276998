"""Tests of the synthetic rig: face, timeline, sensors, rig stream, clips, determinism and realism."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import real_file

from ros2_evmicro.core.au import AUS, NUM_AUS, au_index
from ros2_evmicro.core.events import EVENT_DTYPE, EventPacket, validate_events
from ros2_evmicro.core.sim import (
    N_CONTROLS,
    Action,
    Background,
    EventSensor,
    EventSensorParams,
    FaceRenderer,
    SimError,
    SimRig,
    Timeline,
    clip_timeline,
    controls_zero,
    default_geometry,
    homography,
    protocol_timeline,
    render_clip,
    subject_from_seed,
)
from ros2_evmicro.core.sim.realism import event_frame, event_stats, rate_table, write_comparison_png
from ros2_evmicro.core.sim.sensors import ApsSensor, ImuModel, WebcamParams, WebcamSensor


def _fields(ev: np.ndarray) -> bytes:
    """The bytes of an event array's fields (numpy does not keep the 3 padding bytes of EVENT_DTYPE)."""
    return b"".join(np.ascontiguousarray(ev[f]).tobytes() for f in ("x", "y", "p", "t"))


# ------------------------------------------------------------------------------------------------ face


def test_subject_is_seeded_and_varies():
    assert subject_from_seed(3) == subject_from_seed(3)
    subs = [subject_from_seed(s) for s in range(12)]
    assert len({round(s.ax, 6) for s in subs}) == 12
    assert len({s.skin for s in subs}) == 12
    assert subject_from_seed(3, glasses=True).glasses and not subject_from_seed(3, glasses=False).glasses
    with pytest.raises(SimError, match="seed"):
        subject_from_seed(-1)


def _render(sub_seed: int, au: int | None, scale: float = 40.0, color: bool = False) -> np.ndarray:
    r = FaceRenderer(subject_from_seed(sub_seed, glasses=False), scale, color=color)
    c = controls_zero()
    if au is not None:
        c[au_index(au)] = 1.0
    bg = np.full((180, 160, 3 if color else 1), 0.5, np.float32)
    return r.render(c, (80.0, 85.0), bg)


def test_render_shape_range_and_determinism():
    img = _render(0, None)
    assert img.shape == (180, 160, 1) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert np.array_equal(img, _render(0, None))
    col = _render(0, None, color=True)
    assert col.shape == (180, 160, 3)
    # the face is not the background: the centre differs from 0.5, the corners do not
    assert abs(float(img[85, 80, 0]) - 0.5) > 0.02
    assert float(img[0, 0, 0]) == pytest.approx(0.5, abs=1e-6)


def test_head_drawing_is_reused_only_while_the_expression_is_unchanged():
    """head_canvas skips redrawing when only the pose controls changed: the result equals a fresh drawing."""
    tl = Timeline([(0.2, 12, 1.0, 0.4), (0.9, 51, 1.0, 0.5), (1.6, 45, 1.0, 0.3)], seed=2)
    cs = tl.controls(np.arange(0.0, 2.2, 0.01))
    cached, fresh = FaceRenderer(subject_from_seed(4), 2.0), FaceRenderer(subject_from_seed(4), 2.0)
    reused = 0
    for c in cs:
        before = cached._head_key
        got = cached.head_canvas(c).copy()
        reused += before is not None and cached._head_key is before
        fresh._head_key = None
        assert np.array_equal(got, fresh.head_canvas(c))
    assert reused > len(cs) // 3  # the head turn (AU51) and the rest between actions reuse the drawing
    with pytest.raises(SimError):
        cached.head_canvas(np.zeros(3, np.float32))


@pytest.mark.parametrize(
    ("au", "region"),
    [
        (2, "upper"),  # brows
        (12, "lower"),  # lip corners
        (26, "lower"),  # jaw
        (43, "eyes"),  # lids
        (61, "eyes"),  # irises
    ],
)
def test_each_au_changes_its_own_region(au, region):
    scale, cy = 40.0, 85.0
    diff = np.abs(_render(1, au, scale) - _render(1, None, scale))[..., 0]
    sub = subject_from_seed(1)
    eye_row = int(cy + sub.eye_y * scale)
    rows = {"upper": slice(int(cy + (sub.brow_y - 0.3) * scale), eye_row - 2),
            "eyes": slice(eye_row - 5, eye_row + 5),
            "lower": slice(int(cy + 0.4 * scale), int(cy + 1.7 * scale))}[region]
    inside = diff[rows].sum()
    assert inside > 0.5, f"AU{au} does not change the {region} region"
    assert inside > 0.5 * diff.sum(), f"AU{au} changes mostly outside the {region} region"


def test_head_turn_moves_face_box_and_renderer_rejects_bad_input():
    r = FaceRenderer(subject_from_seed(2), 40.0)
    c = controls_zero()
    b0 = r.face_box(c, (100.0, 100.0))
    c[au_index(51)] = 1.0
    b1 = r.face_box(c, (100.0, 100.0))
    assert b1[0] > b0[0] and (b1[2] - b1[0]) < (b0[2] - b0[0]) * 1.01  # turned towards +x
    with pytest.raises(SimError, match="controls"):
        r.head_canvas(np.zeros(5, np.float32))
    with pytest.raises(SimError, match="scale"):
        FaceRenderer(subject_from_seed(2), 0.5)
    with pytest.raises(SimError, match="background"):
        r.render(controls_zero(), (10.0, 10.0), np.zeros((10, 10, 3), np.float32))


# -------------------------------------------------------------------------------------------- timeline


def test_envelope_golden_values():
    a = Action(1.0, 12, 0.8, 0.4, onset_frac=0.25, offset_frac=0.5)
    # rise over 0.1 s, apex 0.1 s, fall 0.2 s (raised cosine)
    t = np.array([0.99, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.41])
    expect = 0.8 * np.array([0, 0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(a.envelope(t), expect, atol=1e-12)
    assert a.t_apex_s == pytest.approx(1.1) and a.t_end_s == pytest.approx(1.4)
    with pytest.raises(SimError, match="intensity"):
        Action(0.0, 12, 1.5, 0.3)
    with pytest.raises(SimError, match="unknown Action Unit"):
        Action(0.0, 13, 0.5, 0.3)


def test_timeline_controls_shapes_and_background():
    tl = Timeline([(0.5, 12, 1.0, 0.3)], seed=4)
    assert tl.controls(0.65).shape == (N_CONTROLS,)
    c = tl.controls(np.linspace(0, 30, 3001))
    assert c.shape == (3001, N_CONTROLS) and c.dtype == np.float32
    assert c[:, au_index(12)].max() == pytest.approx(1.0, abs=0.02)
    assert tl.performed_at(0.65) == (12,) and tl.performed_at(0.1) == ()
    # involuntary: spontaneous blinks (about 0.28/s), sway and micro-saccades in every timeline
    blink = c[:, N_CONTROLS - 8]
    starts = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 2 <= len(starts) <= 20
    assert np.abs(c[:, N_CONTROLS - 7]).max() > 1e-3  # sway yaw
    assert np.abs(c[:, N_CONTROLS - 2]).max() > 1e-2  # saccade x
    # the label channel of AU45 stays clean: spontaneous blinks go to their own channel
    assert c[:, au_index(45)].max() == 0.0
    # a quiet background
    still = Timeline([(0.5, 12, 1.0, 0.3)], background=Background(enabled=False), seed=4)
    cs = still.controls(np.linspace(0, 30, 301))
    assert np.abs(cs[:, NUM_AUS:]).max() == 0.0
    # the same time gives the same controls whatever the query
    np.testing.assert_array_equal(tl.controls(12.34), tl.controls(np.array([0.0, 12.34]))[1])


def test_coactivation_of_au6_with_au12():
    hits = 0
    for seed in range(40):
        tl = Timeline([(0.2, 12, 1.0, 0.4)], seed=seed, background=Background(enabled=False))
        hits += any(a.au == 6 and not a.performed for a in tl.coactions)
    assert 15 <= hits <= 38  # probability 0.7


def test_blink_takes_span_brisk_and_slow_blinks_spontaneous_ones_stay_brisk():
    from ros2_evmicro.core.sim.timeline import duration_range_s, random_take, take_duration_range_s

    assert duration_range_s(45) == (0.10, 0.15)  # spontaneous blinks of the background
    assert take_duration_range_s(45) == (0.10, 0.50)
    assert take_duration_range_s(12) == duration_range_s(12)
    rng = np.random.default_rng(3)
    durs = np.array([random_take(45, rng, (0.0, 1.0)).duration_s for _ in range(400)])
    assert durs.min() >= 0.10 and durs.max() <= 0.50
    # log-uniform: about half the takes brisk (< 0.22 s), about a sixth slow (> 0.4 s, a drowsy blink)
    assert 0.4 <= np.mean(durs < 0.22) <= 0.6
    assert 0.08 <= np.mean(durs > 0.4) <= 0.25
    # the spontaneous blinks of the background keep the natural 100-150 ms
    tl = Timeline([], seed=5)
    blinks = [b for k in range(6) for b in tl._block(k).blinks]
    assert blinks and all(0.10 <= b.duration_s <= 0.15 for b in blinks)
    # a 1.2 s clip (the shipped dataset's) still holds the longest take inside its margins
    c = clip_timeline(45, 1.2, seed=1)
    a = c.actions[0]
    assert a.t_start_s >= 0.0 and a.t_end_s <= 1.2


def test_protocol_segments_and_markers():
    p = protocol_timeline(aus=[12, 45], trials=2, perform_s=2.0, rest_s=1.0, demo_s=1.5, countdown_s=0.5,
                          start_s=0.25, subject="S07")
    assert len(p.segments) == 2 * 2 * 4
    assert [s.phase for s in p.segments[:4]] == ["demo", "countdown", "perform", "rest"]
    assert p.duration_s == pytest.approx(0.25 + 4 * 5.0)
    performs = [s for s in p.segments if s.phase == "perform"]
    for seg, act in zip(performs, p.actions, strict=True):
        assert seg.t_start_s <= act.t_start_s and act.t_end_s <= seg.t_end_s and act.au == seg.au
    m = p.markers(t0_ns=1_000)
    assert len(m) == len(p.segments) + 1 and m[-1]["phase"] == "done"
    assert m[0] == {"stamp_ns": 1_000 + 250_000_000, "session": "sim", "subject": "S07", "run": "main",
                    "au": 12, "trial": 1, "phase": "demo", "segment": "S07_AU12_t1"}
    assert p.segment_at(0.25 + 1.6).phase == "countdown" and p.segment_at(100.0) is None
    full = protocol_timeline()
    assert len({s.au for s in full.segments}) == 21
    with pytest.raises(SimError, match="trials"):
        protocol_timeline(trials=0)


# --------------------------------------------------------------------------------------------- sensors


def _ideal(**kw) -> EventSensorParams:
    base = dict(name="ideal", width=4, height=2, frame_id="t", c_on=0.25, c_off=0.25, c_sigma=0.0, c_min=0.01,
                refractory_us=0.0, ba_rate_hz=0.0, hot_fraction=0.0, leak_rate_hz=0.0, cutoff_hz=1e12, dark=0.0)
    base.update(kw)
    return EventSensorParams(**base)


def _exact_sensor(**kw) -> EventSensor:
    s = EventSensor(_ideal(**kw), (0, 0, 4, 2), lux=1000.0, seed=0)
    s.reset(np.full((2, 4), 0.1, np.float32), 0.0)
    s.ref[:] = s.lp  # no random reset offset: hand-computable crossings
    return s


def test_event_sensor_golden_crossing_times():
    s = _exact_sensor()
    up = s.step(np.full((2, 4), 0.1 * math.exp(0.6), np.float64), 1000.0)
    # log step of 0.6 over 1000 us crosses 0.25 at 416.7 us and 0.50 at 833.3 us in every pixel
    assert len(up) == 16 and (up["p"] == 1).all()
    assert sorted(set(up["t"].tolist())) == [416, 833]
    assert sorted(set(zip(up["x"].tolist(), up["y"].tolist(), strict=True))) == [(x, y) for x in range(4)
                                                                                 for y in range(2)]
    down = s.step(np.full((2, 4), 0.1 * math.exp(-0.05), np.float64), 2000.0)
    # from +0.6 to -0.05 (ref at +0.5): OFF at +0.25 (1538.5 us) and 0.0 (1923.1 us)
    assert len(down) == 16 and (down["p"] == 0).all()
    assert sorted(set(down["t"].tolist())) == [1538, 1923]
    assert s.step(np.full((2, 4), 0.1 * math.exp(-0.05)), 3000.0).dtype == EVENT_DTYPE  # no change, no event
    assert len(s.step(np.full((2, 4), 0.1 * math.exp(-0.05)), 4000.0)) == 0


def test_event_sensor_refractory_and_errors():
    s = _exact_sensor(refractory_us=500.0)
    ev = s.step(np.full((2, 4), 0.1 * math.exp(0.6)), 1000.0)
    assert len(ev) == 8 and set(ev["t"].tolist()) == {416}  # the 833 us crossing is within 500 us
    with pytest.raises(SimError, match="backwards"):
        s.step(np.full((2, 4), 0.1), 500.0)
    with pytest.raises(SimError, match="shape"):
        s.step(np.full((3, 4), 0.1), 2000.0)
    with pytest.raises(SimError, match="inside"):
        EventSensor(_ideal(), (2, 0, 4, 2))
    with pytest.raises(SimError, match="before reset"):
        EventSensor(_ideal(), (0, 0, 4, 2)).step(np.full((2, 4), 0.1), 1.0)
    with pytest.raises(SimError, match="illuminance"):
        EventSensor(_ideal(), (0, 0, 4, 2), lux=0.0)


def test_event_sensor_buffer_growth_keeps_every_event():
    s = EventSensor(_ideal(width=300, height=200), (0, 0, 300, 200), lux=1000.0, seed=0)
    s.reset(np.full((200, 300), 0.01), 0.0)
    s.ref[:] = s.lp
    ev = s.step(np.full((200, 300), 0.01 * math.exp(4.1)), 1000.0)  # 16 crossings per pixel
    assert len(ev) == 16 * 300 * 200 and s.dropped == 0


def test_noise_rate_follows_lux():
    p = _ideal(width=346, height=260, ba_rate_hz=1.0, ba_lux_exponent=0.8)
    bright = EventSensor(p, (0, 0, 4, 2), lux=1000.0, seed=1).noise(0, 1_000_000)
    dim = EventSensor(p, (0, 0, 4, 2), lux=150.0, seed=1).noise(0, 1_000_000)
    npix = 346 * 260
    assert len(bright) == pytest.approx(npix, rel=0.02)
    assert len(dim) == pytest.approx(npix * (1000 / 150) ** 0.8, rel=0.02)
    assert bright["x"].max() < 346 and bright["y"].max() < 260
    assert (bright["t"] >= 0).all() and (bright["t"] < 1_000_000).all()
    assert len(EventSensor(_ideal(), (0, 0, 4, 2)).noise(0, 1000)) == 0


def test_geometry_and_homography():
    g = default_geometry()
    d, e = g["davis"], g["evk4"]
    H = homography(d, e, 0.8)
    # a point on the face plane seen by both cameras maps exactly
    p = (0.03, -0.02, 0.8)
    u, v = d.project(p)
    q = H @ np.array([u, v, 1.0])
    assert q[:2] / q[2] == pytest.approx(e.project(p), abs=1e-9)
    assert np.allclose(homography(d, d, 0.8), np.eye(3))
    with pytest.raises(SimError, match="front"):
        homography(d, e, -1.0)


def test_frame_sensors_and_imu():
    aps = ApsSensor(346, 260, lux=600.0, seed=0)
    aps.set_background(np.full((260, 346), 0.5, np.float32))
    f = aps.frame(np.full((10, 10, 1), 1.0, np.float32), (5, 5))
    assert f.shape == (260, 346) and f.dtype == np.uint8
    assert f[6:14, 6:14].mean() > f[100:200, 100:200].mean() + 50
    dim = ApsSensor(346, 260, lux=150.0, seed=0)
    assert dim.exposure_us > aps.exposure_us
    w = WebcamSensor(WebcamParams(width=64, height=48), lux=600.0, seed=0)
    w.set_background(np.full((48, 64, 3), 0.2, np.float32))
    img = w.frame(np.ones((4, 4, 3), np.float32), (0, 0))
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8 and img[:4, :4].mean() > 240
    noisy = WebcamSensor(WebcamParams(width=64, height=48, fps=60), lux=150.0, seed=0)
    assert noisy.gain > w.gain
    imu = ImuModel(seed=0)
    t, acc, gyr = imu.samples(0, 10_000)
    assert t.tolist() == list(range(0, 10_000, 1000))
    assert np.linalg.norm(acc, axis=1) == pytest.approx(9.81, abs=0.3)
    assert np.abs(gyr).max() < 0.05


# ------------------------------------------------------------------------------------------------- rig


@pytest.fixture(scope="module")
def stream_items():
    rig = SimRig(1, lux=600.0, timeline=[(0.02, 12, 1.0, 0.2)], seed=0)
    return rig, list(rig.stream(packet_period_ms=10.0, duration_s=0.1))


def test_stream_items_are_time_ordered_and_well_formed(stream_items):
    rig, items = stream_items
    kinds = [it[0] for it in items]
    assert kinds.count("truth") == 10 and kinds.count("davis") == 10 and kinds.count("evk4") == 10
    assert kinds.count("davis_imu") == 100 and kinds.count("davis_aps") == 3 and kinds.count("webcam") == 3

    def stamp(it):
        return it[1].t_start if isinstance(it[1], EventPacket) else it[1]

    stamps = [stamp(it) for it in items]
    assert stamps == sorted(stamps)
    for it in items:
        if it[0] in ("davis", "evk4"):
            pk = it[1]
            pk.validate()
            assert (pk.width, pk.height) == rig.sensor_size(it[0])
            if len(pk):
                assert pk.t_start <= pk.events["t"].min() and pk.events["t"].max() < pk.t_end
            assert pk.frame_id == ("davis346_optical" if it[0] == "davis" else "evk4_optical")
        elif it[0] == "davis_aps":
            assert it[2].shape == (260, 346) and it[2].dtype == np.uint8
        elif it[0] == "webcam":
            assert it[2].shape == (1080, 1920, 3) and it[2].dtype == np.uint8
        elif it[0] == "davis_imu":
            assert it[2].shape == (3,) and it[3].shape == (3,)


def test_stream_truth_boxes_differ_per_camera_and_agree_through_homography(stream_items):
    rig, items = stream_items
    truth = [it[2] for it in items if it[0] == "truth"]
    assert truth[0].activations.shape == (NUM_AUS,)
    assert max(t.activations[au_index(12)] for t in truth) > 0.5
    assert any(t.performed == (12,) for t in truth)
    boxes = truth[0].face_boxes
    assert set(boxes) == {"davis", "evk4", "webcam"}
    wd = boxes["davis"][2] - boxes["davis"][0]
    we = boxes["evk4"][2] - boxes["evk4"][0]
    assert we > 2.5 * wd  # EVK4 sees the face larger
    c = np.array([(boxes["davis"][0] + boxes["davis"][2]) / 2, (boxes["davis"][1] + boxes["davis"][3]) / 2, 1])
    q = rig.homography("davis", "evk4") @ c
    ce = ((boxes["evk4"][0] + boxes["evk4"][2]) / 2, (boxes["evk4"][1] + boxes["evk4"][3]) / 2)
    assert q[:2] / q[2] == pytest.approx(ce, abs=0.03 * we)


def test_rig_rejects_bad_arguments():
    with pytest.raises(SimError, match="cameras"):
        SimRig(0, cameras=("davis", "kinect"))
    with pytest.raises(SimError, match="illuminance"):
        SimRig(0, cameras=("davis",), lux=0.0)
    rig = SimRig(0, cameras=("davis",), aps=False, imu=False)
    with pytest.raises(SimError, match="packet period"):
        next(rig.stream(packet_period_ms=0.0))
    with pytest.raises(SimError, match="not part"):
        rig.face_box("evk4", 0.0)


# ----------------------------------------------------------------------------------------------- clips


def test_render_clip_is_deterministic_sorted_and_inside_the_sensor():
    a = render_clip(2, 45, duration_s=0.6, seed=1, render_hz=120.0)
    b = render_clip(2, 45, duration_s=0.6, seed=1, render_hz=120.0)
    assert _fields(a.events) == _fields(b.events)
    assert a.events.dtype == EVENT_DTYPE
    validate_events(a.events, a.width, a.height)
    assert a.events["t"].min() >= 0 and a.events["t"].max() < a.duration_us
    assert (a.au, a.label, a.camera) == (45, au_index(45), "davis")
    assert 0.1 <= a.action.duration_s <= 0.5  # a performed blink: take_duration_range_s(45)
    c = render_clip(2, 45, duration_s=0.6, seed=2, render_hz=120.0)
    assert _fields(c.events) != _fields(a.events)
    assert a.truth_au.shape == (len(a.truth_t_us), NUM_AUS)


def test_rates_are_plausible_and_lux_changes_noise():
    bright = render_clip(0, 26, duration_s=0.6, lux=1400.0, render_hz=120.0)
    dim = render_clip(0, 26, duration_s=0.6, lux=150.0, render_hz=120.0)
    sb = event_stats(bright.events, bright.width, bright.height, 0.6, bright.face_box)
    sd = event_stats(dim.events, dim.width, dim.height, 0.6, dim.face_box)
    # DAVIS346 background activity: about 0.1-1 Hz per pixel indoors, more in dim light
    assert 0.03 < sb.noise_rate_hz_px < 0.5 and 0.3 < sd.noise_rate_hz_px < 3.0
    assert sd.noise_rate_hz_px > 3.0 * sb.noise_rate_hz_px
    # a jaw drop makes far more events in the face box than a still face's background
    assert sb.box_rate_ev_s > 5_000
    assert 0.35 < sb.on_fraction < 0.7


def test_head_turn_gives_more_events_than_gaze_shift():
    turn = render_clip(3, 51, duration_s=0.6, render_hz=120.0)
    gaze = render_clip(3, 61, duration_s=0.6, render_hz=120.0)
    box = turn.face_box
    n_turn = event_stats(turn.events, 346, 260, 0.6, box).box_rate_ev_s
    n_gaze = event_stats(gaze.events, 346, 260, 0.6, box).box_rate_ev_s
    assert n_turn > 2 * n_gaze


def test_render_clip_frames_and_webcam():
    clip = render_clip(4, 12, duration_s=0.6, frames=True, render_hz=100.0)
    assert len(clip.frames) == 15 and clip.frames[0][1].shape == (260, 346)
    web = render_clip(4, 12, camera="webcam", duration_s=0.6, frames=True)
    assert len(web.events) == 0 and len(web.frames) == 18 and web.frames[0][1].shape == (1080, 1920, 3)
    with pytest.raises(SimError, match="camera"):
        render_clip(4, 12, camera="kinect")
    with pytest.raises(SimError, match="too short"):
        render_clip(4, 43, duration_s=0.3)


def test_all_aus_render():
    # every AU is a valid clip label and changes the controls of the face
    for a in AUS:
        tl = Timeline([(0.1, a.number, 1.0, 0.3)], background=Background(enabled=False))
        assert tl.controls(0.2)[au_index(a.number)] > 0.5


def test_stream_is_deterministic_and_follows_a_protocol():
    proto = protocol_timeline(aus=[26], perform_s=0.6, rest_s=0.1, demo_s=0.1, countdown_s=0.1, start_s=0.0)

    def run():
        rig = SimRig(5, cameras=("davis",), timeline=proto, seed=3)
        return list(rig.stream(packet_period_ms=20.0, duration_s=0.3))

    a, b = run(), run()
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[0] == y[0]
        if x[0] == "davis":
            assert _fields(x[1].events) == _fields(y[1].events)
        elif x[0] == "davis_aps":
            assert x[2].tobytes() == y[2].tobytes()
        elif x[0] == "davis_imu":
            assert np.array_equal(x[2], y[2]) and np.array_equal(x[3], y[3])
    phases = [it[2].phase for it in a if it[0] == "truth"]
    assert phases[0] == "demo" and "countdown" in phases and "perform" in phases
    assert {it[2].segment for it in a if it[0] == "truth"} == {"S01_AU26_t1"}


# --------------------------------------------------------------------------------------------- realism


def test_event_stats_golden_and_frame():
    from ros2_evmicro.core.events import make_events

    ev = make_events([0, 1, 9, 9], [0, 0, 9, 9], [1, 0, 1, 1], [0, 10, 20, 30])
    st = event_stats(ev, 10, 10, 2.0, box=(0, 0, 2, 1))
    assert st.n == 4 and st.rate_ev_s == 2.0 and st.on_fraction == 0.75
    assert st.box_rate_ev_s == 1.0  # 2 events inside the (widened) box over 2 s
    assert st.noise_rate_hz_px == pytest.approx(2 / (100 - 2.2 * 1.1) / 2.0)  # box widened by 10 %
    assert st.active_pixel_fraction == pytest.approx(3 / 100)
    img = event_frame(ev, 10, 10, 5, 25)
    assert img.shape == (10, 10, 3) and tuple(img[0, 1]) == (200, 60, 0) and tuple(img[9, 9]) == (0, 0, 220)
    assert tuple(img[0, 0]) == (255, 255, 255)  # t=0 is before the window
    with pytest.raises(SimError, match="duration"):
        event_stats(ev, 10, 10, 0.0)


def test_rate_table_per_au_and_lux():
    rows = rate_table(0, aus=[26, 61], lux_levels=(150.0, 1400.0), duration_s=0.6, render_hz=100.0)
    assert [(r["au"], r["lux"]) for r in rows] == [(26, 150.0), (61, 150.0), (26, 1400.0), (61, 1400.0)]
    by = {(r["au"], r["lux"]): r for r in rows}
    assert by[(26, 1400.0)]["box_rate_ev_s"] > by[(61, 1400.0)]["box_rate_ev_s"]
    assert by[(61, 150.0)]["noise_rate_hz_px"] > 3 * by[(61, 1400.0)]["noise_rate_hz_px"]


@pytest.mark.slow
def test_comparison_png_with_real_davis(tmp_path):
    aedat = real_file("davis346_aedat4/davis346_sample.aedat4")
    video = real_file("rgb_face_video/face_closeup_528x592.mp4")
    stats = write_comparison_png(tmp_path / "cmp.png", real_aedat=aedat, real_video=video)
    img = cv2.imread(stats["path"])
    assert img is not None and img.shape[0] == 260 + 360 and img.shape[1] >= 4 * 300
    # simulated and real event windows have the same order of density and a mixed polarity
    sim, real = stats["sim"], stats["real"]
    assert 0.1 < sim["rate_ev_s"] / real["rate_ev_s"] < 10
    assert 0.3 < sim["on_fraction"] < 0.75 and 0.3 < real["on_fraction"] < 0.8

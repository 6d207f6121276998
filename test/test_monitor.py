"""Driver monitor logic (ros2_evmicro.core.monitor) on hand-made AU score sequences."""

from __future__ import annotations

import numpy as np
import pytest

from ros2_evmicro.core.au import NUM_AUS, au_index
from ros2_evmicro.core.monitor import (
    Activation,
    AuActivity,
    DriverMonitor,
    LevelTracker,
    MonitorError,
    Onset,
    format_event,
    normalise,
)

FRAME_NS = 33_333_333  # 30 Hz
SHARP = {"closure_spread_ms": 0.0}
"""The scripted scores below switch on and off at once (no sliding window): no spread to remove from closures."""


def scripted(duration_s: float, actions=(), seed: int = 0, noise: float = 0.1, level: float = 0.85):
    """AU score sequence at 30 Hz: uniform noise in [0, noise) plus ``actions`` (au, t0_s, dur_s) held at
    about ``level`` (+- 0.05). Returns (times_ns (N,), scores (N, 21)).

    The SNN's scores are voting rates trained towards one-hot targets, near 0 at rest; 0.1 of noise on each AU
    keeps the three pooled lid AUs (0.3 at most) under the off threshold."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * 1e9 / FRAME_NS))
    t = np.arange(n, dtype=np.int64) * FRAME_NS
    s = rng.uniform(0.0, noise, (n, NUM_AUS))
    ts = t / 1e9
    for au, t0, dur in actions:
        on = (ts >= t0) & (ts < t0 + dur)
        s[on, au_index(au)] = rng.uniform(level - 0.05, level + 0.05, int(on.sum()))
    return t, s


def feed(mon: DriverMonitor, t, s, t_offset_ns: int = 0):
    events, levels = [], []
    for ti, si in zip(t, s, strict=True):
        events += mon.update(int(ti) + t_offset_ns, si)
        levels.append(dict(mon.levels))
    return events, levels


def blinks(t0: float, t1: float, period_s: float, dur_s: float, au: int = 45):
    return [(au, float(x), dur_s) for x in np.arange(t0, t1, period_s)]


def level_events(events, name):
    return [(round(e["t"], 2), e["previous"], e["level"]) for e in events if e["kind"] == name]


# -- activations ------------------------------------------------------------------------------------------

def _one_au(values, **kw):
    act = AuActivity(**kw)
    onsets, ended = [], []
    i = au_index(12)
    for k, v in enumerate(values):
        s = np.zeros(NUM_AUS)
        s[i] = v
        o, e = act.update(k * 10, s)
        onsets += o
        ended += e
    return act, onsets, ended


def test_activity_hysteresis_and_debounce_golden():
    act, onsets, ended = _one_au([0.1, 0.6, 0.45, 0.4, 0.3, 0.6, 0.1, 0.5, 0.5, 0.5])
    i = au_index(12)
    # 0.6 starts at t=10; confirmed at t=20 (2nd sample, 0.45 >= off); 0.3 < off ends it at t=40;
    # the one-sample spike at t=50 never counts; 0.5 from t=70 is confirmed at t=80 and still active
    assert onsets == [Onset(i, 10, 20, 0.45), Onset(i, 70, 80, 0.5)]
    assert ended == [Activation(i, 10, 40, 0.6)]
    assert ended[0].duration_ms == pytest.approx(30e-6)
    assert ended[0].code == "AU12" and ended[0].name == "Lip Corner Puller"
    assert act.active[i] and act.confirmed[i]
    assert act.flush(95) == [Activation(i, 70, 95, 0.5)]
    assert not act.active.any()


def test_activity_single_frame_and_argmax_mode():
    _, onsets, ended = _one_au([0.6, 0.1], min_active_frames=1)
    assert [o.t_ns for o in onsets] == [0] and [(a.start_ns, a.end_ns) for a in ended] == [(0, 10)]
    act = AuActivity(min_active_frames=1, onset_mode="argmax", argmax_margin=0.1)
    s = np.zeros(NUM_AUS)
    s[au_index(12)], s[au_index(6)] = 0.8, 0.75  # lead 0.05 < margin: nothing starts
    assert act.update(0, s) == ([], [])
    s[au_index(6)] = 0.6  # lead 0.2: only the arg-max starts
    onsets, _ = act.update(1, s)
    assert [o.code for o in onsets] == ["AU12"]


@pytest.mark.parametrize("kw, match", [
    ({"on_threshold": 0.3, "off_threshold": 0.5}, "off_threshold <= on_threshold"),
    ({"onset_mode": "vote"}, "onset_mode"),
    ({"min_active_frames": 0}, "min_active_frames"),
])
def test_activity_rejects_bad_settings(kw, match):
    with pytest.raises(MonitorError, match=match):
        AuActivity(**kw)


# -- levels -----------------------------------------------------------------------------------------------

def test_normalise_golden():
    assert normalise(0.075, 0.15, 0.3) == pytest.approx(0.5)
    assert normalise(0.15, 0.15, 0.3) == pytest.approx(1.0)
    assert normalise(0.225, 0.15, 0.3) == pytest.approx(1.5)
    assert normalise(0.45, 0.15, 0.3) == pytest.approx(3.0)
    assert normalise(float("nan"), 0.15, 0.3) == 0.0
    assert normalise(-1.0, 0.15, 0.3) == 0.0


def test_level_tracker_hysteresis_and_hold_golden():
    tr = LevelTracker(hysteresis=0.2, hold_s=1.0)
    s = 1_000_000_000
    steps = [(0.0, 0.5, None), (1.0, 1.0, 1), (1.5, 0.85, None),  # 0.85 >= 1 - 0.2: stays WARN
             (1.9, 0.7, None),  # below 0.8 but held only 0.9 s
             (2.5, 0.7, 0), (3.0, 2.5, 2),  # up at once
             (3.5, 0.1, None),  # hold
             (4.1, 0.1, 0),  # ERROR straight to OK
             (4.2, 1.9, 1), (5.5, 1.85, None)]  # WARN entered, 1.85 < 2: stays WARN
    for t, score, want in steps:
        assert tr.update(int(t * s), score) == want, (t, score)
    assert tr.level == 1


# -- drowsiness -------------------------------------------------------------------------------------------

def test_normal_blinking_stays_ok():
    t, s = scripted(90.0, blinks(1.0, 90.0, 60 / 17, 0.15), seed=1)
    mon = DriverMonitor(SHARP)
    events, levels = feed(mon, t, s)
    assert all(lv == {"drowsiness": "OK", "distraction": "OK"} for lv in levels)
    kinds = [e["kind"] for e in events]
    assert kinds.count("blink") == len(blinks(1.0, 90.0, 60 / 17, 0.15))  # every blink ends before 90 s
    a = mon.status()["drowsiness"]
    assert 15.0 <= a.values["blink_rate_per_min"] <= 19.0
    assert 100.0 <= a.values["blink_ms_mean"] <= 200.0
    assert a.values["perclos"] < 0.06
    assert a.level == "OK" and a.score < 0.6
    assert "long_blink" not in kinds


def test_drowsy_segment_warn_then_error_then_recovery_with_hysteresis():
    # 20 s normal blinks, 40 s of 700 ms blinks every 3 s, then 80 s normal again; 30 s window
    acts = blinks(1.0, 20.0, 3.5, 0.15) + blinks(20.0, 60.0, 3.0, 0.7) + blinks(61.0, 140.0, 3.5, 0.15)
    t, s = scripted(140.0, acts, seed=2)
    mon = DriverMonitor({"window_s": 30.0, "warmup_s": 10.0})
    events, levels = feed(mon, t, s)
    changes = level_events(events, "drowsiness")
    assert [c[1:] for c in changes[:2]] == [("OK", "WARN"), ("WARN", "ERROR")]
    t_warn, t_error = changes[0][0], changes[1][0]
    assert 20.0 < t_warn < t_error < 60.0
    # back to OK only after the long blinks have left the window (last one ends at 57.7 s, window 30 s)
    downs = [c for c in changes if c[2] != "ERROR" and c[1] != "OK"]
    assert downs and downs[-1][2] == "OK"
    assert downs[0][0] > 60.0
    assert 75.0 < downs[-1][0] < 95.0
    # no flicker: once falling, the level never rises again
    i_first_down = changes.index(downs[0])
    assert all(c[2] != "ERROR" and not (c[1] == "OK") for c in changes[i_first_down:])
    assert levels[-1]["drowsiness"] == "OK"
    n_long = sum(1 for e in events if e["kind"] == "long_blink")
    assert n_long == len(blinks(20.0, 60.0, 3.0, 0.7))
    assert all(e["duration_ms"] > 400 for e in events if e["kind"] == "long_blink")
    assert mon.levels["distraction"] == "OK"


def test_eye_closure_is_a_microsleep_error():
    t, s = scripted(8.0, [(43, 3.0, 2.5)], seed=3)
    mon = DriverMonitor(SHARP)
    events, levels = feed(mon, t, s)
    closed = [e for e in events if e["kind"] == "eyes_closed"]
    assert len(closed) == 1 and closed[0]["t"] == pytest.approx(4.0, abs=0.1)
    changes = level_events(events, "drowsiness")
    assert changes[:2] == [(pytest.approx(4.0, abs=0.1), "OK", "WARN"), (pytest.approx(5.0, abs=0.1), "WARN",
                                                                           "ERROR")]
    assert "eyes closed" in [e for e in events if e["kind"] == "drowsiness"][-1]["reason"]


def test_supporting_aus_add_evidence_but_never_warn_alone():
    acts = [(15, float(x), 1.0) for x in np.arange(0.0, 30.0, 2.5)]  # AU15 active 40 % of the time
    t, s = scripted(30.0, acts, seed=4)
    mon = DriverMonitor({"warmup_s": 0.0})
    events, levels = feed(mon, t, s)
    a = mon.status()["drowsiness"]
    assert a.values["support_fraction"] == pytest.approx(0.4, abs=0.03)
    assert a.score == pytest.approx(0.3, abs=1e-9)  # no primary indicator + one piece of support
    assert "drowsiness AUs" in a.reason
    assert all(lv["drowsiness"] == "OK" for lv in levels)


def test_lid_aus_are_pooled_into_one_eye_closure_channel():
    # a long closure whose votes the model spreads over AU41, AU43 and AU45 (none reaches on_threshold alone)
    t, s = scripted(6.0, seed=7, noise=0.05)
    on = (t >= 2.0e9) & (t < 2.6e9)
    for au in (41, 43, 45):
        s[on, au_index(au)] = 0.3
    events, _ = feed(DriverMonitor(SHARP), t, s)
    blink = [e for e in events if e["kind"] in ("blink", "long_blink")]
    assert [e["kind"] for e in blink] == ["blink", "long_blink"]
    assert blink[0]["duration_ms"] == pytest.approx(600, abs=40) and blink[0]["peak"] == pytest.approx(0.9)
    # AU45 alone: the same votes are no blink at all
    events, _ = feed(DriverMonitor({"closure_aus": [45]}), t, s)
    assert not [e for e in events if e["kind"] in ("blink", "long_blink")]
    # and a blink scored on AU45 alone still counts with the pooled channel
    t, s = scripted(4.0, [(45, 1.0, 0.2)], seed=8)
    mon = DriverMonitor(SHARP)
    events, _ = feed(mon, t, s)
    assert [e["kind"] for e in events if "blink" in e["kind"]] == ["blink"]
    assert 0.0 <= mon.status()["drowsiness"].values["closure_score"] <= 1.0
    with pytest.raises(MonitorError, match="closure_aus"):
        DriverMonitor({"closure_aus": []})
    with pytest.raises(MonitorError, match="closure_spread_ms"):
        DriverMonitor({"closure_spread_ms": -1.0})
    with pytest.raises(MonitorError, match="closure_aus"):
        DriverMonitor({"closure_aus": [44]})


def test_closure_spread_of_the_stream_is_removed_from_every_closure():
    # the AU stream holds a 450 ms closure for 650 ms (its window): with the default 200 ms spread it is a
    # 450 ms long blink, with no correction 650 ms; a 300 ms activation (a 100 ms blink) is no long blink
    t, s = scripted(6.0, [(45, 1.0, 0.65), (45, 3.0, 0.3)], seed=9)
    mon = DriverMonitor()
    assert mon.p.closure_spread_ms == 200.0
    events, _ = feed(mon, t, s)
    blinks_ = [e for e in events if e["kind"] == "blink"]
    frame_ms = FRAME_NS / 1e6  # durations are whole sample periods
    assert [e["duration_ms"] for e in blinks_] == [pytest.approx(450, abs=frame_ms), pytest.approx(100, abs=frame_ms)]
    assert [e["active_ms"] - e["duration_ms"] for e in blinks_] == [pytest.approx(200.0)] * 2
    assert len([e for e in events if e["kind"] == "long_blink"]) == 1
    # the ongoing closure too: a 1.5 s activation is a 1.3 s closure, reported when it reaches 1 s
    t, s = scripted(5.0, [(43, 1.0, 1.5)], seed=10)
    events, _ = feed(DriverMonitor(), t, s)
    closed = [e for e in events if e["kind"] == "eyes_closed"]
    assert len(closed) == 1 and closed[0]["t"] == pytest.approx(2.2, abs=2 * FRAME_NS / 1e9)


def test_closing_and_reopening_seen_apart_are_one_closure():
    # a 1.4 s closure as an event camera sees it: the lid closing (300 ms of activation), silence, the lid
    # reopening (300 ms); the 350 ms gap is under closure_gap_ms (400): one long closure, not two blinks
    t, s = scripted(6.0, [(45, 1.0, 0.3), (43, 1.65, 0.3)], seed=11)
    events, levels = feed(DriverMonitor(SHARP), t, s)
    blink = [e for e in events if e["kind"] == "blink"]
    assert len(blink) == 1 and blink[0]["duration_ms"] == pytest.approx(950, abs=2 * FRAME_NS / 1e6)
    assert [e["kind"] for e in events if e["kind"] == "long_blink"] == ["long_blink"]
    # the blink is counted once the gap has passed without another activation
    assert blink[0]["t"] == pytest.approx(1.95 + 0.4, abs=2 * FRAME_NS / 1e9)
    # the same two activations further apart are two short blinks; closure_gap_ms 0 never bridges
    t, s = scripted(6.0, [(45, 1.0, 0.3), (43, 1.9, 0.3)], seed=11)
    assert [round(e["duration_ms"], -2) for e in feed(DriverMonitor(SHARP), t, s)[0] if e["kind"] == "blink"] \
        == [300, 300]
    t, s = scripted(6.0, [(45, 1.0, 0.3), (43, 1.65, 0.3)], seed=11)
    assert len([e for e in feed(DriverMonitor({**SHARP, "closure_gap_ms": 0.0}), t, s)[0]
                if e["kind"] == "blink"]) == 2


# -- distraction ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dip", [False, True])
def test_head_turn_held_3s_is_a_distraction_warning(dip):
    acts = [(51, 2.0, 1.4), (51, 3.6, 1.4)] if dip else [(51, 2.0, 3.0)]  # dip: 200 ms gap < away_gap_ms
    t, s = scripted(10.0, acts, seed=5)
    mon = DriverMonitor()
    events, levels = feed(mon, t, s)
    look = [e for e in events if e["kind"] == "look_away"]
    assert len(look) == 1
    assert look[0]["au"] == "AU51" and look[0]["source"] == "head"
    assert look[0]["t"] == pytest.approx(4.0, abs=0.1)
    changes = level_events(events, "distraction")
    assert changes[0][1:] == ("OK", "WARN") and changes[0][0] == pytest.approx(4.0, abs=0.1)
    assert all(lv["distraction"] != "ERROR" for lv in levels)
    assert max(lv["distraction"] == "WARN" for lv in levels)
    assert changes[-1][2] == "OK"  # head back at 5 s, level released after the hold
    assert all(lv["drowsiness"] == "OK" for lv in levels)


def test_brief_glances_stay_ok():
    acts = [(62, 1.0, 1.0), (61, 4.0, 1.2), (64, 7.0, 0.8), (52, 9.0, 1.5)]
    t, s = scripted(12.0, acts, seed=6)
    mon = DriverMonitor()
    events, levels = feed(mon, t, s)
    assert not [e for e in events if e["kind"] in ("look_away", "distraction")]
    a = mon.status()["distraction"]
    assert a.values["away_total_s"] == pytest.approx(4.5, abs=0.15)
    assert all(lv["distraction"] == "OK" for lv in levels)


def test_head_turn_held_5s_is_an_error():
    t, s = scripted(8.0, [(53, 1.0, 5.0)], seed=7)
    events, _ = feed(DriverMonitor(), t, s)
    assert [c[1:] for c in level_events(events, "distraction")][:2] == [("OK", "WARN"), ("WARN", "ERROR")]


# -- input and configuration ------------------------------------------------------------------------------

def test_bad_scores_rejected():
    mon = DriverMonitor()
    with pytest.raises(MonitorError, match="21 values"):
        mon.update(0, np.zeros(20))
    with pytest.raises(MonitorError, match="finite"):
        mon.update(0, np.full(NUM_AUS, np.nan))
    assert mon.update(0, np.full(NUM_AUS, 2.0)) == []  # clipped to 1, accepted
    assert mon.activity.active.all()


@pytest.mark.parametrize("params, match", [
    ({"on_threshold": 0.3, "off_threshold": 0.4}, "off_threshold=0.4 must be below on_threshold"),
    ({"perclos_warn": 0.5, "perclos_error": 0.4}, "perclos_warn"),
    ({"long_blinks_warn_per_min": 0.0}, "long_blinks_warn_per_min must be > 0"),
    ({"support_aus": [2, 3]}, "unknown Action Unit"),
    ({"window": 3}, "unknown parameter"),
    ({"window_s": -1.0}, "out of range"),
])
def test_bad_parameters_rejected(params, match):
    with pytest.raises(MonitorError, match=match):
        DriverMonitor(params)


def test_time_going_back_is_ignored_or_resets():
    mon = DriverMonitor()
    t, s = scripted(3.0, [(51, 0.5, 2.0)], seed=8)
    feed(mon, t, s)
    n = mon.n_samples
    assert mon.update(int(t[-1]), s[-1]) == []  # duplicate stamp: ignored
    assert mon.update(int(t[-1]) - 500_000_000, s[-1]) == []  # small step back: ignored
    assert mon.n_samples == n
    ev = mon.update(int(t[-1]) - 2_000_000_000, np.zeros(NUM_AUS))  # a looped bag
    assert [e["kind"] for e in ev] == ["reset"]
    assert mon.n_samples == 1 and mon.status()["distraction"].values["away_total_s"] == 0.0


def test_runtime_configure_keeps_history():
    t, s = scripted(6.0, [(51, 1.0, 2.5)], seed=9)
    mon = DriverMonitor()
    feed(mon, t[:60], s[:60])  # 2 s in, head away for 1 s
    assert mon.levels["distraction"] == "OK"
    mon.configure({"away_warn_s": 1.0, "away_error_s": 5.0})
    events, _ = feed(mon, t[60:], s[60:])
    assert level_events(events, "distraction")[0][1:] == ("OK", "WARN")
    with pytest.raises(MonitorError):
        mon.configure({"away_warn_s": 9.0, "away_error_s": 5.0})
    assert mon.p.away_warn_s == 1.0


def test_format_event():
    assert format_event({"t": 12.345, "kind": "long_blink", "message": "long blink 520 ms"}) == \
        "t=12.3s long_blink: long blink 520 ms"
    assert format_event({"kind": "reset"}) == "reset"

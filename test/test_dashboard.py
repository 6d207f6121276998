"""Dashboard composition and summary (ros2_evmicro.core.dashboard)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ros2_evmicro.core.au import NUM_AUS, au_index
from ros2_evmicro.core.dashboard import (
    AuHistory,
    DashboardError,
    StampMatcher,
    _bar_geometry,
    _layout_and_static,
    au_heatmap,
    compose_dashboard,
    event_frame_bgr,
    fit_image,
    latency_stats,
    write_summary,
)


def _rect(img, r):
    x, y, w, h = r
    return img[y:y + h, x:x + w]


def _inputs(rng):
    ev = np.zeros((2, 64, 64), np.float32)
    ev[1, 10:20, 10:20] = 3.0  # ON block only
    face = np.full((90, 70), 120, np.uint8)
    recon = (rng.random((64, 64)) * 255).astype(np.uint8)
    t = np.arange(300) / 30.0
    hist = np.zeros((300, NUM_AUS), np.float32)
    hist[-60:, au_index(12)] = 0.9
    return ev, face, recon, hist, t


def test_compose_empty_and_sizes():
    img = compose_dashboard()
    assert img.shape == (720, 1280, 3) and img.dtype == np.uint8
    small = compose_dashboard(size=(960, 540))
    assert small.shape == (540, 960, 3) and small.dtype == np.uint8
    # an empty input draws the same frame as None, and the composite is writable (not the cached layer)
    np.testing.assert_array_equal(compose_dashboard(event_frame=np.zeros((2, 0, 0)), au_history=np.zeros((0, 21)),
                                                    au_times=np.zeros(0)), img)
    img[0, 0] = 7
    assert compose_dashboard()[0, 0].tolist() != [7, 7, 7]


def test_compose_panels_show_their_inputs(rng):
    ev, face, recon, hist, t = _inputs(rng)
    alerts = [{"t": 5.0, "kind": "drowsiness", "level": "WARN", "message": "OK -> WARN: long blinks"}]
    img = compose_dashboard(ev, face, recon, hist, t, alerts, 29.9, {"event->AU": (30.0, 55.0)},
                            levels={"drowsiness": "WARN", "distraction": "OK"})
    empty = compose_dashboard()
    lay, _ = _layout_and_static(1280, 720, 10.0, 0.5, "face", "ros2_evmicro | driver monitor")
    ev_p, face_p, rec_p = (_rect(img, r) for r in lay.images)
    # event panel: red (ON) present, no blue (OFF)
    red = (ev_p[..., 2] > 200) & (ev_p[..., 0] == 0)
    assert red.sum() > 100
    assert (ev_p[..., 0] > 0).sum() == 0
    # face: its grey level fills a region; recon: varied texture; both differ from the "no data" panels
    assert (np.abs(face_p.astype(int) - 120).max(axis=2) == 0).sum() > 1000
    assert rec_p.std() > 30 and _rect(empty, lay.images[2]).std() < 20
    # strip chart: the AU12 row bright at the right end, other rows dark
    strip = _rect(img, lay.strip)
    row_h = strip.shape[0] / NUM_AUS
    r12 = strip[int((au_index(12) + 0.5) * row_h), -5]
    r2 = strip[int(0.5 * row_h), -5]
    assert int(r12.sum()) > 300 and int(r2.sum()) < 60
    # AU bars: AU12's bar is drawn in the active colour up to 0.9 of the bar
    g = _bar_geometry(lay, au_index(12), 0.5)
    yc = (g["y0"] + g["y1"]) // 2
    assert img[yc, g["x0"] + int(0.85 * g["w"])].tolist() == [0, 200, 255]
    assert img[yc, g["x0"] + int(0.95 * g["w"])].tolist() == [55, 55, 55]
    g2 = _bar_geometry(lay, au_index(2), 0.5)
    assert img[(g2["y0"] + g2["y1"]) // 2, g2["x0"] + 5].tolist() == [55, 55, 55]
    # the drowsiness banner box is in the WARN colour
    assert img[6, lay.bx + 3].tolist() == [0, 165, 255]
    assert img[6, lay.bx + lay.bw + lay.m + 3].tolist() == [70, 160, 60]


def test_compose_rejects_bad_input():
    with pytest.raises(DashboardError, match="at least 640x360"):
        compose_dashboard(size=(320, 240))
    with pytest.raises(DashboardError, match=r"\(2, H, W\)"):
        compose_dashboard(event_frame=np.zeros((3, 8, 8)))
    with pytest.raises(DashboardError, match="one time per row"):
        compose_dashboard(au_history=np.zeros((5, NUM_AUS)), au_times=np.zeros(4))
    with pytest.raises(DashboardError, match=r"\(T, 21\)"):
        compose_dashboard(au_history=np.zeros((5, 20)), au_times=np.zeros(5))


def test_event_frame_bgr_golden():
    f = np.zeros((2, 2, 3), np.float32)
    f[0, 0, 0] = 2.0  # OFF
    f[1, 1, 2] = 4.0  # ON
    out = event_frame_bgr(f, clip_percentile=100.0)  # scale = 4 counts
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [127, 0, 0]
    assert out[1, 2].tolist() == [0, 0, 255]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert event_frame_bgr(np.zeros((2, 4, 4))).max() == 0


def test_fit_image_letterbox():
    img = np.full((10, 20, 3), 200, np.uint8)
    out = fit_image(img, 40, 40)
    assert out.shape == (40, 40, 3)
    assert out[:10].max() == 0 and out[30:].max() == 0 and out[10:30].min() == 200


def test_au_heatmap_golden():
    t = np.array([0.05, 0.15, 0.16, 0.95, 1.5])
    h = np.zeros((5, NUM_AUS), np.float32)
    h[0, 0], h[1, 0], h[2, 0], h[3, 1], h[4, 2] = 0.2, 0.4, 0.3, 0.9, 1.0
    hm = au_heatmap(h, t, now_s=1.0, strip_s=1.0, n_cols=10)  # bins of 0.1 s over (0, 1]; 1.5 s is future
    assert hm.shape == (NUM_AUS, 10) and hm.dtype == np.float32
    assert hm[0, 0] == pytest.approx(0.2) and hm[0, 1] == pytest.approx(0.4)  # max of 0.4 and 0.3
    assert hm[1, 9] == pytest.approx(0.9)
    assert hm[2].max() == 0.0
    assert au_heatmap(np.zeros((0, NUM_AUS)), np.zeros(0), 1.0, 1.0, 10).shape == (NUM_AUS, 10)


def test_latency_stats_golden():
    s = latency_stats([10.0, 20.0, 30.0, 40.0, float("nan")])
    assert s["n"] == 4 and s["p50"] == pytest.approx(25.0) and s["max"] == 40.0 and s["mean"] == 25.0
    e = latency_stats([])
    assert e["n"] == 0 and np.isnan(e["p99"])


def test_write_summary_files_parse(tmp_path, rng):
    _, _, _, hist, t = _inputs(rng)
    alerts = [{"t": 2.0, "kind": "long_blink", "message": "long blink 520 ms", "duration_ms": 520.0},
              {"t": 3.0, "kind": "drowsiness", "level": "WARN", "previous": "OK", "message": "OK -> WARN: x"}]
    paths = write_summary(tmp_path / "out", segments=[(8.0, 10.0, "AU12", 0.91), (1.0, 1.2, 45, 0.8)],
                          alerts=alerts, latency_ms={"event->AU": [30.0, 40.0], "event->recon": []},
                          dropped_frames={"frames without AU scores": 3}, au_history=hist, au_times=t,
                          info={"duration_s": 10.0})
    doc = json.loads(paths["json"].read_text())
    assert [s["au"] for s in doc["au_segments"]] == ["AU45", "AU12"]  # sorted by start
    assert doc["au_segments"][1] == {"start_s": 8.0, "end_s": 10.0, "au": "AU12", "name": "Lip Corner Puller",
                                     "peak": 0.91}
    assert doc["latency_ms"]["event->AU"]["p50"] == pytest.approx(35.0)
    assert doc["latency_ms"]["event->recon"]["p50"] is None  # NaN is written as null
    assert doc["dropped_frames"] == {"frames without AU scores": 3}
    assert doc["alert_counts"] == {"long_blink": 1, "drowsiness": 1}
    md = paths["md"].read_text()
    assert "| 8.00 | 10.00 | AU12 | Lip Corner Puller | 0.91 |" in md
    assert "t=2.0s long_blink: long blink 520 ms" in md
    png = cv2.imread(str(paths["png"]))
    assert png is not None and png.shape == (650, 1200, 3)


def test_write_summary_empty_and_bad_segment(tmp_path):
    paths = write_summary(tmp_path, plot=True)
    doc = json.loads(paths["json"].read_text())
    assert doc["au_segments"] == [] and doc["alerts"] == []
    assert cv2.imread(str(paths["png"])) is not None
    with pytest.raises(DashboardError, match="unknown Action Unit"):
        write_summary(tmp_path, segments=[(0.0, 1.0, "AU3", 0.5)], plot=False)
    with pytest.raises(DashboardError, match="start_s, end_s, AU, peak"):
        write_summary(tmp_path, segments=[(0.0, 1.0)], plot=False)


def test_au_history_grows_and_prunes():
    h = AuHistory(max_s=10.0, capacity=4)
    for k in range(100):
        h.append(k * 0.5, np.full(NUM_AUS, k, np.float32))
    assert h.times[-1] == 49.5 and h.scores[-1, 0] == 99
    assert len(h._t) == 64  # 20 samples span max_s: the buffer stops growing at 64 rows, old rows are dropped
    assert h.n < 64 and h.times[0] <= 49.5 - 10.0
    assert np.all(np.diff(h.times) == 0.5)
    np.testing.assert_array_equal(h.scores[:, 0], h.times * 2)
    s, t = h.last(2.0)
    assert t.tolist() == [47.5, 48.0, 48.5, 49.0, 49.5] and s.shape == (5, NUM_AUS)
    assert AuHistory().last(5.0)[0].shape == (0, NUM_AUS)


def test_stamp_matcher_counts_dropped_frames():
    m = StampMatcher(grace_ns=100)
    for k in range(10):
        m.frame(k * 33)
    for k in range(10):
        if k not in (3, 7):
            m.output(k * 33)
    m.settle()  # newest 297, grace 100: judges frames <= 197
    assert (m.matched, m.dropped, len(m.pending)) == (5, 1, 4)
    m.settle(final=True)
    assert (m.matched, m.dropped, m.pending) == (8, 2, [])
    n = StampMatcher()
    n.frame(5)
    n.settle(final=True)  # no output at all: nothing judged
    assert (n.matched, n.dropped) == (0, 0)


def test_show_parameter_takes_booleans():
    from ros2_evmicro.core.params import ParamError
    from ros2_evmicro.specs.dashboard import SPEC

    assert SPEC.values({"show": True}).show == "true"
    assert SPEC.values({"show": False}).show == "false"
    assert SPEC.values().show == "auto"
    with pytest.raises(ParamError, match="not one of"):
        SPEC.values({"show": "maybe"})

"""Dataset building: the session path and the simulator path give the same frames; redone takes are
excluded; failures are reported, not fatal; resumable; boxes per window follow the slicer node's rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ros2_evmicro.core.bagio import BagWriter
from ros2_evmicro.core.dataset import (
    BoxTrack,
    BuildConfig,
    DatasetError,
    build_sessions,
    build_sim,
    crop_counts,
    event_frames,
    format_summary,
    load_index,
    sim_lux,
    window_grid,
)
from ros2_evmicro.core.events import make_events
from ros2_evmicro.core.face import crop_resize, square_box
from ros2_evmicro.core.session import SessionInfo
from ros2_evmicro.core.sim import render_clip
from ros2_evmicro.core.slicer import count_frame

W_NS = 33_000_000
T0 = W_NS * 51_000_000_000  # on the 33 ms grid, about 2023 in ROS time
DUR_S = 1.0


def _marker(phase: str, t_ns: int, au: int, trial: int) -> dict:
    return {"stamp_ns": int(t_ns), "session": "1", "subject": "S01", "run": "main", "au": au, "trial": trial,
            "phase": phase, "segment": f"S01_AU{au}_t{trial}"}


def write_session(folder: Path, *, boxes: bool = True, webcam: bool = True, calibration: bool = True,
                  webcam_box: bool = True) -> dict:
    """A one-take session recorded from the simulator: subject 1, AU45 trial 1 (render_clip with seed 1), plus
    an AU12 take marked redo before it."""
    lux = sim_lux(1)
    dav = render_clip(1, 45, "davis", DUR_S, lux, seed=1, frames=False)
    web = render_clip(1, 45, "webcam", DUR_S, lux, seed=1, frames=True) if webcam else None
    a = dav.action
    p0 = T0 + int(round(a.t_start_s * 1e6)) * 1000
    p1 = T0 + int(round((a.t_start_s + a.duration_s) * 1e6)) * 1000
    with BagWriter(folder, chunk_size=200_000) as w:
        w.write_camera_info("/davis/camera_info", 346, 260, T0, stamp_ns=T0)
        if boxes:
            w.write_polygon("/davis/face_roi", dav.face_box, T0, stamp_ns=T0)
        ev = dav.events.copy()
        ev["t"] += T0 // 1000
        for k in range(int(DUR_S * 100)):
            lo, hi = T0 // 1000 + k * 10_000, T0 // 1000 + (k + 1) * 10_000
            chunk = ev[(ev["t"] >= lo) & (ev["t"] < hi)]
            if len(chunk):
                w.write_events("/davis/events", chunk, lo * 1000)
        if web is not None:
            if boxes and webcam_box:
                w.write_polygon("/webcam/face_roi", web.face_box, T0, stamp_ns=T0)
            for t, img in web.frames:
                w.write_image("/webcam/image_raw", img, "bgr8", stamp_ns=T0 + t * 1000)
        for m in (_marker("countdown", T0 + 1_000_000, 12, 1), _marker("perform", T0 + 2_000_000, 12, 1),
                  _marker("redo", T0 + 3_000_000, 12, 1), _marker("countdown", T0 + 5_000_000, 45, 1),
                  _marker("perform", p0, 45, 1), _marker("rest", p1, 45, 1),
                  _marker("done", T0 + int(DUR_S * 1e9) - 1_000_000, 45, 1)):
            w.write_marker("/protocol/marker", m)
    SessionInfo("S01", "1", lux=lux, cameras=["davis", "webcam"], start_ns=T0, end_ns=T0 + int(DUR_S * 1e9),
                calibration_files=["sim"] if calibration else [], status="complete").write(folder)
    return {"davis": dav, "webcam": web}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sess") / "S01_1"
    write_session(folder)
    return folder


def test_session_and_sim_paths_give_the_same_frames(session, tmp_path):
    rep = build_sessions(tmp_path / "from_bag", [session], quiet=True)
    assert [r["clip_id"] for r in rep.rows] == ["S01_AU45_t1"]
    # the redone AU12 take is excluded and reported
    assert [f["clip_id"] for f in rep.failures] == ["S01_AU12_t1"]
    assert "redo" in rep.failures[0]["error"]
    sim = build_sim(tmp_path / "from_sim", [1], aus=[45], cameras=("davis", "webcam"), duration_s=DUR_S, quiet=True,
                    webcam_roi=False)
    assert sim.failures == []
    with np.load(tmp_path / "from_bag/clips/S01_AU45_t1.npz") as a, \
            np.load(tmp_path / "from_sim/clips/S01_AU45_t1.npz") as b:
        assert a["events_davis"].shape[1:] == (2, 64, 64)
        np.testing.assert_array_equal(a["t_us"] - T0 // 1000, b["t_us"])
        np.testing.assert_array_equal(a["perform"], b["perform"])
        for k in ("events_davis", "rgb", "gray", "gray_big"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a["events_davis"].sum() > 1000  # the face moves: events in the crop
        assert a["rgb"].shape == (len(a["t_us"]), 3, 64, 64) and a["gray_big"].shape[1:] == (128, 128)
        meta_a, meta_b = json.loads(str(a["meta"])), json.loads(str(b["meta"]))
    for k in ("clip_id", "subject", "au", "label", "trial", "frames", "lux", "events_davis", "cameras"):
        assert meta_a[k] == meta_b[k], k
    # rendering only the webcam's face region gives the same crops up to the sensor noise draw
    assert build_sim(tmp_path / "roi", [1], aus=[45], cameras=("webcam",), duration_s=DUR_S, quiet=True).rows
    with np.load(tmp_path / "roi/clips/S01_AU45_t1.npz") as r, \
            np.load(tmp_path / "from_sim/clips/S01_AU45_t1.npz") as b:
        d = np.abs(r["gray"].astype(float) - b["gray"].astype(float))
        assert d.mean() < 2.0 and d.max() < 40, (d.mean(), d.max())
    # the clip spans perform +- 1 s clipped to the 1 s recording: the whole grid of the recording
    assert meta_a["frames"] == len(window_grid(0, int(DUR_S * 1e6), 33_000))
    # index and summary
    rows = load_index(tmp_path / "from_bag")
    assert rows[0]["au_code"] == "AU45" and rows[0]["label"] == 12
    assert (tmp_path / "from_bag/index.csv").read_text().splitlines()[0].startswith("clip_id,subject,au")
    assert "| AU45 | Blink | 1 |" in (tmp_path / "from_bag/summary.md").read_text()


def test_mapped_boxes_and_failure_reporting(tmp_path):
    """Without a webcam box the davis box is mapped through the 'sim' calibration; without any box, camera
    frames or calibration the take fails and the build goes on (failure listed)."""
    s1 = tmp_path / "S01_a"
    clips = write_session(s1, boxes=False, webcam=False)
    # no box at all for the davis (no topic, no frames, no other camera): fails, reported
    rep = build_sessions(tmp_path / "ds", [s1], quiet=True)
    assert rep.rows == []
    errs = {f["clip_id"]: f["error"] for f in rep.failures}
    assert "no face box for davis" in errs["S01_AU45_t1"]
    assert json.loads((tmp_path / "ds/failures.json").read_text())[-1]["clip_id"] == "S01_AU45_t1"
    # webcam without its own box: the davis box mapped through calibration 'sim' (face plane at 0.8 m)
    s2 = tmp_path / "S01_b"
    clips = write_session(s2, webcam_box=False)
    rep = build_sessions(tmp_path / "ds2", [s2], quiet=True)
    assert [r["clip_id"] for r in rep.rows] == ["S01_AU45_t1"] and rep.rows[0]["cameras"] == "davis;webcam"
    from ros2_evmicro.core.face import box_iou, map_box
    from ros2_evmicro.core.sim import default_geometry, homography

    geo = default_geometry()
    mapped = map_box(clips["davis"].face_box, homography(geo["davis"], geo["webcam"], 0.8), 1920, 1080)
    assert box_iou(mapped, clips["webcam"].face_box) > 0.8
    # a box track maps through a homography corner by corner
    tr = BoxTrack()
    tr.add(0, clips["davis"].face_box)
    H = np.array([[2.0, 0, 10], [0, 2.0, 20], [0, 0, 1]])
    x0, y0, x1, y1 = clips["davis"].face_box
    assert tr.mapped(H, None).at(5) == pytest.approx((2 * x0 + 10, 2 * y0 + 20, 2 * x1 + 10, 2 * y1 + 20))


def test_not_a_session_is_reported(tmp_path):
    rep = build_sessions(tmp_path / "ds", [tmp_path / "nothing"], quiet=True)
    assert rep.rows == [] and "not a session folder" in rep.failures[0]["error"]
    with pytest.raises(DatasetError, match="no session folders"):
        build_sessions(tmp_path / "ds", [], quiet=True)


def test_resumable_and_settings_guard(tmp_path):
    out = tmp_path / "ds"
    r1 = build_sim(out, [2], aus=[45], cameras=("davis",), duration_s=DUR_S, quiet=True)
    assert (r1.written, r1.skipped) == (1, 0)
    f = out / "clips/S02_AU45_t1.npz"
    mtime = f.stat().st_mtime_ns
    (out / "clips/.S02_AU12_t1.npz.999.tmp").write_bytes(b"half a clip")  # a killed build's leftover
    r2 = build_sim(out, [2], aus=[45, 12], cameras=("davis",), duration_s=DUR_S, quiet=True)
    assert (r2.written, r2.skipped) == (1, 1) and f.stat().st_mtime_ns == mtime
    assert sorted(r["clip_id"] for r in load_index(out)) == ["S02_AU12_t1", "S02_AU45_t1"]
    assert not list(out.glob("clips/.*tmp"))
    with pytest.raises(DatasetError, match="other settings"):
        build_sim(out, [2], aus=[45], cameras=("davis",), duration_s=2.0, quiet=True)


def test_event_frames_follow_the_slicer_grid():
    # events at 0, 32999 (window 0), 33000 (window 1), 99000 (window 3); one outside the range
    ev = make_events([1, 2, 3, 4, 0], [1, 1, 2, 3, 0], [1, 0, 1, 1, 1], [0, 32_999, 33_000, 99_000, 140_000])
    starts = window_grid(0, 132_000, 33_000)
    assert starts.tolist() == [0, 33_000, 66_000, 99_000]
    frames, n = event_frames(ev, 8, 6, starts, 33_000)
    assert n == 4 and len(frames) == 4
    np.testing.assert_array_equal(frames[0], count_frame(ev[:2], 8, 6))
    assert frames[1][1, 2, 3] == 1 and frames[2].sum() == 0 and frames[3][1, 3, 4] == 1
    # empty input: the same shapes
    frames0, n0 = event_frames(make_events([], [], [], []), 8, 6, starts, 33_000)
    assert n0 == 0 and [f.shape for f in frames0] == [(2, 6, 8)] * 4
    assert window_grid(10_000, 40_000, 33_000).tolist() == [0, 33_000]


def test_crop_counts_equals_full_crop_resize(rng):
    counts = rng.poisson(0.5, (2, 260, 346)).astype(np.uint16)
    for box in [(100.3, 80.2, 190.7, 170.1), (-20.0, -10.0, 60.0, 70.0), (300.0, 200.0, 360.0, 270.0)]:
        np.testing.assert_allclose(crop_counts(counts, box, 64, 0.2), crop_resize(counts, box, 64, 0.2),
                                   rtol=1e-6, atol=1e-5)
    assert crop_counts(counts, (1000.0, 1000.0, 1100.0, 1100.0), 64, 0.2).sum() == 0


def test_box_track_uses_newest_box_at_or_before():
    tr = BoxTrack()
    tr.add(100, (0, 0, 10, 10))
    tr.add(200, (5, 5, 15, 15))
    tr.add(150, (9, 9, 19, 19))  # out of order: ignored
    assert tr.at(50) == (0, 0, 10, 10)  # before the first box: the oldest
    assert tr.at(199) == (0, 0, 10, 10) and tr.at(200) == (5, 5, 15, 15)
    with pytest.raises(DatasetError):
        BoxTrack().at(0)


def test_summary_table_layout():
    rows = [{"clip_id": "S01_AU12_t1", "subject": "S01", "au": 12, "frames": 60, "lux": 300.0,
             "cameras": "davis;webcam", "events_davis": 1000, "events_evk4": 0},
            {"clip_id": "S02_AU12_t1", "subject": "S02", "au": 12, "frames": 40, "lux": 500.0,
             "cameras": "davis", "events_davis": 3000, "events_evk4": 0}]
    md = format_summary(rows)
    assert "| subjects | 2 (S01, S02) |" in md
    assert "| frames (33 ms windows) | 100 |" in md
    assert "| events per clip (davis) | 2,000 ± 1,000 |" in md
    assert "| lux | 300 - 500 (mean 400) |" in md
    assert "| AU12 | Lip Corner Puller | 2 | 100 |" in md and "| AU2 | Outer Brow Raiser | 0 | 0 |" in md


def test_bad_config():
    with pytest.raises(DatasetError):
        BuildConfig(window_us=0)
    with pytest.raises(DatasetError, match="detector"):
        BuildConfig(detector="yolo")


@pytest.mark.parametrize("side_box", [(10.0, 10.0, 74.0, 74.0), (33.3, 41.7, 150.9, 161.2), (-30.5, 200.0, 90.0, 300.0),
                                      (0.0, 0.0, 53.4, 53.4), (250.0, 180.0, 400.0, 330.0)])
def test_crop_counts_area_kernel_matches_cv2_inter_area(side_box, rng):
    """The compiled area downscale of crop_counts equals crop_resize (cv2.INTER_AREA times the area ratio) on
    integer, fractional, border and out-of-frame squares, with bursts of large counts, and keeps the total."""
    counts = rng.poisson(0.3, (2, 260, 346)).astype(np.uint16)
    counts[:, 120:130, 150:160] += rng.integers(0, 3000, (2, 10, 10)).astype(np.uint16)
    got = crop_counts(counts, side_box, 64, 0.2)
    want = crop_resize(counts, side_box, 64, 0.2)
    assert got.dtype == np.float32 and got.shape == (2, 64, 64)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-4)
    x0, y0, x1, y1 = square_box(side_box, 0.2)
    side = int(round(x1 - x0))
    ix0, iy0 = int(np.floor(x0 + 0.5)), int(np.floor(y0 + 0.5))
    inside = counts[:, max(iy0, 0):max(min(iy0 + side, 260), 0), max(ix0, 0):max(min(ix0 + side, 346), 0)]
    np.testing.assert_allclose(got.sum(axis=(1, 2)), inside.sum(axis=(1, 2)), rtol=1e-5)

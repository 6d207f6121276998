"""Calibration core on synthetic chessboards rendered with a known camera."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros2_evmicro.core.calib import (
    CalibError,
    Calibration,
    CameraIntrinsics,
    blink_image,
    board_points,
    calibrate_intrinsics,
    find_chessboard,
    homography_from_corners,
    load_calibration,
    save_calibration,
)
from ros2_evmicro.core.events import make_events
from ros2_evmicro.core.face import map_box
from ros2_evmicro.core.slicer import count_frame

PATTERN = (8, 5)  # inner corners
SQ_PX = 24  # texture pixels per square
BORDER_PX = 24


def texture(squares_on: bool = True) -> np.ndarray:
    """Chessboard texture (float 0..255) with a white border; inner corner (0,0) at texture (2, 2) squares."""
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    h, w = rows * SQ_PX + 2 * BORDER_PX, cols * SQ_PX + 2 * BORDER_PX
    tex = np.full((h, w), 255.0, np.float32)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0 or not squares_on:
                y0, x0 = BORDER_PX + r * SQ_PX, BORDER_PX + c * SQ_PX
                tex[y0 : y0 + SQ_PX, x0 : x0 + SQ_PX] = 0.0
    return tex


def tex_to_board() -> np.ndarray:
    """Affine map texture pixel -> board coordinates (squares), inner corner (0, 0) at the origin."""
    s = 1.0 / SQ_PX
    o = (BORDER_PX + SQ_PX) / SQ_PX
    # pixel centres: texture pixel u covers [u, u+1), its centre u+0.5 (OpenCV's warp samples at integers)
    return np.array([[s, 0, -o + 0.5 * s], [0, s, -o + 0.5 * s], [0, 0, 1]])


def render(K, rvec, tvec, size, tex=None, background=128.0) -> np.ndarray:
    tex = texture() if tex is None else tex
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    Hb = K @ np.column_stack([R[:, 0], R[:, 1], np.asarray(tvec, np.float64).reshape(3)])
    H = Hb @ tex_to_board()
    img = cv2.warpPerspective(tex, H, size, flags=cv2.INTER_LINEAR, borderValue=-1.0)
    img[img < 0] = background
    return np.clip(img, 0, 255).astype(np.uint8)


def truth_corners(K, rvec, tvec) -> np.ndarray:
    pts, _ = cv2.projectPoints(board_points(PATTERN), np.asarray(rvec, float), np.asarray(tvec, float), K, None)
    return pts.reshape(-1, 2)


K_TRUE = np.array([[600.0, 0, 322.0], [0, 600.0, 238.0], [0, 0, 1]])
SIZE = (640, 480)
POSES = [
    ((0.0, 0.0, 0.0), (-3.5, -2.0, 14.0)),
    ((0.35, 0.0, 0.0), (-3.5, -2.0, 15.0)),
    ((0.0, -0.4, 0.0), (-3.0, -2.0, 15.0)),
    ((-0.3, 0.3, 0.1), (-4.0, -2.5, 16.0)),
    ((0.25, 0.35, -0.1), (-3.0, -1.5, 14.0)),
    ((-0.2, -0.3, 0.05), (-4.0, -2.0, 17.0)),
]


def test_find_chessboard_matches_projection():
    rvec, tvec = POSES[3]
    img = render(K_TRUE, rvec, tvec, SIZE)
    c = find_chessboard(img, PATTERN)
    assert c is not None and c.shape == (40, 2)
    err = np.linalg.norm(c - truth_corners(K_TRUE, rvec, tvec), axis=1)
    assert err.max() < 0.5


def test_calibrate_intrinsics_recovers_focal_length():
    imgs = [render(K_TRUE, r, t, SIZE) for r, t in POSES]
    cam = calibrate_intrinsics(imgs, PATTERN, 1.0)
    assert cam.n_views == len(POSES) and cam.rms_px < 0.5
    assert cam.fx == pytest.approx(600.0, rel=0.02)
    assert cam.fy == pytest.approx(600.0, rel=0.02)
    assert cam.K[0, 2] == pytest.approx(322.0, abs=8) and cam.K[1, 2] == pytest.approx(238.0, abs=8)
    assert (cam.width, cam.height) == SIZE


def test_calibrate_needs_enough_views():
    blank = np.full((480, 640), 128, np.uint8)
    with pytest.raises(CalibError, match="found in 0 image"):
        calibrate_intrinsics([blank] * 3, PATTERN)


def test_blinking_pattern_on_event_camera_gives_corners(rng):
    """Event camera: the board's dark squares blink (dark <-> white); events accumulate into the board."""
    size = (346, 260)
    K = np.array([[300.0, 0, 173.0], [0, 300.0, 130.0], [0, 0, 1]])
    rvec, tvec = (0.2, -0.25, 0.05), (-3.5, -2.0, 11.0)
    on = render(K, rvec, tvec, size).astype(np.float32)
    off = render(K, rvec, tvec, size, tex=texture(squares_on=False)).astype(np.float32)
    # every blink: each pixel fires about 3 events per full-range change, plus background noise
    lam = 3.0 * np.abs(off - on) / 255.0
    chunks = []
    for b in range(6):
        n = rng.poisson(lam)
        ys, xs = np.nonzero(n)
        reps = n[ys, xs]
        pol = 1 if b % 2 else 0
        ev_x, ev_y = np.repeat(xs, reps), np.repeat(ys, reps)
        chunks.append(make_events(ev_x, ev_y, np.full(ev_x.size, pol), np.full(ev_x.size, b * 100_000)))
        k = 300
        chunks.append(
            make_events(rng.integers(0, size[0], k), rng.integers(0, size[1], k), rng.integers(0, 2, k), [b] * k)
        )
    counts = count_frame(np.concatenate(chunks), *size)
    img = blink_image(counts)
    assert img.dtype == np.uint8 and img.shape == (260, 346)
    c = find_chessboard(img, PATTERN)
    assert c is not None
    err = np.linalg.norm(c - truth_corners(K, rvec, tvec), axis=1)
    assert np.median(err) < 0.7 and err.max() < 1.5


def test_face_plane_homography_between_two_cameras():
    # the same board seen by a 640x480 camera and a 1280x720 camera placed elsewhere
    Ka = K_TRUE
    Kb = np.array([[900.0, 0, 640.0], [0, 900.0, 360.0], [0, 0, 1]])
    ra, ta = (0.1, 0.2, 0.0), (-3.5, -2.0, 15.0)
    rb, tb = (0.05, -0.25, 0.02), (-3.0, -2.5, 16.0)
    ca = find_chessboard(render(Ka, ra, ta, SIZE), PATTERN)
    cb = find_chessboard(render(Kb, rb, tb, (1280, 720)), PATTERN)
    H = homography_from_corners(ca, cb)

    # the true plane homography: image a -> board -> image b
    def plane_h(K, r, t):
        R, _ = cv2.Rodrigues(np.asarray(r, float))
        return K @ np.column_stack([R[:, 0], R[:, 1], np.asarray(t, float)])

    H_true = plane_h(Kb, rb, tb) @ np.linalg.inv(plane_h(Ka, ra, ta))
    pts = np.array([[200.0, 150.0, 1], [400.0, 300.0, 1], [300.0, 220.0, 1]])
    got = (H @ pts.T).T
    want = (H_true @ pts.T).T
    np.testing.assert_allclose(got[:, :2] / got[:, 2:], want[:, :2] / want[:, 2:], atol=1.0)
    # and a face box maps to the bounding box of its mapped corners
    box_b = map_box((200, 150, 400, 300), H)
    corners = np.array([[200, 150, 1], [400, 150, 1], [400, 300, 1], [200, 300, 1]], float) @ H_true.T
    xy = corners[:, :2] / corners[:, 2:]
    np.testing.assert_allclose(box_b, [*xy.min(0), *xy.max(0)], atol=1.5)


def test_homography_needs_four_points():
    with pytest.raises(CalibError, match=">= 4"):
        homography_from_corners(np.zeros((3, 2)), np.zeros((3, 2)))


def test_yaml_round_trip_and_inverse_lookup(tmp_path):
    cam = CameraIntrinsics(346, 260, K_TRUE, [0.1, -0.2, 0, 0, 0.01], rms_px=0.2, n_views=12)
    H = np.array([[2.0, 0.1, 30.0], [0.0, 2.1, -5.0], [0.0, 0.0, 1.0]])
    p = save_calibration(tmp_path / "rig.yaml", {"davis": cam, "evk4": {"width": 1280, "height": 720, "K": Kb()}},
                         {"davis->evk4": H})  # fmt: skip
    cal = load_calibration(p)
    assert isinstance(cal, Calibration)
    assert cal.cameras["davis"].width == 346 and cal.cameras["davis"].n_views == 12
    np.testing.assert_allclose(cal.cameras["davis"].K, K_TRUE)
    np.testing.assert_allclose(cal.cameras["davis"].D, [0.1, -0.2, 0, 0, 0.01])
    np.testing.assert_allclose(cal.cameras["evk4"].D, np.zeros(5))
    np.testing.assert_allclose(cal.homography("davis", "evk4"), H)
    np.testing.assert_allclose(cal.homography("evk4", "davis") @ H, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(cal.homography("evk4", "evk4"), np.eye(3))
    with pytest.raises(CalibError, match="no homography webcam->evk4"):
        cal.homography("webcam", "evk4")
    # save accepts a Calibration too
    cal2 = load_calibration(save_calibration(tmp_path / "rig2.yaml", cal))
    np.testing.assert_allclose(cal2.homographies["davis->evk4"], H)


def Kb():
    return [[900.0, 0, 640.0], [0, 900.0, 360.0], [0, 0, 1]]


@pytest.mark.parametrize(
    "text,match",
    [
        ("- 1\n- 2\n", "must be a mapping"),
        ("cameras:\n  davis: {width: 346}\n", "needs width, height, K"),
        ("homographies:\n  davis-evk4: [[1,0,0],[0,1,0],[0,0,1]]\n", "'src->dst'"),
        ("homographies:\n  a->b: [[1,0],[0,1]]\n", "must be 3x3"),
        ("cameras: [\n", "could not read"),
    ],
)
def test_load_calibration_errors(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(CalibError, match=match):
        load_calibration(p)
    with pytest.raises(CalibError, match="could not read"):
        load_calibration(tmp_path / "missing.yaml")

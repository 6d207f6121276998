"""``evmicro calib`` on rendered chessboards: intrinsics (images, video, blinking board on events), homography."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_calib import K_TRUE, PATTERN, POSES, SIZE, render, texture

from ros2_evmicro.cli import main
from ros2_evmicro.core.calib import load_calibration
from ros2_evmicro.core.codecs import write_raw
from ros2_evmicro.core.events import concat_events, make_events

PAT = f"{PATTERN[0]}x{PATTERN[1]}"


def _write_images(folder, images):
    folder.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"view_{i:02d}.png"), img)
    return folder


def test_intrinsics_from_a_folder_merges_into_the_yaml(tmp_path, capsys):
    d = _write_images(tmp_path / "davis", [render(K_TRUE, r, t, SIZE) for r, t in POSES])
    out = tmp_path / "rig.yaml"
    H = [[2.0, 0.0, 1.0], [0.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
    out.write_text(f"homographies:\n  webcam->evk4: {H}\n")  # an existing entry is kept
    rc = main(["calib", "intrinsics", "--images", str(d), "--pattern", PAT, "--square-mm", "25",
               "--camera", "davis", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"[{len(POSES)}] view_{len(POSES) - 1:02d}.png: board found" in text and "wrote camera 'davis'" in text
    rig = load_calibration(out)
    cam = rig.cameras["davis"]
    assert (cam.width, cam.height) == SIZE and cam.n_views == len(POSES) and cam.rms_px < 0.5
    assert cam.fx == pytest.approx(600.0, rel=0.02) and cam.fy == pytest.approx(600.0, rel=0.02)
    np.testing.assert_allclose(rig.homographies["webcam->evk4"], H)
    assert main(["calib", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "camera davis: 640x480" in shown and "homography webcam->evk4" in shown


def test_intrinsics_from_a_video(tmp_path):
    path = tmp_path / "board.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    if not vw.isOpened():
        pytest.skip("OpenCV cannot write an MJPG AVI here")
    for r, t in POSES:
        frame = cv2.cvtColor(render(K_TRUE, r, t, SIZE), cv2.COLOR_GRAY2BGR)
        for _ in range(3):  # each pose held for 3 frames; --every 3 takes one of each
            vw.write(frame)
    vw.release()
    out = tmp_path / "rig.yaml"
    assert main(["calib", "intrinsics", "--images", str(path), "--every", "3", "--pattern", PAT, "--camera",
                 "webcam", "--out", str(out), "-q"]) == 0
    cam = load_calibration(out).cameras["webcam"]
    assert cam.n_views == len(POSES) and cam.fx == pytest.approx(600.0, rel=0.03)


def test_no_board_anywhere_is_a_clear_error(tmp_path, capsys):
    d = _write_images(tmp_path / "blank", [np.full((240, 320), 128, np.uint8)] * 3)
    rc = main(["calib", "intrinsics", "--images", str(d), "--pattern", "9x6", "--out", str(tmp_path / "o.yaml")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no 9x6 chessboard" in err and "any of the 3 image(s)" in err and "Traceback" not in err
    assert not (tmp_path / "o.yaml").exists()
    assert main(["calib", "intrinsics", "--images", str(d), "--pattern", "9", "--out", "o.yaml"]) == 2
    assert "COLSxROWS" in capsys.readouterr().err
    assert main(["calib", "intrinsics", "--images", str(tmp_path / "nothing"), "--out", "o.yaml"]) == 2
    assert "neither a folder" in capsys.readouterr().err


K_EV = np.array([[300.0, 0, 173.0], [0, 300.0, 130.0], [0, 0, 1]])
EV_SIZE = (346, 260)
EV_POSES = [
    ((0.2, -0.25, 0.05), (-3.5, -2.0, 11.0)),
    ((0.0, 0.0, 0.0), (-3.5, -2.0, 11.5)),
    ((0.3, 0.1, 0.0), (-3.5, -2.0, 12.0)),
    ((-0.2, 0.3, -0.05), (-3.5, -2.2, 12.0)),
]


def blinking_board_events(rng, view_us=500_000, blink_us=50_000) -> np.ndarray:
    """A board whose dark squares blink (dark <-> white) 6 times per pose, one pose per ``view_us``."""
    chunks = []
    for i, (r, t) in enumerate(EV_POSES):
        on = render(K_EV, r, t, EV_SIZE).astype(np.float32)
        off = render(K_EV, r, t, EV_SIZE, tex=texture(squares_on=False)).astype(np.float32)
        lam = 3.0 * np.abs(off - on) / 255.0
        for b in range(6):
            n = rng.poisson(lam)
            ys, xs = np.nonzero(n)
            reps = n[ys, xs]
            ex, ey = np.repeat(xs, reps), np.repeat(ys, reps)
            t0 = i * view_us + b * blink_us
            tt = t0 + rng.integers(0, 2000, ex.size)  # a blink's events within 2 ms
            chunks.append(make_events(ex, ey, np.full(ex.size, b % 2), tt))
            k = 300
            chunks.append(make_events(rng.integers(0, EV_SIZE[0], k), rng.integers(0, EV_SIZE[1], k),
                                      rng.integers(0, 2, k), t0 + rng.integers(0, blink_us, k)))
    ev = concat_events(chunks)
    return ev[np.argsort(ev["t"], kind="stable")]


def test_events_blinking_board_from_a_raw_file(tmp_path, rng, capsys):
    raw = write_raw(tmp_path / "blink.raw", blinking_board_events(rng), "evt3", *EV_SIZE)
    out = tmp_path / "rig.yaml"
    blink = tmp_path / "blink"
    rc = main(["calib", "events", "--raw", str(raw), "--pattern", PAT, "--window-ms", "50", "--windows-per-view",
               "10", "--camera", "evk4", "--save-images", str(blink), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"board {PAT} found in {len(EV_POSES)} of {len(EV_POSES)} blink view(s)" in text
    cam = load_calibration(out).cameras["evk4"]
    assert (cam.width, cam.height) == EV_SIZE and cam.n_views == len(EV_POSES)
    assert cam.fx == pytest.approx(300.0, rel=0.05) and cam.K[0, 2] == pytest.approx(173.0, abs=10)
    assert len(list(blink.glob("blink_*.png"))) == len(EV_POSES)
    # events that never show a board: the error names the pattern
    quiet = make_events(rng.integers(0, 346, 5000), rng.integers(0, 260, 5000), rng.integers(0, 2, 5000),
                        np.sort(rng.integers(0, 1_000_000, 5000)))
    raw2 = write_raw(tmp_path / "noise.raw", quiet, "evt3", *EV_SIZE)
    assert main(["calib", "events", "--raw", str(raw2), "--pattern", PAT, "--out", str(out), "-q"]) == 2
    assert f"no {PAT} chessboard" in capsys.readouterr().err
    assert main(["calib", "events", "--pattern", PAT, "--out", str(out)]) == 2
    assert "exactly one of --raw" in capsys.readouterr().err


def test_homography_between_two_cameras(tmp_path, capsys):
    Kb = np.array([[900.0, 0, 640.0], [0, 900.0, 360.0], [0, 0, 1]])
    ra, ta = (0.1, 0.2, 0.0), (-3.5, -2.0, 15.0)
    rb, tb = (0.05, -0.25, 0.02), (-3.0, -2.5, 16.0)
    # pair 1: the board at the face's place; pair 2: the destination missed the board (skipped)
    a = _write_images(tmp_path / "a", [render(K_TRUE, ra, ta, SIZE), render(K_TRUE, ra, ta, SIZE)])
    b = _write_images(tmp_path / "b", [render(Kb, rb, tb, (1280, 720)), np.full((720, 1280), 128, np.uint8)])
    out = tmp_path / "rig.yaml"
    assert main(["calib", "homography", "--src-images", str(a), "--dst-images", str(b), "--src", "davis", "--dst",
                 "evk4", "--pattern", PAT, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 view pair(s), 40 corners" in text and "[2] view_01.png: board | view_01.png: no board" in text
    H = load_calibration(out).homography("davis", "evk4")

    def plane_h(K, r, t):
        R, _ = cv2.Rodrigues(np.asarray(r, float))
        return K @ np.column_stack([R[:, 0], R[:, 1], np.asarray(t, float)])

    H_true = plane_h(Kb, rb, tb) @ np.linalg.inv(plane_h(K_TRUE, ra, ta))
    pts = np.array([[200.0, 150.0, 1], [400.0, 300.0, 1], [300.0, 220.0, 1]])
    got, want = pts @ H.T, pts @ H_true.T
    np.testing.assert_allclose(got[:, :2] / got[:, 2:], want[:, :2] / want[:, 2:], atol=1.0)
    # unequal view counts: refused with the reason
    c = _write_images(tmp_path / "c", [render(Kb, rb, tb, (1280, 720))])
    assert main(["calib", "homography", "--src-images", str(a), "--dst-images", str(c), "--src", "davis", "--dst",
                 "evk4", "--pattern", PAT, "--out", str(out)]) == 2
    assert "same number" in capsys.readouterr().err


def test_events_blinking_board_from_an_aedat4_file(tmp_path, rng, capsys):
    pytest.importorskip("dv_processing")
    from ros2_evmicro.core.codecs import write_aedat4

    path = write_aedat4(tmp_path / "blink.aedat4", blinking_board_events(rng), *EV_SIZE)
    out = tmp_path / "rig.yaml"
    assert main(["calib", "events", "--aedat4", str(path), "--pattern", PAT, "--window-ms", "50",
                 "--windows-per-view", "10", "--camera", "davis", "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().out == ""  # --quiet
    cam = load_calibration(out).cameras["davis"]
    assert cam.n_views == len(EV_POSES) and cam.fx == pytest.approx(300.0, rel=0.05)

"""``evmicro calib``: rig calibration from chessboard views, written into the YAML the nodes read.

* ``evmicro calib intrinsics --images DIR|VIDEO --pattern 9x6 --square-mm 25 --camera davis --out rig.yaml``:
  a frame camera's intrinsics (``cv2.calibrateCamera``) from chessboard images (a folder, or every n-th
  frame of a video).
* ``evmicro calib events --raw FILE.raw | --aedat4 FILE --pattern 9x6 --window-ms 33 --camera evk4 --out
  rig.yaml``: an event camera's intrinsics from a BLINKING chessboard (a screen alternating the pattern and a
  uniform image): the events are cut into ``window-ms`` count frames, every ``windows-per-view`` frames are
  summed into one blink image (:func:`~ros2_evmicro.core.calib.blink_image`), the board's corners are found
  on it; ``--save-images DIR`` keeps the blink images (for ``calib homography``).
* ``evmicro calib homography --src-images A --dst-images B --src davis --dst evk4 --out rig.yaml``: the
  face-plane homography ``src->dst`` from matched views of one chessboard held at the face's place (image i
  of A and image i of B show the same pose; folders are matched in sorted name order).
* ``evmicro calib show rig.yaml``: print what a file holds.

Every command merges its result into ``--out`` (cameras and homographies already there are kept). The
pattern is the count of INNER corners, columns x rows (a board of 10 x 7 squares is ``9x6``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")

__all__ = ["blink_views", "iter_images", "parse_pattern", "register"]


def parse_pattern(text: str) -> tuple[int, int]:
    """'9x6' -> (9, 6): inner corners (columns, rows)."""
    from ros2_evmicro.core.calib import CalibError

    parts = str(text).lower().replace("*", "x").split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError:
        raise CalibError(f"pattern must be COLSxROWS of inner corners, e.g. 9x6; got {text!r}") from None
    if cols < 2 or rows < 2:
        raise CalibError(f"pattern counts inner corners, each >= 2; got {text!r}")
    return cols, rows


def iter_images(source: str | Path, every: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """(name, image) of every image file of a folder (sorted by name), or of every ``every``-th video frame."""
    import cv2

    from ros2_evmicro.core.calib import CalibError

    src = Path(source)
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise CalibError(f"no image files ({', '.join(IMAGE_EXTS)}) in {src}")
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise CalibError(f"could not read image {f}")
            yield f.name, img
        return
    if not src.is_file():
        raise CalibError(f"{src} is neither a folder of images nor a video file")
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise CalibError(f"could not open {src} as a video (OpenCV)")
    try:
        i = 0
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % max(1, every) == 0:
                n += 1
                yield f"{src.name}#{i}", frame
            i += 1
        if n == 0:
            raise CalibError(f"video {src} has no readable frame")
    finally:
        cap.release()


def _load_rig(path: Path):
    from ros2_evmicro.core.calib import Calibration, load_calibration

    return load_calibration(path) if path.exists() else Calibration()


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def _no_board(pattern: tuple[int, int], n: int, where: str) -> str:
    return (f"no {pattern[0]}x{pattern[1]} chessboard (inner corners, columns x rows) found in any of the {n} "
            f"image(s) of {where}: check --pattern (a board of 10 x 7 squares has 9x6 inner corners), that the "
            "whole board is in view, sharp and well lit")


# ---------------------------------------------------------------------------------------------
# intrinsics
# ---------------------------------------------------------------------------------------------


def _calibrate_views(args, images: list[np.ndarray], pattern, n_seen: int, where: str) -> int:
    from ros2_evmicro.core.calib import CalibError, calibrate_intrinsics, save_calibration

    if not images:
        raise CalibError(_no_board(pattern, n_seen, where))
    if len(images) < args.min_views:
        raise CalibError(f"chessboard {pattern[0]}x{pattern[1]} found in only {len(images)} of {n_seen} views of "
                         f"{where}; need at least {args.min_views} (move the board between views)")
    cam = calibrate_intrinsics(images, pattern, args.square_mm, min_views=args.min_views)
    out = Path(args.out)
    rig = _load_rig(out)
    rig.cameras[args.camera] = cam
    save_calibration(out, rig)
    _say(args, f"{args.camera}: {cam.width}x{cam.height}, fx {cam.fx:.1f} fy {cam.fy:.1f} cx {cam.K[0, 2]:.1f} "
               f"cy {cam.K[1, 2]:.1f}, RMS reprojection error {cam.rms_px:.3f} px over {cam.n_views} views")
    _say(args, f"wrote camera {args.camera!r} to {out}")
    return 0


def _intrinsics(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.calib import find_chessboard

    pattern = parse_pattern(args.pattern)
    found, n = [], 0
    for name, img in iter_images(args.images, args.every):
        n += 1
        ok = find_chessboard(img, pattern) is not None
        _say(args, f"[{n}] {name}: {'board found' if ok else 'no board'}")
        if ok:
            found.append(img)
            if args.max_views and len(found) >= args.max_views:
                _say(args, f"reached --max-views {args.max_views}")
                break
    _say(args, f"board {pattern[0]}x{pattern[1]} found in {len(found)} of {n} image(s)")
    return _calibrate_views(args, found, pattern, n, str(args.images))


# ---------------------------------------------------------------------------------------------
# event camera (blinking board)
# ---------------------------------------------------------------------------------------------


def _event_source(args) -> tuple[Iterator[np.ndarray], int, int, str]:
    """(event chunks, width, height, description) of --raw or --aedat4."""
    from ros2_evmicro.core.calib import CalibError

    if bool(args.raw) == bool(args.aedat4):
        raise CalibError("give exactly one of --raw FILE.raw or --aedat4 FILE.aedat4")
    if args.raw:
        from ros2_evmicro.core.codecs import RawReader

        r = RawReader(args.raw, width=args.width or None, height=args.height or None)
        return iter(r), r.width, r.height, str(args.raw)
    from ros2_evmicro.core.codecs import Aedat4Reader

    r = Aedat4Reader(args.aedat4)
    w, h = (args.width or r.width), (args.height or r.height)
    if not w or not h:
        raise CalibError(f"{args.aedat4} has no event stream size; pass --width and --height")
    return r.iter_events(), w, h, str(args.aedat4)


def blink_views(chunks, width: int, height: int, window_us: int, windows_per_view: int,
                min_events: int = 1000) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(t_start_us, t_end_us, n_events, blink image) per view: ``windows_per_view`` count frames of
    ``window_us`` summed, from a stream of event chunks (views with fewer than ``min_events`` are skipped)."""
    from ros2_evmicro.core.calib import blink_image
    from ros2_evmicro.core.slicer import Slicer

    slicer = Slicer(width, height, window_us, 0, dtype=np.uint16, on_invalid="drop")
    acc = np.zeros((2, height, width), np.float32)
    state = {"k": 0, "n": 0, "t0": None}

    def take(frames):
        for f in frames:
            if state["t0"] is None:
                state["t0"] = f.t_start_us
            np.add(acc, f.counts, out=acc)
            state["n"] += f.n_events
            state["k"] += 1
            if state["k"] == windows_per_view:
                out = (state["t0"], f.t_end_us, state["n"], acc.copy())
                acc.fill(0)
                state.update(k=0, n=0, t0=None)
                yield out

    def emit(item):
        t0, t1, n, counts = item
        if n >= min_events:
            return (t0, t1, n, blink_image(counts))
        return (t0, t1, n, None)

    for chunk in chunks:
        for item in take(slicer.push(chunk)):
            yield emit(item)
    for item in take(slicer.flush()):
        yield emit(item)
    if state["k"] and state["n"]:  # the last, partial view
        yield emit((state["t0"], state["t0"] + state["k"] * window_us, state["n"], acc.copy()))


def _events(args: argparse.Namespace) -> int:
    import cv2

    from ros2_evmicro.core.calib import CalibError, find_chessboard

    pattern = parse_pattern(args.pattern)
    if args.window_ms <= 0 or args.windows_per_view < 1:
        raise CalibError("--window-ms must be > 0 and --windows-per-view >= 1")
    chunks, w, h, where = _event_source(args)
    save = Path(args.save_images) if args.save_images else None
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    window_us = max(1, int(round(args.window_ms * 1000)))
    found, n = [], 0
    _say(args, f"{where}: {w}x{h}, views of {args.windows_per_view} x {args.window_ms:g} ms")
    for t0, t1, n_ev, img in blink_views(chunks, w, h, window_us, args.windows_per_view, args.min_events):
        n += 1
        if img is None:
            _say(args, f"[{n}] {t0 / 1e6:.3f}-{t1 / 1e6:.3f} s: {n_ev} events, too few (< {args.min_events})")
            continue
        if save is not None:
            cv2.imwrite(str(save / f"blink_{n:04d}.png"), img)
        ok = find_chessboard(img, pattern) is not None
        _say(args, f"[{n}] {t0 / 1e6:.3f}-{t1 / 1e6:.3f} s: {n_ev} events, {'board found' if ok else 'no board'}")
        if ok:
            found.append(img)
    if n == 0:
        raise CalibError(f"{where} holds no events")
    _say(args, f"board {pattern[0]}x{pattern[1]} found in {len(found)} of {n} blink view(s)")
    if save is not None:
        _say(args, f"blink images written to {save}")
    return _calibrate_views(args, found, pattern, n, f"{where} (blink images of {args.windows_per_view} x "
                                                     f"{args.window_ms:g} ms)")


# ---------------------------------------------------------------------------------------------
# homography
# ---------------------------------------------------------------------------------------------


def _homography(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.calib import CalibError, find_chessboard, homography_from_corners, save_calibration

    pattern = parse_pattern(args.pattern)
    src = list(iter_images(args.src_images, args.every))
    dst = list(iter_images(args.dst_images, args.every))
    if len(src) != len(dst):
        raise CalibError(f"--src-images gives {len(src)} image(s) and --dst-images {len(dst)}: views are matched "
                         "by order, so both must hold the same number (one per board pose)")
    ps, pd = [], []
    n_src = n_dst = 0
    for i, ((na, a), (nb, b)) in enumerate(zip(src, dst, strict=True), 1):
        ca, cb = find_chessboard(a, pattern), find_chessboard(b, pattern)
        n_src += ca is not None
        n_dst += cb is not None
        _say(args, f"[{i}] {na}: {'board' if ca is not None else 'no board'} | {nb}: "
                   f"{'board' if cb is not None else 'no board'}")
        if ca is not None and cb is not None:
            ps.append(ca)
            pd.append(cb)
    if n_src == 0:
        raise CalibError(_no_board(pattern, len(src), f"--src-images {args.src_images}"))
    if n_dst == 0:
        raise CalibError(_no_board(pattern, len(dst), f"--dst-images {args.dst_images}"))
    if not ps:
        raise CalibError(f"the board {pattern[0]}x{pattern[1]} is never found in both images of a pair "
                         f"({n_src} src and {n_dst} dst views have it, in different pairs)")
    src_pts, dst_pts = np.concatenate(ps), np.concatenate(pd)
    H = homography_from_corners(src_pts, dst_pts, ransac_px=args.ransac_px)
    p = np.column_stack([src_pts, np.ones(len(src_pts))]) @ H.T
    err = np.linalg.norm(p[:, :2] / p[:, 2:] - dst_pts, axis=1)
    out = Path(args.out)
    rig = _load_rig(out)
    key = f"{args.src}->{args.dst}"
    rig.homographies.pop(f"{args.dst}->{args.src}", None)  # one direction per pair: the new one
    rig.homographies[key] = H
    save_calibration(out, rig)
    _say(args, f"{key}: {len(ps)} view pair(s), {len(src_pts)} corners, transfer error mean {err.mean():.2f} px, "
               f"max {err.max():.2f} px")
    _say(args, f"wrote homography {key!r} to {out}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ros2_evmicro.core.calib import load_calibration

    rig = load_calibration(args.file)
    for name, cam in sorted(rig.cameras.items()):
        rms = f", RMS {cam.rms_px:.3f} px" if cam.rms_px is not None else ""
        print(f"camera {name}: {cam.width}x{cam.height}, fx {cam.fx:.2f}, fy {cam.fy:.2f}, "
              f"cx {cam.K[0, 2]:.2f}, cy {cam.K[1, 2]:.2f}{rms}")
    for key, H in sorted(rig.homographies.items()):
        rows = "; ".join(" ".join(f"{v:.6g}" for v in r) for r in H)
        print(f"homography {key}: [{rows}]")
    if not rig.cameras and not rig.homographies:
        print(f"{args.file}: empty calibration")
    return 0


# ---------------------------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser("calib", help="calibrate the rig: intrinsics (frames or blinking board on events), "
                       "face-plane homographies")
    ss = p.add_subparsers(dest="calib_command", metavar="ACTION", required=True)

    def common(q, camera_default: str | None):
        q.add_argument("--pattern", default="9x6", help="inner corners COLSxROWS (default 9x6)")
        q.add_argument("--out", required=True, help="calibration YAML to write or merge into")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if camera_default is not None:
            q.add_argument("--camera", default=camera_default, help=f"camera name in the file (default "
                           f"{camera_default})")
            q.add_argument("--square-mm", type=float, default=25.0, help="side of one square (mm)")
            q.add_argument("--min-views", type=int, default=3, help="least views with the board (default 3)")

    i = ss.add_parser("intrinsics", help="frame camera intrinsics from chessboard images or a video")
    i.add_argument("--images", required=True, help="folder of images, or a video file")
    i.add_argument("--every", type=int, default=10, help="with a video: use every n-th frame (default 10)")
    i.add_argument("--max-views", type=int, default=60, help="stop after this many views with the board (0 = all)")
    common(i, "davis")
    i.set_defaults(func=_intrinsics)

    e = ss.add_parser("events", help="event camera intrinsics from a recording of a blinking chessboard")
    e.add_argument("--raw", default="", help="Prophesee RAW file (EVT 2.0 / 3.0)")
    e.add_argument("--aedat4", default="", help="iniVation AEDAT4 file")
    e.add_argument("--width", type=int, default=0, help="sensor width when the file does not say")
    e.add_argument("--height", type=int, default=0, help="sensor height when the file does not say")
    e.add_argument("--window-ms", type=float, default=33.0, help="count-frame window (ms, default 33)")
    e.add_argument("--windows-per-view", type=int, default=15,
                   help="frames summed into one blink image (default 15, 0.5 s at 33 ms)")
    e.add_argument("--min-events", type=int, default=1000, help="skip views with fewer events")
    e.add_argument("--save-images", default="", help="write the blink images (png) to this folder")
    common(e, "evk4")
    e.set_defaults(func=_events)

    h = ss.add_parser("homography", help="face-plane homography src->dst from matched chessboard views")
    h.add_argument("--src-images", required=True, help="folder or video of the source camera")
    h.add_argument("--dst-images", required=True, help="folder or video of the destination camera (same poses, "
                   "same order)")
    h.add_argument("--src", required=True, help="source camera name (e.g. davis, webcam)")
    h.add_argument("--dst", required=True, help="destination camera name (e.g. evk4)")
    h.add_argument("--every", type=int, default=1, help="with videos: use every n-th frame")
    h.add_argument("--ransac-px", type=float, default=3.0, help="RANSAC inlier threshold (px; 0 = least squares)")
    common(h, None)
    h.set_defaults(func=_homography)

    s = ss.add_parser("show", help="print a calibration file")
    s.add_argument("file")
    s.set_defaults(func=_show)

"""Dataset building: recorded sessions (rosbag2 + markers) or the simulator -> one ``.npz`` per AU take.

A clip is one performed take of one AU (a protocol segment such as ``S01_AU12_t1`` that reached the
``perform`` phase and was not marked ``redo``), cut from ``perform onset - margin_s`` to ``perform offset +
margin_s`` (clipped to the recording). Its windows lie on the slicer's grid ``k * window_us`` of the
events' time base (the same grid the live slicer node cuts), so a window of the dataset is a frame of the
live ``<cam>/frames`` topic.

Per clip (``clips/<clip_id>.npz``, compressed; every array indexed by window ``k = 0..T-1``):

==================  ======================  ===========================================================
key                 shape, dtype            meaning
==================  ======================  ===========================================================
``t_us``            (T,) int64              window start (us, the events' time base)
``events_<cam>``    (T, 2, S, S) float32    event frames of Eq. 1 (ch 0 OFF, 1 ON) of event camera
                                            ``<cam>`` (davis, evk4) through :class:`~.slicer.Slicer`
                                            and the slicer node's face crop (``crop_resize``, counts kept)
``rgb``             (T, 3, S, S) uint8      webcam face crop, RGB, the frame nearest the window centre
``gray``            (T, 1, S, S) uint8      the same crop in grey: the cVAE's 64x64 target and the
                                            grey-modality input
``gray_big``        (T, B, B) uint8         the same crop at ``big_size`` (128) for larger decoders
``perform``         (2,) int64              first and one-past-last window of the perform phase
``meta``            () str                  JSON of the clip's index row
==================  ======================  ===========================================================

``S`` = ``crop_size`` (64). The face box of a window is the newest box stamped at or before the window's
end (the slicer node's rule). Boxes come from the recorded ``/<cam>/face_roi`` topic, else from another
camera's ``face_roi_<cam>`` topic, else mapped from another camera's boxes through the calibration
homography (``session.yaml`` ``calibration_files``; ``sim`` = the simulated rig), else from
:class:`~.face.FaceDetector` run offline on the camera's own frames (DAVIS APS, webcam).

The folder also holds ``index.csv`` and ``index.json`` (one row per clip), ``summary.md`` (the paper's
Table 2: subjects, clips per AU, frames, events per clip, lux) and ``failures.json`` (clips that could not be
built, with the reason). Building is resumable: a clip whose ``.npz`` exists is not rebuilt, every file is
written atomically (temporary name, then rename).

The simulator path (:func:`build_sim`) renders each take with :func:`~.sim.rig.render_clip` and feeds the
result through the very same :func:`process_clip` as the session path.

This module imports numpy, OpenCV and the core (no rclpy, no torch).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import traceback
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from ros2_evmicro.core.au import AUS, au_index
from ros2_evmicro.core.face import FaceError, crop_resize, map_box, square_box
from ros2_evmicro.core.roi import SteadyBox, crop_counts
from ros2_evmicro.core.slicer import Slicer

__all__ = [
    "BoxTrack",
    "BuildConfig",
    "BuildReport",
    "ClipSource",
    "DatasetError",
    "EVENT_CAMERAS",
    "INDEX_FIELDS",
    "build_sessions",
    "build_sim",
    "crop_counts",
    "event_frames",
    "format_summary",
    "load_index",
    "process_clip",
    "session_clip_sources",
    "sim_clip_source",
    "sim_lux",
    "write_index",
]

EVENT_CAMERAS = ("davis", "evk4")
FRAME_CAMERAS = ("webcam",)
SENSOR_SIZES = {"davis": (346, 260), "evk4": (1280, 720)}
SIM_FACE_DEPTH_M = 0.8
"""Face-plane depth of calibration 'sim' (same as the face detector node's ``calibration_file: sim``)."""

INDEX_FIELDS = (
    "clip_id", "subject", "au", "au_code", "label", "trial", "cameras", "frames", "lux", "duration_s",
    "perform_s", "events_davis", "events_evk4", "source", "file",
)


class DatasetError(ValueError):
    """A session cannot be read into clips, a clip cannot be built, or a dataset folder is malformed."""


def _slicer_default(name: str) -> Any:
    """The slicer node's default of parameter ``name``: the builder crops as the node does."""
    from ros2_evmicro.specs import get_spec

    return get_spec("slicer")[name].default


@dataclass(frozen=True)
class BuildConfig:
    """How clips are cut and cropped (times in microseconds / seconds, sizes in pixels)."""

    window_us: int = 33_000
    margin_s: float = 1.0
    crop_size: int = 64
    big_size: int = 128
    crop_margin: float = 0.2
    late_tolerance_us: int = 2_000
    detector: str = "mtcnn"
    detect_every: int = 3
    roi_deadband: float = field(default_factory=lambda: _slicer_default("roi_deadband"))

    def __post_init__(self) -> None:
        if self.window_us <= 0 or self.margin_s < 0 or self.crop_size < 4 or self.big_size < 4:
            raise DatasetError(f"bad build config {self}: window_us > 0, margin_s >= 0, sizes >= 4")
        if self.detector not in ("mtcnn", "haar"):
            raise DatasetError(f"detector must be 'mtcnn' or 'haar', got {self.detector!r}")
        if not 0.0 <= self.roi_deadband <= 1.0:
            raise DatasetError(f"roi_deadband must be within 0..1, got {self.roi_deadband}")


# ---------------------------------------------------------------------------------------------
# face boxes over time
# ---------------------------------------------------------------------------------------------


@dataclass
class BoxTrack:
    """Face boxes of one camera with their stamps (us): the slicer node's RoiHistory, offline."""

    stamps_us: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)

    @classmethod
    def constant(cls, box) -> BoxTrack:
        return cls([-(2**62)], [cast(tuple[float, float, float, float], tuple(float(v) for v in box))])

    def __len__(self) -> int:
        return len(self.stamps_us)

    def add(self, stamp_us: int, box) -> None:
        """Keep a box; one older than the newest kept is ignored (as the node does)."""
        if self.stamps_us and stamp_us < self.stamps_us[-1]:
            return
        self.stamps_us.append(int(stamp_us))
        self.boxes.append(cast(tuple[float, float, float, float], tuple(float(v) for v in box)))

    def at(self, t_us: int) -> tuple[float, float, float, float]:
        """Newest box stamped at or before ``t_us``; the oldest one when all are newer."""
        if not self.stamps_us:
            raise DatasetError("no face box")
        i = max(bisect_right(self.stamps_us, int(t_us)) - 1, 0)
        return self.boxes[i]

    def held(self, deadband: float) -> BoxTrack:
        """The crop boxes the slicer node uses with ``roi_deadband`` (:class:`~ros2_evmicro.core.roi.SteadyBox`)."""
        out, steady = BoxTrack(), SteadyBox(deadband)
        for s, b in zip(self.stamps_us, self.boxes, strict=True):
            out.add(s, steady.update(b))
        return out

    def mapped(self, H: np.ndarray, size: tuple[int, int] | None) -> BoxTrack:
        """The same track in another camera's pixels through homography ``H``."""
        out = BoxTrack()
        for s, b in zip(self.stamps_us, self.boxes, strict=True):
            try:
                out.add(s, map_box(b, H, *(size or (None, None))))
            except FaceError:
                continue
        return out


# ---------------------------------------------------------------------------------------------
# the one processing path
# ---------------------------------------------------------------------------------------------


@dataclass
class ClipSource:
    """Everything one clip is made from, whatever its origin (a session bag or the simulator).

    Times are microseconds on the events' time base. ``events``: camera -> (EVENT_DTYPE array, width,
    height); ``frames``: webcam frames ``[(stamp_us, bgr8)]`` sorted by stamp; ``boxes``: camera -> track.
    """

    clip_id: str
    subject: str
    au: int
    trial: int
    lux: float
    t_start_us: int
    t_end_us: int
    perform_us: tuple[int, int]
    events: dict[str, tuple[np.ndarray, int, int]] = field(default_factory=dict)
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)
    boxes: dict[str, BoxTrack] = field(default_factory=dict)
    source: str = ""


def window_grid(t_start_us: int, t_end_us: int, window_us: int) -> np.ndarray:
    """Window starts (us) on the grid ``k * window_us`` covering ``[t_start_us, t_end_us)``."""
    k0 = int(t_start_us) // window_us
    k1 = -(-int(t_end_us) // window_us)
    return np.arange(k0, max(k1, k0), dtype=np.int64) * window_us


def event_frames(events: np.ndarray, width: int, height: int, starts_us: np.ndarray, window_us: int,
                 late_tolerance_us: int = 2_000) -> tuple[list[np.ndarray], int]:
    """Full-sensor count frames ``(2, H, W)`` uint16 of the windows starting at ``starts_us`` (one grid),
    through the streaming :class:`Slicer` (as the node); returns (frames, events counted)."""
    n = len(starts_us)
    zero = np.zeros((2, height, width), np.uint16)
    if n == 0:
        return [], 0
    t0, t1 = int(starts_us[0]), int(starts_us[-1]) + window_us
    if len(events):
        t = events["t"]
        if np.any(np.diff(t) < 0):
            events = events[np.argsort(t, kind="stable")]
            t = events["t"]
        i0, i1 = np.searchsorted(t, [t0, t1], side="left")
        events = events[i0:i1]
    sl = Slicer(width, height, window_us, late_tolerance_us, t0=t0, on_invalid="drop",
                max_empty_windows=n + 1)
    out: list[np.ndarray | None] = [None] * n
    step = 200_000
    for i in range(0, len(events), step):
        for f in sl.push(events[i:i + step]):
            k = (f.t_start_us - t0) // window_us
            if 0 <= k < n:
                out[k] = f.counts
    for f in sl.flush():
        k = (f.t_start_us - t0) // window_us
        if 0 <= k < n:
            out[k] = f.counts
    return [zero if f is None else f for f in out], sl.stats.events_counted


def _nearest_frames(stamps: np.ndarray, centres: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(stamps, centres), 1, max(len(stamps) - 1, 1))
    left = stamps[np.maximum(i - 1, 0)]
    right = stamps[np.minimum(i, len(stamps) - 1)]
    return np.where(np.abs(centres - left) <= np.abs(right - centres), i - 1, i).clip(0, len(stamps) - 1)


def process_clip(src: ClipSource, cfg: BuildConfig = BuildConfig()) -> tuple[dict[str, np.ndarray], dict]:
    """Turn a :class:`ClipSource` into the clip's arrays (see the module docstring) and its index row."""
    w_us = cfg.window_us
    starts = window_grid(src.t_start_us, src.t_end_us, w_us)
    if len(starts) == 0:
        raise DatasetError(f"{src.clip_id}: empty clip window [{src.t_start_us}, {src.t_end_us}) us")
    arrays: dict[str, np.ndarray] = {"t_us": starts}
    row: dict[str, Any] = {"events_davis": 0, "events_evk4": 0}
    cams = []
    for cam, (ev, width, height) in sorted(src.events.items()):
        track = src.boxes.get(cam)
        if track is None or not len(track):
            raise DatasetError(f"{src.clip_id}: no face box for {cam}")
        full, n_ev = event_frames(ev, width, height, starts, w_us, cfg.late_tolerance_us)
        crops = np.stack([
            crop_counts(f, track.at(int(s) + w_us), cfg.crop_size, cfg.crop_margin) for f, s in zip(full, starts,
                                                                                                    strict=True)
        ])
        arrays[f"events_{cam}"] = crops.astype(np.float32)
        row[f"events_{cam}"] = int(n_ev)
        cams.append(cam)
    if src.frames:
        track = src.boxes.get("webcam")
        if track is None or not len(track):
            raise DatasetError(f"{src.clip_id}: no face box for the webcam")
        stamps = np.asarray([s for s, _ in src.frames], np.int64)
        pick = _nearest_frames(stamps, starts + w_us // 2)
        cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        rgb, gray, big = [], [], []
        for i in pick:
            i = int(i)
            if i not in cache:
                s, img = src.frames[i]
                box = track.at(s)
                c = crop_resize(img, box, cfg.crop_size, cfg.crop_margin)
                cb = crop_resize(img, box, cfg.big_size, cfg.crop_margin)
                if c.ndim == 2:  # a grey webcam
                    c, cb = cv2.cvtColor(c, cv2.COLOR_GRAY2BGR), cv2.cvtColor(cb, cv2.COLOR_GRAY2BGR)
                cache[i] = (cv2.cvtColor(c, cv2.COLOR_BGR2RGB).transpose(2, 0, 1),
                            cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)[None], cv2.cvtColor(cb, cv2.COLOR_BGR2GRAY))
            a, b, c2 = cache[i]
            rgb.append(a)
            gray.append(b)
            big.append(c2)
        arrays["rgb"] = np.ascontiguousarray(np.stack(rgb), dtype=np.uint8)
        arrays["gray"] = np.ascontiguousarray(np.stack(gray), dtype=np.uint8)
        arrays["gray_big"] = np.ascontiguousarray(np.stack(big), dtype=np.uint8)
        cams.append("webcam")
    if not cams:
        raise DatasetError(f"{src.clip_id}: no camera data in the clip window")
    p0, p1 = src.perform_us
    k0 = int(np.clip((p0 - int(starts[0])) // w_us, 0, len(starts)))
    k1 = int(np.clip(-(-(p1 - int(starts[0])) // w_us), k0, len(starts)))
    arrays["perform"] = np.asarray([k0, k1], np.int64)
    row.update(
        clip_id=src.clip_id, subject=src.subject, au=int(src.au), au_code=f"AU{int(src.au)}",
        label=au_index(int(src.au)), trial=int(src.trial), cameras=";".join(cams), frames=len(starts),
        lux=round(float(src.lux), 3), duration_s=round(len(starts) * w_us / 1e6, 4),
        perform_s=round((p1 - p0) / 1e6, 4), source=src.source, file=f"clips/{src.clip_id}.npz",
    )
    arrays["meta"] = np.asarray(json.dumps(row))
    return arrays, row


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_clip(out: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``clips/<id>.npz`` atomically; returns its path."""
    row = json.loads(str(arrays["meta"]))
    path = Path(out) / row["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs: a key might be allow_pickle
    _atomic_bytes(path, buf.getvalue())
    return path


def read_meta(path: Path) -> dict:
    """The index row stored in a clip file (DatasetError when the file is unreadable)."""
    try:
        with np.load(path) as z:
            return json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError) as err:
        raise DatasetError(f"cannot read clip {path}: {err}") from None


def write_index(out: Path, rows: list[dict], failures: list[dict]) -> None:
    """``index.csv``, ``index.json``, ``summary.md`` and ``failures.json`` of a dataset folder."""
    out = Path(out)
    rows = sorted(rows, key=lambda r: r["clip_id"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _atomic_bytes(out / "index.csv", buf.getvalue().encode())
    _atomic_bytes(out / "index.json", json.dumps(rows, indent=1).encode())
    _atomic_bytes(out / "failures.json", json.dumps(failures, indent=1).encode())
    _atomic_bytes(out / "summary.md", format_summary(rows).encode())


def load_index(folder: str | os.PathLike) -> list[dict]:
    """Rows of a dataset's ``index.json``."""
    p = Path(folder) / "index.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{folder} is not a dataset folder (no index.json; build one with "
                           "`evmicro dataset build`)") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{p} is not valid JSON: {err}") from None


def _stats(v: Sequence[float]) -> str:
    if not len(v):
        return "-"
    a = np.asarray(v, np.float64)
    return f"{a.mean():,.0f} ± {a.std():,.0f}"


def format_summary(rows: list[dict]) -> str:
    """The paper's Table 2 for a dataset (markdown): subjects, clips per AU, frames, events, lux."""
    subjects = sorted({r["subject"] for r in rows})
    lines = ["# Dataset summary", "", "| | |", "|---|---|",
             f"| subjects | {len(subjects)} ({', '.join(subjects)}) |",
             f"| clips | {len(rows)} |",
             f"| frames (33 ms windows) | {sum(int(r['frames']) for r in rows):,} |",
             f"| frames per clip | {_stats([int(r['frames']) for r in rows])} |"]
    for cam in EVENT_CAMERAS:
        ev = [int(r[f"events_{cam}"]) for r in rows if cam in r["cameras"].split(";")]
        if ev:
            lines.append(f"| events per clip ({cam}) | {_stats(ev)} |")
    lux = [float(r["lux"]) for r in rows]
    if lux:
        lines.append(f"| lux | {min(lux):.0f} - {max(lux):.0f} (mean {np.mean(lux):.0f}) |")
    cams = sorted({c for r in rows for c in r["cameras"].split(";") if c})
    lines.append(f"| cameras | {', '.join(cams)} |")
    lines += ["", "| AU | name | clips | frames |", "|---|---|---:|---:|"]
    for a in AUS:
        sel = [r for r in rows if int(r["au"]) == a.number]
        lines.append(f"| {a.code} | {a.name} | {len(sel)} | {sum(int(r['frames']) for r in sel):,} |")
    return "\n".join(lines) + "\n"


@dataclass
class BuildReport:
    """What a build did: clips written, skipped (already there), failed (with reasons)."""

    out: Path
    written: int = 0
    skipped: int = 0
    failures: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    clip_seconds: float = 0.0

    def text(self) -> str:
        s = (f"{self.out}: {len(self.rows)} clips ({self.written} written, {self.skipped} already there), "
             f"{len(self.failures)} failed, {self.clip_seconds:.1f} s of clips in {self.seconds:.1f} s")
        for f in self.failures:
            s += f"\n  FAILED {f['clip_id']}: {f['error']}"
        return s


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", disable=quiet, leave=False)


def _check_build(out: Path, settings: dict) -> None:
    """Refuse to add clips made with other settings to a dataset folder (``build.json`` records them)."""
    out.mkdir(parents=True, exist_ok=True)
    p = out / "build.json"
    if p.is_file():
        old = json.loads(p.read_text())
        diffs = [f"{k}: folder has {old.get(k)!r}, asked {v!r}" for k, v in settings.items()
                 if k in old and old[k] != v]
        if diffs:
            raise DatasetError(f"{out} holds clips built with other settings ({'; '.join(diffs)}); use another "
                               "--out (or delete it)")
        settings = {**old, **settings}
    _atomic_bytes(p, json.dumps(settings, indent=1).encode())


def _run_jobs(out: Path, jobs: list[tuple[str, Callable[[], ClipSource]]], cfg: BuildConfig, workers: int,
              quiet: bool, desc: str, prior_failures: list[dict] | None = None) -> BuildReport:
    """Build each job's clip unless its file exists; collect rows and failures; write the index."""
    t0 = time.perf_counter()
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for stale in (out / "clips").glob(".*.tmp"):  # left by a build that was killed while writing
        stale.unlink(missing_ok=True)
    rep = BuildReport(out, failures=list(prior_failures or []))
    todo = []
    for clip_id, make in jobs:
        path = out / "clips" / f"{clip_id}.npz"
        if path.is_file():
            try:
                rep.rows.append(read_meta(path))
                rep.skipped += 1
                continue
            except DatasetError:
                path.unlink()
        todo.append((clip_id, make))
    bar = _progress(len(todo), desc, quiet)
    try:
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
            with ctx.Pool(workers) as pool:
                for res in pool.imap_unordered(_job, [(cid, mk, cfg, str(out)) for cid, mk in todo]):
                    _collect(rep, res)
                    bar.update(1)
        else:
            for cid, mk in todo:
                _collect(rep, _job((cid, mk, cfg, str(out))))
                bar.update(1)
    finally:
        bar.close()
        write_index(out, rep.rows, rep.failures)
    rep.seconds = time.perf_counter() - t0
    return rep


def _job(args) -> tuple[str, dict | None, str, float]:
    clip_id, make, cfg, out = args
    try:
        src = make()
        arrays, row = process_clip(src, cfg)
        write_clip(Path(out), arrays)
        return clip_id, row, "", (src.t_end_us - src.t_start_us) / 1e6
    except Exception as err:  # noqa: BLE001 - one bad clip is reported, not fatal
        msg = f"{type(err).__name__}: {err}"
        if not isinstance(err, (DatasetError, FaceError, OSError)):
            msg += " | " + traceback.format_exc(limit=3).strip().splitlines()[-2].strip()
        return clip_id, None, msg, 0.0


def _collect(rep: BuildReport, res) -> None:
    clip_id, row, err, secs = res
    if row is None:
        rep.failures.append({"clip_id": clip_id, "error": err})
    else:
        rep.rows.append(row)
        rep.written += 1
        rep.clip_seconds += secs


# ---------------------------------------------------------------------------------------------
# simulator path
# ---------------------------------------------------------------------------------------------


def sim_lux(subject: int) -> float:
    """Illuminance (lux) of simulated subject ``subject``: seeded, 150..900 lux (office to daylight)."""
    return float(np.round(np.random.default_rng([int(subject), 0x10C5]).uniform(150.0, 900.0), 1))


def sim_subject_name(subject: int) -> str:
    return f"S{int(subject):02d}"


def sim_clip_source(subject: int, au: int, trial: int = 1, cameras: Sequence[str] = ("davis", "webcam"),
                    duration_s: float = 2.5, margin_s: float = 1.0, lux: float | None = None,
                    render_hz: dict[str, float] | None = None, webcam_roi: bool = True) -> ClipSource:
    """Render one take (``render_clip(subject, au, cam, duration_s, lux, seed=trial)`` per camera) as a
    :class:`ClipSource`: the perform window is the take's action, the crop box the clip's face box.

    ``webcam_roi`` renders only the face region of the webcam (about 2x faster; same face, another noise
    draw); False renders full 1920x1080 frames, as a recorded session holds them."""
    from ros2_evmicro.core.sim.rig import render_clip

    lux = sim_lux(subject) if lux is None else float(lux)
    name = sim_subject_name(subject)
    au_num = AUS[au_index(au)].number
    src = ClipSource(f"{name}_AU{au_num}_t{int(trial)}", name, au_num, int(trial), lux, 0, 0, (0, 0),
                     source="sim")
    dur_us = int(round(duration_s * 1e6))
    for cam in cameras:
        hz = (render_hz or {}).get(cam)
        clip = render_clip(int(subject), au_num, cam, duration_s, lux, seed=int(trial),
                           frames=cam in FRAME_CAMERAS, render_hz=hz, webcam_roi=webcam_roi)
        a = clip.action
        src.perform_us = (int(round(a.t_start_s * 1e6)), int(round((a.t_start_s + a.duration_s) * 1e6)))
        ox, oy = clip.origin  # frames of a webcam region: the box in the region's pixels
        b = clip.face_box
        src.boxes[cam] = BoxTrack.constant((b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy))
        if cam in EVENT_CAMERAS:
            src.events[cam] = (clip.events, clip.width, clip.height)
        else:
            src.frames = [(int(t), img) for t, img in clip.frames]
    m = int(round(margin_s * 1e6))
    src.t_start_us = max(0, src.perform_us[0] - m)
    src.t_end_us = min(dur_us, src.perform_us[1] + m)
    return src


class _SimJob:
    """A picklable job: render and return one simulated clip source."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __call__(self) -> ClipSource:
        return sim_clip_source(*self.args, **self.kwargs)


def _parse_aus(aus: Iterable[int | str] | None) -> list[int]:
    if aus is None:
        return [a.number for a in AUS]
    return [AUS[au_index(a)].number for a in aus]


def build_sim(out: str | os.PathLike, subjects: int | Sequence[int], *, cameras: Sequence[str] = ("davis", "webcam"),
              trials: int = 1, aus: Iterable[int | str] | None = None, duration_s: float = 2.5,
              cfg: BuildConfig = BuildConfig(), workers: int = 1, quiet: bool = False,
              render_hz: dict[str, float] | None = None, webcam_roi: bool = True) -> BuildReport:
    """Simulated dataset: subjects (1..N, or the given numbers) x AUs x trials, every camera each take
    (see :func:`sim_clip_source`)."""
    from ros2_evmicro.core.sim.rig import CAMERAS

    bad = [c for c in cameras if c not in CAMERAS]
    if bad or not cameras:
        raise DatasetError(f"cameras must be among {CAMERAS}, got {list(cameras)}")
    subs = list(range(1, int(subjects) + 1)) if isinstance(subjects, int) else [int(s) for s in subjects]
    if not subs or int(trials) < 1:
        raise DatasetError(f"need >= 1 subject and trial, got {subs} and {trials}")
    jobs: list[tuple[str, Callable[[], ClipSource]]] = []
    for s in subs:
        for au in _parse_aus(aus):
            for k in range(1, int(trials) + 1):
                cid = f"{sim_subject_name(s)}_AU{au}_t{k}"
                jobs.append((cid, _SimJob(s, au, k, tuple(cameras), duration_s, cfg.margin_s,
                                          render_hz=render_hz, webcam_roi=webcam_roi)))
    out = Path(out)
    _check_build(out, {"config": asdict(cfg), "sim_duration_s": float(duration_s),
                       "sim_cameras": list(cameras), "sim_render_hz": dict(render_hz or {}),
                       "sim_webcam_roi": bool(webcam_roi)})
    rep = _run_jobs(out, jobs, cfg, workers, quiet, "simulating")
    _merge_existing(out, rep)
    return rep


def _merge_existing(out: Path, rep: BuildReport) -> None:
    """Keep clips of the folder that this build did not list (several builds into one folder)."""
    have = {r["clip_id"] for r in rep.rows}
    extra = []
    for p in sorted((out / "clips").glob("*.npz")):
        if p.stem not in have:
            try:
                extra.append(read_meta(p))
            except DatasetError:
                continue
    if extra:
        rep.rows.extend(extra)
        write_index(out, rep.rows, rep.failures)


# ---------------------------------------------------------------------------------------------
# session path
# ---------------------------------------------------------------------------------------------


def _session_homography(info, folder: Path, src: str, dst: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Homography src -> dst from the session's calibration files ('sim' = simulated rig)."""
    from ros2_evmicro.core.calib import CalibError, load_calibration

    errors = []
    for f in list(getattr(info, "calibration_files", []) or []):
        if f == "sim":
            from ros2_evmicro.core.sim.sensors import default_geometry, homography

            geo = default_geometry()
            if src in geo and dst in geo:
                return homography(geo[src], geo[dst], SIM_FACE_DEPTH_M), (geo[dst].width, geo[dst].height)
            errors.append(f"sim rig has no {src}/{dst}")
            continue
        p = Path(f) if Path(f).is_absolute() else folder / f
        try:
            cal = load_calibration(p)
            H = cal.homography(src, dst)
        except CalibError as err:
            errors.append(str(err))
            continue
        cam = cal.cameras.get(dst)
        return H, ((cam.width, cam.height) if cam is not None else None)
    raise DatasetError(f"no homography {src}->{dst} in the session's calibration files "
                       f"{getattr(info, 'calibration_files', [])} ({'; '.join(errors) or 'none listed'})")


def _read_boxes(reader, topic: str) -> BoxTrack:
    tr = BoxTrack()
    for _, _, m in reader.messages([topic]):
        pts = m.polygon.points
        if not len(pts):
            continue
        xs, ys = [p.x for p in pts], [p.y for p in pts]
        stamp_us = (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec) // 1000
        try:
            square_box((min(xs), min(ys), max(xs), max(ys)), 0.0)
        except FaceError:
            continue
        tr.add(stamp_us, (min(xs), min(ys), max(xs), max(ys)))
    return tr


def _detect_boxes(reader, topic: str, t0_ns: int, t1_ns: int, cfg: BuildConfig) -> BoxTrack:
    """Offline face detection on a camera's frames in [t0, t1) (every ``detect_every``-th frame)."""
    from ros2_evmicro.core.face import BoxTracker, FaceDetector

    try:
        det = FaceDetector(cfg.detector)
    except (ImportError, OSError, RuntimeError):
        det = FaceDetector("haar")
    tracker = BoxTracker(alpha=1.0, hold_frames=10 * cfg.detect_every)
    tr = BoxTrack()
    for i, (_, stamp_ns, img) in enumerate(reader.images(topic, t0_ns, t1_ns)):
        if i % cfg.detect_every:
            continue
        box = tracker.update(det.detect(np.ascontiguousarray(img)))
        if box is not None:
            tr.add(stamp_ns // 1000, box)
    return tr


def _sensor_size(reader, cam: str) -> tuple[int, int]:
    topic = f"/{cam}/camera_info"
    if topic in reader.topics:
        for _, _, m in reader.messages([topic]):
            if m.width and m.height:
                return int(m.width), int(m.height)
    if cam in SENSOR_SIZES:
        return SENSOR_SIZES[cam]
    raise DatasetError(f"no {topic} in the bag and no known sensor size for {cam!r}")


def _camera_boxes(reader, info, folder: Path, cam: str, cams: Sequence[str], window_ns: tuple[int, int],
                  cfg: BuildConfig, cache: dict) -> BoxTrack:
    """Face boxes of ``cam``: its own ``face_roi`` topic, another camera's ``face_roi_<cam>``, another
    camera's boxes mapped through the calibration, or (last) offline detection on its frames in
    ``window_ns``."""
    if cam not in cache:
        topics = reader.topics
        tr = _read_boxes(reader, f"/{cam}/face_roi") if f"/{cam}/face_roi" in topics else BoxTrack()
        for t in sorted(topics):
            if not len(tr) and t.endswith(f"/face_roi_{cam}"):
                tr = _read_boxes(reader, t)
        for other in cams:
            if not len(tr) and other != cam and f"/{other}/face_roi" in topics:
                try:
                    H, size = _session_homography(info, folder, other, cam)
                except DatasetError:
                    continue
                tr = _read_boxes(reader, f"/{other}/face_roi").mapped(H, size)
        cache[cam] = tr
    tr = cache[cam]
    if not len(tr) and f"/{cam}/image_raw" in reader.topics:
        tr = _detect_boxes(reader, f"/{cam}/image_raw", *window_ns, cfg)
    if not len(tr):
        raise DatasetError(f"no face box for {cam}: no /{cam}/face_roi, no mapping from another camera's "
                           "boxes (calibration_files in session.yaml), and no face found in its frames")
    return tr.held(cfg.roi_deadband)


def session_clip_sources(folder: str | os.PathLike, cfg: BuildConfig = BuildConfig()
                         ) -> tuple[list[tuple[str, Callable[[], ClipSource]]], list[dict]]:
    """The clips of a session folder as build jobs ``[(clip_id, make)]``, and the takes skipped (redone,
    never performed) as failure-style rows with the reason."""
    from ros2_evmicro.core.session import SESSION_FILE, SessionInfo, read_markers, segments_from_markers

    folder = Path(folder)
    if not (folder / SESSION_FILE).is_file():
        raise DatasetError(f"{folder} is not a session folder (no {SESSION_FILE})")
    info = SessionInfo.read(folder)
    from ros2_evmicro.core.bagio import BagReader, find_bag_dir

    with BagReader(find_bag_dir(folder)) as r:
        markers = r.markers() if "/protocol/marker" in r.topics else []
        bag_start, bag_end = r.start_ns, r.end_ns
    if not markers:
        markers = read_markers(folder)
    if not markers:
        raise DatasetError(f"{folder}: no protocol markers (bag topic /protocol/marker or markers.csv)")
    segs = segments_from_markers(markers)
    rec0 = int(info.start_ns or bag_start)
    rec1 = int(info.end_ns or bag_end)
    jobs: list[tuple[str, Callable[[], ClipSource]]] = []
    skipped: list[dict] = []
    for s in segs:
        if s.run not in ("main", ""):
            continue
        if s.status == "redo":
            skipped.append({"clip_id": s.name, "error": "take marked redo (excluded)", "source": str(folder)})
            continue
        if s.perform is None:
            skipped.append({"clip_id": s.name, "error": f"take never performed ({s.status})",
                            "source": str(folder)})
            continue
        jobs.append((s.name, _SessionJob(str(folder), s.name, s.au, s.trial, s.perform, rec0, rec1, cfg)))
    return jobs, skipped


class _SessionJob:
    """A picklable job: read one take of a session bag into a :class:`ClipSource`."""

    def __init__(self, folder: str, name: str, au: int, trial: int, perform: tuple[int, int], rec0: int,
                 rec1: int, cfg: BuildConfig) -> None:
        self.folder, self.name, self.au, self.trial = folder, name, au, trial
        self.perform, self.rec0, self.rec1, self.cfg = perform, rec0, rec1, cfg

    def __call__(self) -> ClipSource:
        from ros2_evmicro.core.bagio import BagReader, find_bag_dir
        from ros2_evmicro.core.session import SessionInfo

        folder = Path(self.folder)
        info = SessionInfo.read(folder)
        cfg = self.cfg
        m_ns = int(round(cfg.margin_s * 1e9))
        p0, p1 = self.perform
        t0_ns, t1_ns = max(self.rec0, p0 - m_ns), min(self.rec1, p1 + m_ns)
        pad = 200_000_000  # packets are logged at their first event; read a bit around the window
        src = ClipSource(self.name, info.subject, int(self.au), int(self.trial), float(info.lux or 0.0),
                         t0_ns // 1000, t1_ns // 1000, (p0 // 1000, p1 // 1000), source=str(folder))
        with BagReader(find_bag_dir(folder)) as r:
            topics = r.topics
            cams = [c for c in EVENT_CAMERAS if f"/{c}/events" in topics]
            has_web = "/webcam/image_raw" in topics
            all_cams = cams + (["webcam"] if has_web else [])
            cache: dict = {}
            win = (max(0, t0_ns - pad), t1_ns + pad)
            for cam in cams:
                ev = r.events(f"/{cam}/events", *win)
                w, h = _sensor_size(r, cam)
                src.events[cam] = (ev, w, h)
                src.boxes[cam] = _camera_boxes(r, info, folder, cam, all_cams, win, cfg, cache)
            if has_web:
                frames = [(stamp // 1000, np.array(img)) for _, stamp, img in
                          r.images("/webcam/image_raw", *win)]
                frames.sort(key=lambda f: f[0])
                if frames:
                    src.frames = frames
                    src.boxes["webcam"] = _camera_boxes(r, info, folder, "webcam", all_cams, win, cfg, cache)
        return src


def build_sessions(out: str | os.PathLike, sessions: Sequence[str | os.PathLike], *,
                   cfg: BuildConfig = BuildConfig(), workers: int = 1, quiet: bool = False) -> BuildReport:
    """Dataset from recorded session folders: one clip per performed take (redone takes excluded)."""
    if not sessions:
        raise DatasetError("no session folders given")
    jobs, failures = [], []
    for s in sessions:
        try:
            j, skipped = session_clip_sources(s, cfg)
        except (DatasetError, OSError) as err:
            failures.append({"clip_id": str(s), "error": str(err)})
            continue
        jobs += j
        failures += skipped
    ids = [cid for cid, _ in jobs]
    dup = sorted({c for c in ids if ids.count(c) > 1})
    if dup:
        raise DatasetError(f"clip ids {dup} appear in several sessions (same subject and take); build them "
                           "into separate folders")
    out = Path(out)
    _check_build(out, {"config": asdict(cfg)})
    rep = _run_jobs(out, jobs, cfg, workers, quiet, "clips")
    rep.failures = failures + [f for f in rep.failures if f not in failures]
    _merge_existing(out, rep)
    write_index(out, rep.rows, rep.failures)
    return rep

"""Realism checks of the simulator: event rates per AU and per lighting level, ON/OFF balance, noise
rate, and side-by-side pictures of simulated and real DAVIS346 event frames and webcam frames.

The real recordings are optional (``../shared/data/real``); dv_processing and the video reader are
imported only when a real file is asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ros2_evmicro.core.au import AUS
from ros2_evmicro.core.events import EVENT_DTYPE, make_events
from ros2_evmicro.core.sim.face import SimError
from ros2_evmicro.core.sim.rig import SimRig, render_clip

__all__ = [
    "EventStats",
    "event_frame",
    "event_stats",
    "rate_table",
    "read_real_davis",
    "write_comparison_png",
]


@dataclass(frozen=True)
class EventStats:
    """Summary of an event stream (rates in events per second, noise in events per pixel per second)."""

    n: int
    rate_ev_s: float
    on_fraction: float
    box_rate_ev_s: float
    noise_rate_hz_px: float
    active_pixel_fraction: float

    def as_dict(self) -> dict:
        return asdict(self)


def event_stats(events: np.ndarray, width: int, height: int, duration_s: float,
                box: tuple[float, float, float, float] | None = None) -> EventStats:
    """Rates of ``events`` over ``duration_s``; with a face ``box`` (x0, y0, x1, y1) the events outside the
    box (widened by 10 %) give the noise rate per pixel, and those inside the box rate."""
    if duration_s <= 0:
        raise SimError(f"duration must be > 0 s, got {duration_s}")
    n = len(events)
    on = float(events["p"].mean()) if n else 0.0
    npix = width * height
    active = np.unique(events["y"].astype(np.int64) * width + events["x"]).size / npix if n else 0.0
    box_rate = float("nan")
    noise = n / npix / duration_s
    if box is not None:
        x0, y0, x1, y1 = box
        mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        x0, y0, x1, y1 = max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)
        inside = (events["x"] >= x0) & (events["x"] < x1) & (events["y"] >= y0) & (events["y"] < y1)
        box_rate = float(inside.sum()) / duration_s
        out_area = max(1.0, npix - (x1 - x0) * (y1 - y0))
        noise = float((~inside).sum()) / out_area / duration_s
    return EventStats(n, n / duration_s, on, box_rate, noise, float(active))


def rate_table(
    subject_seed: int = 0,
    aus=None,
    lux_levels=(150.0, 600.0, 1400.0),
    *,
    duration_s: float = 1.0,
    seed: int = 0,
    render_hz: float | None = 150.0,
) -> list[dict]:
    """One row per (AU, lux) of DAVIS346 clips: total and face-box rates, ON fraction, noise rate."""
    rows = []
    aus = [a.number for a in AUS] if aus is None else list(aus)
    for lux in lux_levels:
        for au in aus:
            clip = render_clip(subject_seed, au, "davis", duration_s, lux, seed, render_hz=render_hz)
            st = event_stats(clip.events, clip.width, clip.height, duration_s, clip.face_box)
            rows.append({"au": au, "lux": float(lux), **st.as_dict()})
    return rows


def event_frame(events: np.ndarray, width: int, height: int, t0_us: int | None = None,
                t1_us: int | None = None) -> np.ndarray:
    """bgr8 picture of the events in ``[t0_us, t1_us)``: white background, ON red, OFF blue."""
    if t0_us is not None or t1_us is not None:
        t = events["t"]
        lo = np.searchsorted(t, t0_us if t0_us is not None else t[0] if len(t) else 0)
        hi = np.searchsorted(t, t1_us) if t1_us is not None else len(t)
        events = events[lo:hi]
    img = np.full((height, width, 3), 255, np.uint8)
    on = events["p"] == 1
    img[events["y"][~on], events["x"][~on]] = (200, 60, 0)
    img[events["y"][on], events["x"][on]] = (0, 0, 220)
    return img


def read_real_davis(path: str | Path) -> tuple[np.ndarray, int, int, list[np.ndarray]]:
    """Events (EVENT_DTYPE, t re-based to the first event), width, height and APS frames of an AEDAT4
    recording, read with dv_processing."""
    try:
        import dv_processing as dv
    except ImportError:
        raise SimError("reading AEDAT4 needs dv-processing (pip install dv-processing)") from None
    rec = dv.io.MonoCameraRecording(str(path))
    w, h = rec.getEventResolution()
    chunks = []
    while True:
        b = rec.getNextEventBatch()
        if b is None:
            break
        chunks.append(b.numpy())
    frames = []
    if rec.isFrameStreamAvailable():
        while True:
            f = rec.getNextFrame()
            if f is None:
                break
            frames.append(np.asarray(f.image))
    if not chunks:
        return np.zeros(0, EVENT_DTYPE), int(w), int(h), frames
    e = np.concatenate(chunks)
    ev = make_events(e["x"], e["y"], e["polarity"].astype(np.int8), e["timestamp"] - e["timestamp"][0])
    return ev, int(w), int(h), frames


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _fit(img: np.ndarray, h: int) -> np.ndarray:
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    w = int(round(img.shape[1] * h / img.shape[0]))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def write_comparison_png(
    path: str | Path,
    *,
    real_aedat: str | Path | None = None,
    real_video: str | Path | None = None,
    subject_seed: int = 0,
    au: int = 12,
    lux: float = 600.0,
    window_ms: float = 30.0,
    seed: int = 0,
) -> dict:
    """Write a PNG: row 1 simulated vs real DAVIS346 event frames (``window_ms`` each) and APS frames,
    row 2 simulated vs real webcam frames. Missing real files leave their panels grey. Returns the event
    statistics of both event windows and the output path."""
    path = Path(path)
    win_us = int(window_ms * 1000)
    rig = SimRig(subject_seed, lux=lux, cameras=("davis", "webcam"), seed=seed, imu=False,
                 timeline=[(0.3, au, 1.0, 0.4), (0.8, 53, 0.8, 0.4)])
    evs, aps, web = [], None, None
    t_peak = int(0.45e6)
    for item in rig.stream(duration_s=1.2):
        if item[0] == "davis":
            evs.append(item[1].events)
        elif item[0] == "davis_aps" and item[1] <= t_peak:
            aps = item[2]
        elif item[0] == "webcam" and item[1] <= t_peak:
            web = item[2]
    sim_ev = np.concatenate(evs)
    w, h = rig.sensor_size("davis")
    t_sim = int(0.85e6)
    panels_top = [_label(event_frame(sim_ev, w, h, t_sim, t_sim + win_us), f"sim DAVIS346 {window_ms:.0f} ms")]
    sim_win = sim_ev[(sim_ev["t"] >= t_sim) & (sim_ev["t"] < t_sim + win_us)]
    stats: dict[str, object] = {"sim": event_stats(sim_win, w, h, window_ms / 1000).as_dict()}
    grey = np.full((h, w, 3), 128, np.uint8)
    real_aps = None
    if real_aedat is not None and Path(real_aedat).exists():
        rev, rw, rh, rframes = read_real_davis(real_aedat)
        t0 = int(rev["t"][len(rev) // 2]) if len(rev) else 0
        panels_top.append(_label(event_frame(rev, rw, rh, t0, t0 + win_us), f"real DAVIS346 {window_ms:.0f} ms"))
        sel = rev[(rev["t"] >= t0) & (rev["t"] < t0 + win_us)]
        stats["real"] = event_stats(sel, rw, rh, window_ms / 1000).as_dict()
        real_aps = rframes[0] if rframes else None
    else:
        panels_top.append(_label(grey, "real DAVIS346: n/a"))
    panels_top.append(_label(cv2.cvtColor(aps, cv2.COLOR_GRAY2BGR) if aps is not None else grey, "sim APS"))
    panels_top.append(_label(cv2.cvtColor(real_aps, cv2.COLOR_GRAY2BGR) if real_aps is not None else grey,
                             "real APS" if real_aps is not None else "real APS: n/a"))
    top = np.hstack([_fit(p, 260) for p in panels_top])
    real_web = None
    if real_video is not None and Path(real_video).exists():
        cap = cv2.VideoCapture(str(real_video))
        ok, frame = cap.read()
        cap.release()
        real_web = frame if ok else None
    if web is None:
        raise SimError(f"the simulated rig gave no webcam frame before {t_peak} us")
    row2 = [_label(_fit(web, 360), "sim webcam 1920x1080")]
    row2.append(_label(_fit(real_web, 360), "real RGB video") if real_web is not None
                else _label(np.full((360, 640, 3), 128, np.uint8), "real video: n/a"))
    bottom = np.hstack(row2)
    wmax = max(top.shape[1], bottom.shape[1])
    pad = [np.pad(r, ((0, 0), (0, wmax - r.shape[1]), (0, 0)), constant_values=255) for r in (top, bottom)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack(pad)):
        raise SimError(f"could not write {path}")
    stats["path"] = str(path)
    return stats

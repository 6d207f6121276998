"""The live demo's composite view and its end-of-run summary (pure: numpy, OpenCV, matplotlib Agg).

:func:`compose_dashboard` draws one BGR frame (default 1280x720) with OpenCV primitives only, a few ms per
frame: a banner with the drowsiness and distraction levels and the frame rate; the event frame (ON red,
OFF blue on black), the face crop or preview, the cVAE reconstruction; a heat map of the AU scores over the
last ``strip_s`` seconds; the latest alerts; the pipeline latencies; and a bar chart of the current scores
of the 21 AUs with their codes and names.

:func:`write_summary` writes ``summary.json``, ``summary.md`` and ``timeline.png`` (AU scores over time with
the alerts marked, drawn with matplotlib's Agg canvas, no pyplot state) to a folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ros2_evmicro.core.au import AU_CODES, AUS, NUM_AUS, au_index
from ros2_evmicro.core.monitor import format_event

__all__ = [
    "AuHistory",
    "DashboardError",
    "StampMatcher",
    "LEVEL_COLOURS",
    "compose_dashboard",
    "event_frame_bgr",
    "fit_image",
    "latency_stats",
    "au_heatmap",
    "write_summary",
]


class DashboardError(ValueError):
    """Bad input to the dashboard (image of an unknown layout, size too small, mismatched history)."""


BG = (22, 22, 22)
PANEL = (38, 38, 38)
TEXT = (225, 225, 225)
DIM = (140, 140, 140)
LEVEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "OK": (70, 160, 60), "WARN": (0, 165, 255), "ERROR": (40, 40, 215), "STALE": (110, 110, 110),
}
"""BGR colour of each diagnostic level (unknown levels are drawn like STALE)."""
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_SIZE = (640, 360)


# -- image helpers ----------------------------------------------------------------------------------------

def event_frame_bgr(frame: np.ndarray, clip_percentile: float = 99.0) -> np.ndarray:
    """(2, H, W) OFF/ON counts -> (H, W, 3) uint8 BGR: ON in red, OFF in blue, black where no event.

    Counts are scaled by the ``clip_percentile`` of the non-zero counts (at least 1), so one hot pixel does
    not darken the rest.
    """
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[0] != 2:
        raise DashboardError(f"event frame must be (2, H, W) OFF/ON counts, got shape {f.shape}")
    f = f.astype(np.float32, copy=False)
    nz = f[f > 0]
    scale = max(float(np.percentile(nz, clip_percentile)) if nz.size else 1.0, 1.0)
    g = np.clip(f * (255.0 / scale), 0, 255).astype(np.uint8)
    out = np.zeros((*f.shape[1:], 3), dtype=np.uint8)
    out[..., 0] = g[0]  # OFF -> blue
    out[..., 2] = g[1]  # ON -> red
    return out


def to_bgr(img: np.ndarray) -> np.ndarray:
    """mono8 (H, W), (H, W, 1) or bgr8 (H, W, 3) -> uint8 BGR; float images are scaled by their range."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise DashboardError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(np.nanmin(a)) if a.size else 0.0, float(np.nanmax(a)) if a.size else 1.0
        a = np.clip((a - lo) * (255.0 / max(hi - lo, 1e-12)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    return a[..., :3] if a.shape[2] == 4 else a


def fit_image(img: np.ndarray, w: int, h: int, nearest: bool = False) -> np.ndarray:
    """Resize ``img`` (BGR) to fit in ``w`` x ``h`` keeping its aspect ratio, centred on black."""
    ih, iw = img.shape[:2]
    out = np.zeros((h, w, 3), dtype=np.uint8)
    if ih == 0 or iw == 0:
        return out
    k = min(w / iw, h / ih)
    nw, nh = max(1, int(round(iw * k))), max(1, int(round(ih * k)))
    r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if k < 1
                   else cv2.INTER_LINEAR)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = r
    return out


def au_heatmap(au_history: np.ndarray, au_times: np.ndarray, now_s: float, strip_s: float,
               n_cols: int) -> np.ndarray:
    """(21, n_cols) float32: the highest score of each AU in each of ``n_cols`` bins covering
    ``(now_s - strip_s, now_s]`` (seconds, same clock as ``au_times``); 0 where no sample fell."""
    out = np.zeros((NUM_AUS, n_cols), dtype=np.float32)
    if au_history is None or len(au_history) == 0:
        return out
    t = np.asarray(au_times, dtype=np.float64)
    h = np.asarray(au_history, dtype=np.float32)
    if h.ndim != 2 or h.shape[1] != NUM_AUS or len(t) != len(h):
        raise DashboardError(f"AU history must be (T, {NUM_AUS}) with T times, got {h.shape} and {t.shape}")
    lo = now_s - strip_s
    i0 = int(np.searchsorted(t, lo, side="right"))
    t, h = t[i0:], h[i0:]
    t_ok = t <= now_s
    t, h = t[t_ok], h[t_ok]
    if len(t) == 0:
        return out
    col = np.clip(((t - lo) / strip_s * n_cols).astype(np.int64), 0, n_cols - 1)
    # np.maximum.at over (rows, cols) in one call
    np.maximum.at(out.T, col, h)
    return out


# -- drawing ----------------------------------------------------------------------------------------------

def _text(img: np.ndarray, s: str, x: int, y: int, scale: float, colour=TEXT, thick: int = 1) -> None:
    cv2.putText(img, s, (int(x), int(y)), _FONT, scale, colour, thick, cv2.LINE_AA)


def _fit_text(s: str, max_w: int, scale: float) -> str:
    """``s`` cut (with '..') so that it is at most ``max_w`` px wide at font ``scale``."""
    if cv2.getTextSize(s, _FONT, scale, 1)[0][0] <= max_w:
        return s
    lo, hi = 0, len(s)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cv2.getTextSize(s[:mid] + "..", _FONT, scale, 1)[0][0] <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return s[:lo] + ".."


def _panel(img: np.ndarray, x: int, y: int, w: int, h: int, title: str, fs: float) -> tuple[int, int, int, int]:
    """Draw a panel frame with a title bar; returns the content rectangle (x, y, w, h)."""
    th = int(round(22 * fs / 0.5))
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), PANEL, -1)
    _text(img, title, x + 6, y + th - 7, fs, TEXT)
    return x + 2, y + th, w - 4, h - th - 2


def _no_data(img: np.ndarray, x: int, y: int, w: int, h: int, fs: float) -> None:
    img[y:y + h, x:x + w] = (16, 16, 16)
    _text(img, "no data", x + w // 2 - int(30 * fs / 0.45), y + h // 2, fs, DIM)


def _put(img: np.ndarray, sub: np.ndarray, x: int, y: int) -> None:
    h, w = sub.shape[:2]
    img[y:y + h, x:x + w] = sub


def _fmt_ms(v: float) -> str:
    return "-" if v is None or not math.isfinite(v) else (f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}")


@dataclass(frozen=True)
class _Layout:
    """Pixel geometry of the dashboard at one size (computed once per size and titles)."""

    W: int
    H: int
    k: float
    fs: float
    m: int
    bh: int
    bx: int
    bw: int
    images: tuple[tuple[int, int, int, int], ...]  # content rects of event frame, face, recon
    strip: tuple[int, int, int, int]  # heat map rect
    alerts: tuple[int, int, int, int]
    latency: tuple[int, int, int, int]
    bars: tuple[int, int, int, int]  # AU bar column content rect
    line_h: int


def _layout_and_static(W: int, H: int, strip_s: float, on_threshold: float, face_title: str,
                       title: str) -> tuple[_Layout, np.ndarray]:
    key = (W, H, strip_s, on_threshold, face_title, title)
    hit = _STATIC_CACHE.get(key)
    if hit is not None:
        return hit
    img = np.empty((H, W, 3), dtype=np.uint8)
    img[:] = BG
    k = min(W / 1280, H / 720)
    fs = 0.45 * k
    m = max(4, int(8 * k))
    bh = int(52 * k)
    _text(img, title, m, int(bh * 0.45), fs * 1.25, TEXT, 1)
    lw = int(W * 0.56)
    y = bh + m // 2
    pw = (lw - 4 * m) // 3
    ph = pw + int(22 * k)
    rects = []
    for i, t in enumerate(("event frame (ON red, OFF blue)", face_title, "cVAE reconstruction")):
        rects.append(_panel(img, m + i * (pw + m), y, pw, ph, t, fs * 0.9))
    # strip chart with AU labels and time axis
    y2 = y + ph + m
    sh = H - y2 - int(H * 0.14) - 2 * m
    cx, cy, cw, ch = _panel(img, m, y2, lw - 2 * m, sh, f"AU scores, last {strip_s:g} s", fs * 0.9)
    label_w, ax_h = int(44 * k), int(14 * k)
    strip = (cx + label_w, cy, cw - label_w - 4, ch - ax_h)
    gx, _, gw, gh = strip
    row_h = gh / NUM_AUS
    if row_h >= 8 * k:
        for i, code in enumerate(AU_CODES):
            _text(img, code, cx + 2, int(cy + (i + 0.8) * row_h), fs * 0.7 * min(1.0, row_h / (12 * k)), DIM)
    for frac, lab in ((0.0, f"-{strip_s:g} s"), (0.5, f"-{strip_s / 2:g} s"), (1.0, "now")):
        _text(img, lab, int(gx + frac * gw) - (int(30 * k) if frac == 1.0 else 0), cy + gh + ax_h - 2, fs * 0.7,
              DIM)
    # alerts and latency
    y3 = y2 + sh + m
    aw = int((lw - 2 * m) * 0.62)
    alerts = _panel(img, m, y3, aw, H - y3 - m, "alerts", fs * 0.9)
    lx = m + aw + m
    latency = _panel(img, lx, y3, lw - m - lx, H - y3 - m, "latency p50 / p99 (ms)", fs * 0.9)
    # AU bars: codes, names, empty bars, threshold marks
    bars = _panel(img, lw, y, W - lw - m, H - y - m, "Action Units (current score)", fs * 0.9)
    lay = _Layout(W, H, k, fs, m, bh, int(W * 0.36), int(W * 0.22), tuple(rects), strip, alerts, latency, bars,
                  max(int(15 * k), 10))
    for i, au in enumerate(AUS):
        g = _bar_geometry(lay, i, on_threshold)
        _text(img, au.code, g["x_code"], g["base"], fs * 0.85, DIM)
        _text(img, au.name, g["x_name"], g["base"], fs * 0.8, DIM)
        cv2.rectangle(img, (g["x0"], g["y0"]), (g["x0"] + g["w"], g["y1"]), (55, 55, 55), -1)
        cv2.line(img, (g["x_thr"], g["y0"]), (g["x_thr"], g["y1"]), (200, 200, 200), 1)
    img.setflags(write=False)
    if len(_STATIC_CACHE) > 8:
        _STATIC_CACHE.clear()
    _STATIC_CACHE[key] = (lay, img)
    return lay, img


_STATIC_CACHE: dict[tuple, tuple[_Layout, np.ndarray]] = {}


def _bar_geometry(lay: _Layout, i: int, on_threshold: float) -> dict[str, int]:
    cx, cy, cw, ch = lay.bars
    k = lay.k
    rh = ch / NUM_AUS
    code_w, name_w, val_w = int(48 * k), int(170 * k), int(44 * k)
    x0 = cx + code_w + name_w
    w = max(10, cw - code_w - name_w - val_w - 4)
    yy = cy + i * rh
    return {"x_code": cx + 4, "x_name": cx + code_w, "base": int(yy + rh * 0.72), "x0": x0, "w": w,
            "y0": int(yy + rh * 0.2), "y1": int(yy + rh * 0.8), "x_thr": x0 + int(on_threshold * w),
            "x_val": x0 + w + 6}


def compose_dashboard(
    event_frame: np.ndarray | None = None,
    face: np.ndarray | None = None,
    recon: np.ndarray | None = None,
    au_history: np.ndarray | None = None,
    au_times: np.ndarray | None = None,
    alerts: Sequence[Mapping[str, Any]] = (),
    fps: float = float("nan"),
    latency_ms: Mapping[str, tuple[float, float]] | None = None,
    size: tuple[int, int] = (1280, 720),
    *,
    levels: Mapping[str, str] | None = None,
    level_notes: Mapping[str, str] | None = None,
    now_s: float | None = None,
    strip_s: float = 10.0,
    on_threshold: float = 0.5,
    face_title: str = "face",
    title: str = "ros2_evmicro | driver monitor",
    max_alerts: int = 5,
) -> np.ndarray:
    """One dashboard frame, (H, W, 3) uint8 BGR with ``size`` = (W, H) (at least 640x360).

    ``event_frame`` (2, H, W) OFF/ON counts; ``face`` a face crop or preview (mono8 or BGR); ``recon`` the
    cVAE reconstruction (mono8); ``au_history`` (T, 21) scores at ``au_times`` (T,) seconds, the last row
    being the current scores; ``alerts`` monitor events (dicts with ``t``, ``kind``, ``message``, newest
    last); ``fps`` the rate of the AU input; ``latency_ms`` name -> (p50, p99) in ms; ``levels`` monitor
    name (``drowsiness``, ``distraction``) -> OK/WARN/ERROR/STALE with ``level_notes`` for the reason;
    ``now_s`` the right edge of the strip chart (default: the last AU time). Any input may be None/empty:
    its panel says "no data". The static parts (titles, labels, empty bars) are drawn once per size and
    cached, so a frame costs a few ms.
    """
    W, H = int(size[0]), int(size[1])
    if W < _MIN_SIZE[0] or H < _MIN_SIZE[1]:
        raise DashboardError(f"dashboard size must be at least {_MIN_SIZE[0]}x{_MIN_SIZE[1]}, got {W}x{H}")
    hist = None if au_history is None else np.asarray(au_history, dtype=np.float32)
    times = None if au_times is None else np.asarray(au_times, dtype=np.float64)
    if hist is not None and len(hist):
        if hist.ndim != 2 or hist.shape[1] != NUM_AUS:
            raise DashboardError(f"AU history must be (T, {NUM_AUS}), got {hist.shape}")
        if times is None or len(times) != len(hist):
            raise DashboardError("AU history needs one time per row (au_times)")
    has_au = hist is not None and len(hist) > 0  # then times is not None either (checked above)
    current = hist[-1] if hist is not None and has_au else None
    if now_s is None:
        now_s = float(times[-1]) if times is not None and has_au else 0.0
    lay, static = _layout_and_static(W, H, float(strip_s), float(on_threshold), face_title, title)
    img = static.copy()
    fs, m, bh = lay.fs, lay.m, lay.bh

    # banner: time, the two levels, input rate
    _text(img, f"t = {now_s:7.1f} s", m, int(bh * 0.88), fs, DIM)
    lv = dict(levels or {})
    notes = dict(level_notes or {})
    for i, name in enumerate(("drowsiness", "distraction")):
        level = lv.get(name, "STALE" if levels is not None else "-")
        x0 = lay.bx + i * (lay.bw + m)
        cv2.rectangle(img, (x0, m // 2), (x0 + lay.bw, bh - m // 2),
                      LEVEL_COLOURS.get(level, LEVEL_COLOURS["STALE"]), -1)
        _text(img, f"{name.upper()}: {level}", x0 + m, int(bh * 0.45), fs * 1.1, (255, 255, 255), 2)
        note = notes.get(name, "")
        if note:
            _text(img, _fit_text(note, lay.bw - 2 * m, fs * 0.8), x0 + m, int(bh * 0.85), fs * 0.8, (255, 255, 255))
    fps_s = "-" if fps is None or not math.isfinite(fps) else f"{fps:.1f}"
    _text(img, f"AU rate {fps_s} Hz", lay.bx + 2 * (lay.bw + m), int(bh * 0.6), fs * 1.1, TEXT)

    # image panels
    for (cx, cy, cw, ch), im, kind in zip(lay.images, (event_frame, face, recon), ("events", "face", "recon"),
                                          strict=True):
        if im is None or np.asarray(im).size == 0:
            _no_data(img, cx, cy, cw, ch, fs)
            continue
        bgr = event_frame_bgr(im) if kind == "events" else to_bgr(im)
        _put(img, fit_image(bgr, cw, ch, nearest=min(bgr.shape[:2]) < 128), cx, cy)

    # strip chart
    gx, gy, gw, gh = lay.strip
    if hist is not None and times is not None and has_au:
        n_cols = max(10, min(gw, int(strip_s * 20)))
        hm = au_heatmap(hist, times, now_s, strip_s, n_cols)
        col = cv2.applyColorMap((np.clip(hm, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        _put(img, cv2.resize(col, (gw, gh), interpolation=cv2.INTER_NEAREST), gx, gy)
    else:
        _no_data(img, gx, gy, gw, gh, fs)

    # alerts (newest first) and latency
    cx, cy, cw, ch = lay.alerts
    lh = lay.line_h
    shown = list(alerts)[-max(1, min(max_alerts, int(ch // lh))):]
    if not shown:
        _text(img, "none", cx + 4, cy + lh - 3, fs * 0.85, DIM)
    for i, ev in enumerate(reversed(shown)):
        colour = LEVEL_COLOURS.get(str(ev.get("level")), TEXT)
        _text(img, _fit_text(format_event(ev), cw - 8, fs * 0.85), cx + 4, cy + (i + 1) * lh - 3, fs * 0.85, colour)
    cx, cy, cw, ch = lay.latency
    lat = list((latency_ms or {}).items())
    if not lat:
        _text(img, "none", cx + 4, cy + lh - 3, fs * 0.85, DIM)
    for i, (name, (p50, p99)) in enumerate(lat[: max(1, int(ch // lh))]):
        _text(img, _fit_text(f"{name}: {_fmt_ms(p50)} / {_fmt_ms(p99)}", cw - 8, fs * 0.85), cx + 4,
              cy + (i + 1) * lh - 3, fs * 0.85, TEXT)

    # AU bars
    if current is not None:
        for i, au in enumerate(AUS):
            g = _bar_geometry(lay, i, on_threshold)
            v = float(current[i])
            active = v >= on_threshold
            vv = min(max(v, 0.0), 1.0)
            if vv > 0:
                cv2.rectangle(img, (g["x0"], g["y0"]), (g["x0"] + int(vv * g["w"]), g["y1"]),
                              (0, 200, 255) if active else (180, 130, 70), -1)
                cv2.line(img, (g["x_thr"], g["y0"]), (g["x_thr"], g["y1"]), (200, 200, 200), 1)
            if active:
                _text(img, au.code, g["x_code"], g["base"], fs * 0.85, TEXT, 2)
                _text(img, au.name, g["x_name"], g["base"], fs * 0.8, TEXT)
            _text(img, f"{v:.2f}", g["x_val"], g["base"], fs * 0.8, TEXT if active else DIM)
    return img

# -- summary ----------------------------------------------------------------------------------------------

def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """``{'n', 'p50', 'p90', 'p99', 'max', 'mean'}`` of latency samples in ms (NaN when there are none)."""
    a = np.asarray([s for s in samples_ms if s is not None and math.isfinite(s)], dtype=np.float64)
    if a.size == 0:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p90": nan, "p99": nan, "max": nan, "mean": nan}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(a.max()),
            "mean": float(a.mean())}


def _segment_rows(segments: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    rows = []
    for seg in segments:
        if len(seg) != 4:
            raise DashboardError(f"an AU segment is (start_s, end_s, AU, peak), got {seg!r}")
        start, end, au, peak = seg
        try:
            idx = au_index(au)
        except ValueError as err:
            raise DashboardError(str(err)) from None
        rows.append({"start_s": float(start), "end_s": float(end), "au": AU_CODES[idx], "name": AUS[idx].name,
                     "peak": float(peak)})
    return sorted(rows, key=lambda r: (r["start_s"], r["au"]))


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def write_summary(
    out_dir: str | Path,
    *,
    segments: Sequence[Sequence[Any]] = (),
    alerts: Sequence[Mapping[str, Any]] = (),
    latency_ms: Mapping[str, Sequence[float]] | None = None,
    dropped_frames: Mapping[str, int] | None = None,
    au_history: np.ndarray | None = None,
    au_times: np.ndarray | None = None,
    info: Mapping[str, Any] | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``summary.json``, ``summary.md`` and (``plot``) ``timeline.png`` to ``out_dir``.

    ``segments``: AUs detected, each (start_s, end_s, AU code or number, peak score); ``alerts``: monitor
    events (dicts with ``t`` in s and ``kind``); ``latency_ms``: name -> samples in ms (summarised as
    percentiles); ``dropped_frames``: name -> count; ``au_history`` (T, 21) at ``au_times`` (T,) s for the
    plot; ``info``: anything else to record (duration, frame counts, ...). Returns the paths written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DashboardError(f"cannot create the summary folder {out}: {err}") from None
    rows = _segment_rows(segments)
    lat = {k: latency_stats(v) for k, v in (latency_ms or {}).items()}
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["au"]] = counts.get(r["au"], 0) + 1
    alerts_l = [dict(a) for a in alerts]
    kinds: dict[str, int] = {}
    for a in alerts_l:
        kinds[str(a.get("kind"))] = kinds.get(str(a.get("kind")), 0) + 1
    doc = {"info": dict(info or {}), "au_segments": rows, "au_counts": counts, "alerts": alerts_l,
           "alert_counts": kinds, "latency_ms": lat, "dropped_frames": dict(dropped_frames or {})}
    paths = {"json": out / "summary.json", "md": out / "summary.md"}
    paths["json"].write_text(json.dumps(_jsonable(doc), indent=1, sort_keys=False, default=str) + "\n")

    md = ["# ros2_evmicro demo summary", ""]
    for k, v in (info or {}).items():
        md.append(f"- {k}: {v}")
    md += ["", "## Latency (ms)", "", "| stage | n | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
    for k, s in lat.items():
        md.append(f"| {k} | {s['n']} | {_fmt_ms(s['p50'])} | {_fmt_ms(s['p90'])} | {_fmt_ms(s['p99'])} | "
                  f"{_fmt_ms(s['max'])} |")
    md += ["", "## Dropped frames", ""]
    md += [f"- {k}: {v}" for k, v in (dropped_frames or {}).items()] or ["- none recorded"]
    md += ["", f"## Alerts ({len(alerts_l)})", ""]
    md += [f"- {format_event(a)}" for a in alerts_l] or ["- none"]
    md += ["", f"## Action Units detected ({len(rows)})", "", "| start (s) | end (s) | AU | name | peak |",
           "|---|---|---|---|---|"]
    md += [f"| {r['start_s']:.2f} | {r['end_s']:.2f} | {r['au']} | {r['name']} | {r['peak']:.2f} |" for r in rows]
    paths["md"].write_text("\n".join(md) + "\n")
    if plot:
        paths["png"] = out / "timeline.png"
        _plot_timeline(paths["png"], au_history, au_times, alerts_l)
    return paths


def _plot_timeline(path: Path, au_history: np.ndarray | None, au_times: np.ndarray | None,
                   alerts: Sequence[Mapping[str, Any]]) -> None:
    """AU scores over time (heat map) with the alerts marked, and the two monitor levels below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax, axl = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    hist = None if au_history is None else np.asarray(au_history, dtype=np.float32)
    t = None if au_times is None else np.asarray(au_times, dtype=np.float64)
    if hist is not None and len(hist):
        if hist.ndim != 2 or hist.shape[1] != NUM_AUS or t is None or len(t) != len(hist):
            raise DashboardError(f"AU history must be (T, {NUM_AUS}) with T times, got {hist.shape}")
        t1 = t[-1] if len(t) > 1 else t[0] + 1e-3
        im = ax.imshow(hist.T, aspect="auto", origin="upper", interpolation="nearest", cmap="inferno",
                       vmin=0, vmax=1, extent=(t[0], t1, NUM_AUS - 0.5, -0.5))
        fig.colorbar(im, ax=[ax, axl], label="score", pad=0.01, shrink=0.8)
        t_end = t1
    else:
        ax.text(0.5, 0.5, "no AU data", transform=ax.transAxes, ha="center", va="center")
        t_end = max([float(a.get("t", 0.0)) for a in alerts] + [1.0])
    ax.set_yticks(range(NUM_AUS), [f"{a.code} {a.name}" for a in AUS], fontsize=7)
    ax.set_title("AU scores over time, alerts marked")
    marks = {"long_blink": ("#ffffff", ":"), "eyes_closed": ("#00ffff", "--"), "look_away": ("#7fff00", "--")}
    for a in alerts:
        style = marks.get(str(a.get("kind")))
        if style is not None and a.get("t") is not None:
            ax.axvline(float(a["t"]), color=style[0], ls=style[1], lw=0.8, alpha=0.8)
    for row, name, colour in ((1, "drowsiness", "tab:red"), (0, "distraction", "tab:blue")):
        ts, ls = [0.0], [0]
        for a in alerts:
            if a.get("kind") == name and a.get("level") in ("OK", "WARN", "ERROR") and a.get("t") is not None:
                ts.append(float(a["t"]))
                ls.append(("OK", "WARN", "ERROR").index(a["level"]))
        ts.append(float(t_end))
        ls.append(ls[-1])
        axl.step(ts, np.array(ls) + 3 * row, where="post", color=colour, label=name)
    axl.set_yticks([0, 1, 2, 3, 4, 5], ["OK", "WARN", "ERROR"] * 2, fontsize=7)
    axl.set_ylabel("distraction | drowsiness", fontsize=7)
    axl.legend(loc="upper left", fontsize=7)
    axl.set_xlabel("time (s)")
    fig.savefig(path)


# -- bookkeeping for the node -----------------------------------------------------------------------------

class AuHistory:
    """Growing buffer of AU score vectors and their times (s), keeping at most ``max_s`` of history."""

    def __init__(self, max_s: float = 3600.0, capacity: int = 1024):
        self.max_s = float(max_s)
        self._t = np.zeros(capacity, dtype=np.float64)
        self._s = np.zeros((capacity, NUM_AUS), dtype=np.float32)
        self.n = 0

    def append(self, t_s: float, scores: np.ndarray) -> None:
        if self.n == len(self._t):
            keep = self._t[: self.n] > (t_s - self.max_s)
            if keep.sum() > self.n // 2:  # still mostly in range: grow
                self._t = np.concatenate([self._t, np.zeros_like(self._t)])
                self._s = np.concatenate([self._s, np.zeros_like(self._s)])
            else:
                k = int(keep.sum())
                self._t[:k], self._s[:k] = self._t[: self.n][keep], self._s[: self.n][keep]
                self.n = k
        self._t[self.n] = t_s
        self._s[self.n] = scores
        self.n += 1

    @property
    def times(self) -> np.ndarray:
        return self._t[: self.n]

    @property
    def scores(self) -> np.ndarray:
        return self._s[: self.n]

    def last(self, span_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(scores, times) of the last ``span_s`` seconds (views)."""
        if self.n == 0:
            return self.scores, self.times
        i0 = int(np.searchsorted(self.times, self._t[self.n - 1] - span_s, side="left"))
        return self._s[i0: self.n], self._t[i0: self.n]


class StampMatcher:
    """Counts input frames that never got an output (AU scores, reconstruction) with the same stamp.

    Frames are judged once the output stream has moved ``grace_ns`` past them: matched when an output with
    their stamp was seen, else dropped. Output stamps are remembered for ``memory_ns``.
    """

    def __init__(self, grace_ns: int = 500_000_000, memory_ns: int = 10_000_000_000):
        self.grace_ns = int(grace_ns)
        self.memory_ns = int(memory_ns)
        self.pending: list[int] = []
        self.seen: dict[int, None] = {}
        self.newest: int | None = None
        self.matched = 0
        self.dropped = 0

    def frame(self, stamp_ns: int) -> None:
        self.pending.append(int(stamp_ns))

    def output(self, stamp_ns: int) -> None:
        s = int(stamp_ns)
        self.seen[s] = None
        if self.newest is None or s > self.newest:
            self.newest = s

    def settle(self, final: bool = False) -> None:
        """Judge the frames the outputs have passed (all frames up to the newest output when ``final``)."""
        if self.newest is None:
            return
        limit = self.newest if final else self.newest - self.grace_ns
        keep = []
        for f in self.pending:
            if f <= limit:
                if f in self.seen:
                    self.matched += 1
                else:
                    self.dropped += 1
            else:
                keep.append(f)
        self.pending = keep
        old = self.newest - self.memory_ns
        if len(self.seen) > 64 and next(iter(self.seen)) < old:
            self.seen = {s: None for s in self.seen if s >= old}

"""Benchmark of the live demo's back end: dashboard composition, driver monitor updates, summary writing.

Run from the repository root: ``python -m bench.bench_dashboard`` (``EVMICRO_BENCH_NO_WRITE=1`` for a
trial run that does not append to docs/benchmarks.md).

Figures:

* ``compose_dashboard`` at 1280x720 with every panel filled (64x64 event frame, 120x100 face, 64x64
  reconstruction, 10 s of AU history at 30 Hz, 5 alerts, 3 latency rows): median ms per composite, against
  the same content (AU heat map and 21 AU bars) drawn with matplotlib's Agg canvas at the same pixel size,
  which is what the composite would cost with matplotlib in the loop.
* ``cv2.VideoWriter.write`` (mp4v) of one composite, the node's other per-tick cost, against the
  composite itself.
* ``DriverMonitor.update``: samples per second on a 10-minute scripted sequence (normal blinks, a drowsy
  segment, head turns), against the 30 Hz the AU stream needs.
* ``write_summary`` with 10 minutes of AU history (18,000 samples) and its timeline plot: seconds.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from bench.harness import Row, percentiles, report
from ros2_evmicro.core.au import AU_CODES, NUM_AUS, au_index
from ros2_evmicro.core.dashboard import compose_dashboard, write_summary
from ros2_evmicro.core.monitor import DriverMonitor

FRAME_NS = 33_333_333


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    ev = rng.poisson(0.4, (2, 64, 64)).astype(np.float32)
    face = (rng.random((120, 100)) * 255).astype(np.uint8)
    recon = (rng.random((64, 64)) * 255).astype(np.uint8)
    t = np.arange(300) / 30.0
    hist = (rng.random((300, NUM_AUS)) * 0.4).astype(np.float32)
    hist[-60:, au_index(12)] = 0.85
    alerts = [{"t": float(i), "kind": "long_blink", "message": f"long blink {450 + i} ms"} for i in range(5)]
    lat = {"event->AU": (35.0, 61.0), "event->recon": (40.0, 80.0), "au: infer": (12.0, 20.0)}
    return dict(event_frame=ev, face=face, recon=recon, au_history=hist, au_times=t, alerts=alerts, fps=29.9,
                latency_ms=lat, levels={"drowsiness": "WARN", "distraction": "OK"},
                level_notes={"drowsiness": "3.6 long blinks/min (warn 3)"})


def _time_ms(fn, n: int) -> list[float]:
    fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _matplotlib_equivalent(kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def draw():
        fig = Figure(figsize=(12.8, 7.2), dpi=100)
        canvas = FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2)
        ax1.imshow(kw["au_history"].T, aspect="auto", cmap="inferno", vmin=0, vmax=1)
        ax1.set_yticks(range(NUM_AUS), AU_CODES)
        ax2.barh(range(NUM_AUS), kw["au_history"][-1])
        ax2.set_yticks(range(NUM_AUS), AU_CODES)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())

    return draw


def _scripted(minutes: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * 30)
    s = rng.uniform(0, 0.2, (n, NUM_AUS))
    ts = np.arange(n) / 30.0
    for t0 in np.arange(1.0, minutes * 60, 3.5):
        dur = 0.7 if 200 <= t0 < 320 else 0.15
        s[(ts >= t0) & (ts < t0 + dur), au_index(45)] = 0.85
    for t0 in np.arange(30.0, minutes * 60, 45.0):
        s[(ts >= t0) & (ts < t0 + 3.0), au_index(51)] = 0.85
    return np.arange(n, dtype=np.int64) * FRAME_NS, s


def main() -> None:
    kw = _inputs()
    rows = []
    ms = _time_ms(lambda: compose_dashboard(**kw), 200)
    mpl = _time_ms(_matplotlib_equivalent(kw), 10)
    p50, p99 = percentiles(ms)
    rows.append(Row("compose_dashboard 1280x720, all panels, p50", p50, "ms", "matplotlib Agg, heat map + 21 bars",
                    percentiles(mpl)[0], lower_is_better=True, note=f"p99 {p99:.2f} ms; budget 100 ms at 10 Hz"))

    import cv2

    img = compose_dashboard(**kw)
    with tempfile.TemporaryDirectory() as tmp:
        writer = cv2.VideoWriter(f"{tmp}/d.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (1280, 720))
        vw = _time_ms(lambda: writer.write(img), 100)
        writer.release()
    rows.append(Row("cv2.VideoWriter mp4v write, 1280x720 frame, p50", percentiles(vw)[0], "ms",
                    "compose_dashboard p50", p50, lower_is_better=True, note="the other per-tick cost of the node"))

    t, s = _scripted(10.0)
    mon = DriverMonitor()
    t0 = time.perf_counter()
    n_events = 0
    for ti, si in zip(t, s, strict=True):
        n_events += len(mon.update(int(ti), si))
    dt = time.perf_counter() - t0
    rows.append(Row("DriverMonitor.update, 10 min scripted at 30 Hz", len(t) / dt, "samples/s",
                    "AU stream rate", 30.0, note=f"{n_events} events; {dt * 1e6 / len(t):.0f} us per sample"))

    hist = (np.random.default_rng(2).random((len(t), NUM_AUS)) * 0.5).astype(np.float32)
    times = t / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_summary(tmp, segments=[(1.0, 1.2, "AU45", 0.9)] * 200, alerts=[{"t": 5.0, "kind": "long_blink"}] * 50,
                      latency_ms={"event->AU": list(np.random.default_rng(3).gamma(4, 10, 18000))},
                      au_history=hist, au_times=times)
        dt = time.perf_counter() - t0
    rows.append(Row("write_summary, 10 min of AU history + timeline.png", dt, "s", note="at close, not in the loop"))
    report("Dashboard and driver monitor", rows)


if __name__ == "__main__":
    main()

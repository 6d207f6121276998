"""Benchmark of the synthetic rig: simulated seconds per wall-clock second, per camera, full resolution.

Run from the repository root: ``python -m bench.bench_sim`` (``EVMICRO_BENCH_NO_WRITE=1`` for a trial
run that does not append to docs/benchmarks.md).

Figures (anchor: real time, 1 simulated second per wall second, so a ratio above 1 is faster than
real time and the live demo can run on the simulator):

* DAVIS346 346x260: events (rendered at 250 Hz, interpolated), APS frames at 25 fps (3 sub-frames per
  exposure), IMU at 1 kHz.
* EVK4 1280x720: events (rendered at 300 Hz).
* Webcam 1920x1080 bgr8 at 30 fps (3 sub-frames per exposure).
* Data-set generation: ``render_clip`` of 1 s DAVIS346 clips at 100 Hz, as the learnability test uses.

``python -m bench.bench_sim --sessions``: speed of ``evmicro sim session`` (whole session folders written
with the bag writer) per camera set, anchored on the bare simulator stream of the same subject.

Each stream covers 2 s of a subject performing AU12, AU45 and AU51 over the involuntary background, at
600 lux; the first 0.2 s of a separate run warm up numba and the caches.
"""

from __future__ import annotations

import time

from bench.harness import Row, report
from ros2_evmicro.core.sim import SimRig, render_clip

SIM_S = 2.0
TIMELINE = [(0.3, 12, 1.0, 0.4), (0.9, 45, 1.0, 0.13), (1.3, 51, 0.8, 0.45)]


def stream_speed(camera: str) -> tuple[float, int]:
    """Simulated seconds per wall second of one camera's stream, and the number of events or frames."""
    SimRig(0, cameras=(camera,), timeline=TIMELINE)
    warm = SimRig(0, cameras=(camera,), timeline=TIMELINE)
    for _ in warm.stream(duration_s=0.2):
        pass
    rig = SimRig(0, cameras=(camera,), timeline=TIMELINE)
    n = 0
    t0 = time.perf_counter()
    for item in rig.stream(packet_period_ms=10.0, duration_s=SIM_S):
        if item[0] in ("davis", "evk4"):
            n += len(item[1])
        elif item[0] in ("webcam", "davis_aps"):
            n += 1 if camera == "webcam" else 0
    return SIM_S / (time.perf_counter() - t0), n


def demo_speed(reuse_drawing: bool, duration_s: float = 8.0) -> float:
    """Simulated seconds per wall second of the live demo's DAVIS346 stream (its scenario, first
    ``duration_s``, events + APS + IMU); ``reuse_drawing=False`` redraws the head at every render, as before
    ``FaceRenderer.head_canvas`` kept the drawing while only the pose moves (the same-run reference)."""
    from ros2_evmicro.core.sim import FaceRenderer
    from ros2_evmicro.core.sim.scenarios import make_scenario

    original = FaceRenderer.head_canvas

    def redraw(self, c):
        self._head_key = None
        return original(self, c)

    if not reuse_drawing:
        FaceRenderer.head_canvas = redraw  # type: ignore[method-assign]
    try:
        rig = SimRig(1, cameras=("davis",), timeline=make_scenario("demo", 0))
        for _ in rig.stream(duration_s=0.2):
            pass
        rig = SimRig(1, cameras=("davis",), timeline=make_scenario("demo", 0))
        t0 = time.perf_counter()
        for _ in rig.stream(packet_period_ms=10.0, duration_s=duration_s):
            pass
        return duration_s / (time.perf_counter() - t0)
    finally:
        FaceRenderer.head_canvas = original  # type: ignore[method-assign]


def clip_speed(n_clips: int = 6) -> float:
    """Simulated seconds per wall second of ``render_clip`` (1 s DAVIS346 clips rendered at 100 Hz)."""
    render_clip(0, 12, duration_s=1.0, render_hz=100.0)
    t0 = time.perf_counter()
    for i in range(n_clips):
        render_clip(1 + i, (2, 12, 26, 45, 51, 61)[i % 6], duration_s=1.0, render_hz=100.0)
    return n_clips * 1.0 / (time.perf_counter() - t0)


def main() -> None:
    rows = []
    for cam, label, note in (
        ("davis", "DAVIS346 346x260 events + APS 25 fps + IMU 1 kHz", "events rendered at 250 Hz"),
        ("evk4", "EVK4 1280x720 events", "events rendered at 300 Hz"),
        ("webcam", "webcam 1920x1080 bgr8 30 fps", "3 sub-frames per exposure"),
    ):
        rate, n = stream_speed(cam)
        unit = "frames" if cam == "webcam" else "events"
        rows.append(Row(f"{label}: simulation speed", rate, "sim s / wall s", "real time", 1.0,
                        note=f"{note}; {n / SIM_S:,.0f} {unit}/s simulated"))
    rows.append(Row("render_clip 1 s DAVIS346 clips (data sets)", clip_speed(), "sim s / wall s", "real time",
                    1.0, note="rendered at 100 Hz, no APS"))
    redraw = demo_speed(False)
    rows.append(Row("live demo scenario, DAVIS346 events + APS + IMU: simulation speed", demo_speed(True),
                    "sim s / wall s", "same stream, head redrawn at every render", redraw,
                    note="first 8 s of the demo script (AU12, AU26, AU4, AU51 with rests); the head drawing is "
                         "kept while only the pose moves"))
    report("Synthetic rig (bench_sim)", rows)


# -- session generator (`evmicro sim session`) ------------------------------------------------------------

SESSION_AUS = (12, 45)
SESSION_SCALE = 0.05


def session_speed(cameras: tuple[str, ...]) -> tuple[float, float, int]:
    """(generation speed, bare simulator speed) in simulated s per wall s for one session of ``cameras``
    (AU12 and AU45, protocol phases x 0.05), and the bag size in bytes. The anchor is the same subject's
    :meth:`SimRig.stream` consumed without writing anything, so the ratio is the cost of serialising and
    writing the session."""
    import tempfile
    from pathlib import Path

    from ros2_evmicro.core.sim.session_gen import SessionSpec, generate_session, main_run_protocol

    spec = SessionSpec(cameras=cameras, aus=SESSION_AUS, time_scale=SESSION_SCALE, seed=0)
    proto = main_run_protocol(spec.aus, spec.time_scale, seed=spec.seed * 1009 + spec.subject_index,
                              subject=spec.subject)
    rig = SimRig(spec.subject_seed, lux=spec.lux, cameras=cameras, timeline=proto, seed=spec.seed)
    for _ in rig.stream(duration_s=0.2):  # warm-up (numba, caches)
        pass
    rig = SimRig(spec.subject_seed, lux=spec.lux, cameras=cameras, timeline=proto, seed=spec.seed)
    dur = proto.duration_s + 0.5
    t0 = time.perf_counter()
    for _ in rig.stream(packet_period_ms=spec.packet_period_ms, duration_s=dur):
        pass
    bare = dur / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix="bench_session_") as tmp:
        t0 = time.perf_counter()
        res = generate_session(tmp, spec)
        gen = res.duration_s / (time.perf_counter() - t0)
        size = sum(f.stat().st_size for f in Path(res.folder).iterdir())
    return gen, bare, size


def main_sessions() -> None:
    rows = []
    for cams in (("davis",), ("davis", "webcam"), ("davis", "evk4", "webcam")):
        gen, bare, size = session_speed(cams)
        rows.append(Row(f"sim session {'+'.join(cams)}: generation speed", gen, "sim s / wall s",
                        "SimRig.stream alone, same cameras", bare,
                        note=f"{gen:.2f}x real time; bag {size / 2**20:.0f} MiB "
                             f"for {SESSION_AUS} at time scale {SESSION_SCALE}"))
    report("Simulated sessions (bench_sim --sessions)", rows)


if __name__ == "__main__":
    import sys

    main_sessions() if "--sessions" in sys.argv[1:] else main()

"""End-to-end: the live demo graph on the simulated rig (and on a real DAVIS346 recording)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import REPO, real_file, write_test_checkpoints


@pytest.fixture(scope="module")
def test_ckpts(tmp_path_factory):
    """Random-weight checkpoints (scaled so the SNN fires): they test the plumbing, not recognition."""
    d = tmp_path_factory.mktemp("demo_ckpt")
    write_test_checkpoints(d)
    return d


def _demo(args, out: Path, timeout=300):
    cmd = [sys.executable, "-m", "ros2_evmicro.cli", "demo", "--out", str(out), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.mark.slow
def test_demo_graph_on_sim_writes_outputs(tmp_path, test_ckpts):
    out = tmp_path / "demo"
    log = _demo([f"au_checkpoint:={test_ckpts / 'snn'}", f"recon_checkpoint:={test_ckpts / 'cvae'}",
                 "duration_s:=10"], out)
    assert "stopped (finished)" in log
    summary = json.loads((out / "summary.json").read_text())
    # 10 s of wall time: about 300 windows on a fast machine, about 100 where the simulator runs at a third of
    # real time (measured 2026-11-28); at least one second of scene must flow through both models
    assert summary["latency_ms"]["event->AU"]["n"] >= 30, "AU scores did not flow"
    assert summary["latency_ms"]["event->recon"]["n"] >= 30
    report = json.loads((out / "demo_report.json").read_text())
    assert len(report["recognition"]) >= 2, "no perform segment was seen"
    cap = cv2.VideoCapture(str(out / "dashboard.mp4"))
    ok, frame = cap.read()
    assert ok and frame.shape[2] == 3
    assert (out / "timeline.png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_graph_on_real_davis_recording(tmp_path, test_ckpts):
    path = real_file("davis346_aedat4/davis346_sample.aedat4")
    out = tmp_path / "real"
    log = _demo(["--camera", "davis", "--file", str(path), f"au_checkpoint:={test_ckpts / 'snn'}",
                 f"recon_checkpoint:={test_ckpts / 'cvae'}"], out)
    assert "stopped (finished)" in log and "Traceback" not in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency_ms"]["event->AU"]["n"] >= 3  # 0.13 s of events: 4 windows of 33 ms


@pytest.fixture(scope="module")
def shipped_demo(tmp_path_factory):
    """The README's main command with the shipped checkpoints, run once for the tests below."""
    if not (REPO / "models" / "au_snn_davis_21subj.pt").exists():
        pytest.fail("models/au_snn_davis_21subj.pt is not shipped (scripts/device_train.sh makes it)")
    out = tmp_path_factory.mktemp("full")
    _demo([], out, timeout=400)
    return json.loads((out / "demo_report.json").read_text()), json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_demo_recognises_performed_aus_in_order(shipped_demo):
    report, _ = shipped_demo
    # the run time (goal: under 2 min) is a speed figure: measured by bench/bench_pipeline.py --demo, not here
    rows = report["recognition"]
    assert len(rows) >= 18, "perform segments missing from the report"
    acc = sum(r["ok"] for r in rows) / len(rows)
    # 9/20 measured with the shipped model (2026-11-28): 9 of the 11 non-eyelid AUs; the eyelid AUs 41/43/45
    # are confused with each other, which the driver monitor's pooled eye-closure channel absorbs (next test);
    # chance is 1/21
    assert acc >= 0.35, f"only {acc:.0%} of the performed AUs were recognised"
    head_and_mouth = [r for r in rows if r["performed"] in ("AU26", "AU51", "AU52", "AU53", "AU61")]
    assert sum(r["ok"] for r in head_and_mouth) >= 4


@pytest.mark.slow
def test_demo_alerts_drowsiness_in_the_drowsy_segment(shipped_demo):
    report, summary = shipped_demo
    levels = [a for a in summary["alerts"] if a.get("kind") == "drowsiness" and a.get("level") in ("WARN", "ERROR")]
    assert levels, "no drowsiness alert in the scripted drowsy segment"
    # the drowsy segment follows the performed AUs; no drowsiness alert before it
    rows = report["recognition"]
    from ros2_evmicro.core.sim.scenarios import DROWSY_AUS

    drowsy_start_ns = rows[-len(DROWSY_AUS)]["start_ns"]  # the drowsy takes close the demo script
    assert all(a["t_ns"] >= drowsy_start_ns for a in levels), (levels, drowsy_start_ns)
    # from the eye-closure channel (long blinks, mean blink, PERCLOS or a closure), not from droop or support AUs
    eye = ("blink", "eye closure", "eyes closed")
    assert any(any(k in a.get("reason", "") for k in eye) for a in levels), levels

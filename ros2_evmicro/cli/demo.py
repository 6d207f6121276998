"""``evmicro demo``: the live driver-monitoring demo, in one process.

By default the simulated rig performs the demo script (a sequence of Action Units, then a drowsy segment) and
the whole live graph runs on it: face ROI -> slicer -> AU SNN + cVAE -> driver monitor -> dashboard. The run
ends by itself when the script is over; the dashboard writes ``dashboard.mp4``, ``summary.md/json`` and
``timeline.png`` to ``--out``, and this command prints what was performed and what was recognised, segment by
segment, the alerts, and the latency figures. ``--camera davis --file X.aedat4`` runs the same graph on a
recording (``--camera davis`` alone: a live DAVIS346; ``--camera evk4``: a live EVK4 or ``--file X.raw``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ros2_evmicro.graphs import get_graph, parse_graph_args


def _perform_segments(markers: list[dict]) -> list[tuple[int, int, int, str]]:
    """(start_ns, end_ns, au, segment) of every perform phase, from the protocol markers seen."""
    ms = sorted(markers, key=lambda m: m.get("stamp_ns", 0))
    out = []
    for i, m in enumerate(ms):
        if m.get("phase") == "perform" and m.get("au"):
            end = ms[i + 1]["stamp_ns"] if i + 1 < len(ms) else m["stamp_ns"] + 2_000_000_000
            out.append((int(m["stamp_ns"]), int(end), int(m["au"]), str(m.get("segment", ""))))
    return out


def _recognition_table(dash, markers: list[dict]) -> tuple[list[dict], float]:
    """Per performed segment: the AU with the highest peak score over its window (the AU stream's top-1)."""
    from ros2_evmicro.core.au import AU_CODES, AU_NAMES

    segs = _perform_segments(markers)
    if dash.t0_ns is None or not segs:
        return [], 0.0
    times = dash.history.times * 1e9 + dash.t0_ns  # ROS ns
    scores = dash.history.scores
    t_first = segs[0][0]
    rows = []
    for a, b, au, name in segs:
        m = (times >= a) & (times < b + 300_000_000)  # the sliding window trails the action a little
        row = {"segment": name, "t_s": round((a - t_first) / 1e9, 2), "start_ns": a, "performed": f"AU{au}",
               "name": AU_NAMES.get(au, ""), "recognised": "-", "score": float("nan"), "ok": False}
        if m.any():
            peak = scores[m].max(axis=0)
            k = int(np.argmax(peak))
            row.update(recognised=AU_CODES[k], score=float(peak[k]), ok=AU_CODES[k] == f"AU{au}")
        rows.append(row)
    acc = float(np.mean([r["ok"] for r in rows])) if rows else 0.0
    return rows, acc


def _run(args: argparse.Namespace) -> int:
    from rclpy.node import Node
    from std_msgs.msg import String

    from ros2_evmicro.ros.convert import marker_from_msg
    from ros2_evmicro.ros.node import MARKER_QOS
    from ros2_evmicro.ros.runner import GraphRun

    gargs = parse_graph_args(args.args)
    gargs.setdefault("camera", args.camera)
    gargs.setdefault("out_dir", args.out)
    gargs.setdefault("device", args.device)
    gargs.setdefault("rate", str(args.rate))
    gargs.setdefault("duration_s", str(args.duration))
    if args.file:
        gargs.setdefault("source", "file")
        gargs.setdefault("davis_file" if gargs["camera"] == "davis" else "evk4_file", str(Path(args.file).resolve()))
    graph = get_graph("demo")
    decls = graph.nodes(gargs)
    sim_mode = gargs["camera"] == "sim"
    print(f"evmicro demo: {gargs['camera']} -> {len(decls)} nodes ({', '.join(d.fqn for d in decls)}); "
          f"output in {gargs['out_dir']}/", flush=True)
    t0 = time.monotonic()
    run = GraphRun(decls)
    markers: list[dict] = []
    try:
        collector = Node("demo_report", context=run.context)
        # transient local: the markers published before this subscription matched are delivered too
        collector.create_subscription(String, "protocol/marker", lambda m: markers.append(marker_from_msg(m)),
                                      MARKER_QOS)
        run.executor.add_node(collector)
        run.nodes.append(collector)
        why = run.spin(args.timeout or None)
        rows, acc = _recognition_table(run.node("dashboard"), markers)
    finally:
        run.close()  # the dashboard writes its video and summary here
    wall = time.monotonic() - t0
    summary_path = Path(gargs["out_dir"]) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    print(f"\nevmicro demo: stopped ({why}) after {wall:.1f} s")
    if rows:
        print("\nPerformed vs recognised (top-1 AU of the stream over each perform window):")
        print(f"  {'t (s)':>6}  {'performed':<28} {'recognised':<10} {'score':>5}")
        for r in rows:
            mark = "ok" if r["ok"] else "--"
            perf = f"{r['performed']} {r.get('name', '')}"
            print(f"  {r['t_s']:>6.1f}  {perf:<28} {r['recognised']:<10} {r['score']:>5.2f}  {mark}")
        print(f"  recognised {sum(r['ok'] for r in rows)}/{len(rows)} ({acc:.0%}); chance is 1/21 (4.8%)")
    alerts = [a for a in summary.get("alerts", []) if a.get("kind") in ("drowsiness", "distraction")]
    print(f"\nAlerts ({len(alerts)} level changes):")
    for a in alerts:
        print(f"  t={a.get('t', float('nan')):6.1f}s {a.get('kind')}: {a.get('previous', '?')} -> "
              f"{a.get('level', '?')}  {a.get('reason', '')}")
    lat = summary.get("latency_ms", {})
    if lat:
        print("\nLatency (ms):")
        for k, s in lat.items():
            print(f"  {k:<28} p50 {s.get('p50', float('nan')):7.1f}   p99 {s.get('p99', float('nan')):7.1f}   "
                  f"(n={s.get('n', 0)})")
    lag = summary.get("info", {}).get("source_behind_real_time_ms", {})
    if lag.get("max", 0.0) > 100.0:
        print(f"  (the simulator ran behind real time, by up to {lag['max'] / 1000:.1f} s: its events are stamped on "
              "scene time, so event->AU includes that lag; `python -m bench.bench_pipeline` measures the pipeline "
              "itself with real-time input)")
    dropped = summary.get("dropped_frames", {})
    if dropped:
        print("Dropped frames: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    shed = summary.get("info", {}).get("windows_shed_by_slicer", 0)
    if shed:
        print(f"Windows shed by the slicer to stay current (the machine did not keep up; max_backlog_ms): {shed}")
    if rows or sim_mode:
        report = {"recognition": rows, "recognition_accuracy": acc, "wall_s": wall, "stopped": why}
        (Path(gargs["out_dir"]) / "demo_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nFiles: {gargs['out_dir']}/dashboard.mp4, summary.md, timeline.png")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the live driver-monitoring demo (simulated rig by default)")
    p.add_argument("--camera", default="sim", choices=("sim", "davis", "evk4"))
    p.add_argument("--file", help="play this recording (AEDAT4 for davis, RAW for evk4) instead of a live camera")
    p.add_argument("--out", default="evmicro_demo", help="output folder (video, summary)")
    p.add_argument("--device", default="auto", help="inference device: auto, cpu, cuda")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate of the sim or the file")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: at the end)")
    p.add_argument("--timeout", type=float, default=600.0, help="hard stop (s), whatever happens")
    p.add_argument("args", nargs="*", help="more graph arguments, name:=value (see `evmicro graph demo`)")
    p.set_defaults(func=_run)

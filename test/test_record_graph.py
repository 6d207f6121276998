"""End to end: the record graph on the simulated rig (sim_rig, protocol player, recorder) in one process."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from ros2_evmicro.core.bagio import BagReader, check_bag
from ros2_evmicro.core.session import read_markers, segments_from_markers
from ros2_evmicro.graphs import GRAPHS


@pytest.mark.slow
def test_record_graph_on_sim_rig(tmp_path):
    from ros2_evmicro.ros.runner import GraphRun

    decls = GRAPHS["record"].nodes(
        {
            "source": "sim",
            "cameras": "davis",
            "run": "demo",
            "headless": "true",
            "face_roi": "false",
            "out_dir": str(tmp_path),
            "subject": "S03",
            "session": "2",
            "split": "segment",
        }
    )
    assert [d.kind for d in decls] == ["sim_rig", "protocol_player", "recorder"]
    over = {
        # the subject follows the player's markers; only the player publishes them
        # (duration_s: follow mode with 0 = forever fails in sim_rig: "cannot convert float infinity")
        "sim_rig": {
            "scenario": "follow",
            "publish_markers": False,
            "publish_truth": False,
            "duration_s": 120.0,
        },
        "protocol_player": {"time_scale": 0.05, "autostart": False, "finish_delay_s": 0.5},
        "recorder": {"discovery_period_s": 0.1, "min_free_gb": 0.0},
    }
    decls = [dataclasses.replace(d, parameters={**d.parameters, **over[d.kind]}) for d in decls]
    with GraphRun(decls) as run:
        player, rec = run.node("protocol_player"), run.node("recorder")
        # the operator starts the protocol once the cameras stream (the sim's kernels compile first)
        assert run.spin(duration_s=60, until=lambda: rec.counts.get("/davis/events", 0) >= 5) == "until"
        assert player.control("start")[0]
        assert not player.control("start")[0]
        why = run.spin(duration_s=60)
        history = list(player.sm.history)
    assert why == "finished"
    folder = tmp_path / "S03_2"
    rep = check_bag(folder)
    assert rep.ok, rep.text()
    with BagReader(folder) as r:
        topics = r.topics
        markers = r.markers()
        n_events = len(r.events("/davis/events"))
    for t in (
        "/davis/events",
        "/davis/camera_info",
        "/davis/time_reference",
        "/davis/image_raw",
        "/davis/imu",
        "/protocol/marker",
        "/diagnostics",
    ):
        assert topics.get(t, ("", 0))[1] > 0, (t, topics)
    assert n_events > 1000
    assert markers == history
    assert [m["phase"] for m in markers] == ["demo", "countdown", "perform", "rest"] * 3 + ["done"]
    segs = segments_from_markers(read_markers(folder))
    assert [(s.name, s.status) for s in segs] == [
        ("S03_AU12_t1", "ok"),
        ("S03_AU45_t1", "ok"),
        ("S03_AU51_t1", "ok"),
    ]
    info = yaml.safe_load((folder / "session.yaml").read_text())
    assert info["status"] == "complete" and info["cameras"] == ["davis"] and len(info["files"]) == 4

"""sync_check on synthetic session bags with known clocks: drift, jitter and offsets recovered."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ros2_evmicro.cli import main as cli_main
from ros2_evmicro.core.bagio import BagWriter
from ros2_evmicro.core.sync_check import SyncError, match_edges, sync_check


def _write_session(path, with_triggers: bool, seed: int = 3):
    """Two cameras, 4 s. davis: device clock = host - 1 s, +50 ppm; evk4: device = host - 7 s, -20 ppm.
    Arrival delay = 300 us + exponential(80 us) for davis, 900 us + exponential(200 us) for evk4.
    A 20 Hz trigger line feeds both; the drivers' stamps of an edge are off by +250 us (davis) and -100 us
    (evk4) with 5 us of noise."""
    rng = np.random.default_rng(seed)
    host0 = 1_700_000_000_000_000_000
    with BagWriter(path) as w:
        for cam, dev_off_s, ppm, d0, dscale in (("davis", 1.0, 50.0, 300, 80), ("evk4", 7.0, -20.0, 900, 200)):
            host = host0 + np.arange(0, 4_000_000_000, 10_000_000)  # a packet every 10 ms (ns)
            dev_us = ((host - host0) * (1 + ppm * 1e-6) / 1000).astype(np.int64) + int(1e12) - int(dev_off_s * 1e6)
            arrival = host + ((d0 + rng.exponential(dscale, len(host))) * 1000).astype(np.int64)
            for h, d in zip(arrival.tolist(), dev_us.tolist(), strict=True):
                w.write_time_reference(f"/{cam}/time_reference", h, d, cam)
        if with_triggers:
            edges = host0 + np.arange(100_000_000, 3_900_000_000, 50_000_000)
            for cam, err_us in (("davis", 250.0), ("evk4", -100.0)):
                stamps = edges + ((err_us + rng.normal(0, 5, len(edges))) * 1000).astype(np.int64)
                for s in stamps.tolist():
                    w.write_time_reference(f"/{cam}/triggers", s, 0, f"{cam}/ch0/rise")
                    w.write_time_reference(f"/{cam}/triggers", s + 1_000_000, 0, f"{cam}/ch0/fall")
    return path


def test_time_reference_only(tmp_path):
    rep = sync_check(_write_session(tmp_path / "s", with_triggers=False))
    d, e = rep.cameras["davis"], rep.cameras["evk4"]
    assert d.n_pairs == e.n_pairs == 400
    # the lower envelope recovers the drift (ppm of device vs host: host = dev / (1 + ppm))
    assert abs(d.drift_ppm + 50.0) < 5.0 and abs(e.drift_ppm - 20.0) < 5.0
    # residuals: the delay above its minimum, median of exponential(scale) = scale ln 2
    assert abs(d.residual_p50_us - 80 * np.log(2)) < 15 and abs(e.residual_p50_us - 200 * np.log(2)) < 35
    assert d.residual_p99_us > d.residual_p50_us
    (pair,) = rep.pairs
    assert (pair.a, pair.b, pair.method) == ("davis", "evk4", "time_reference")
    assert "estimate" in rep.text()


def test_triggers_give_the_offset(tmp_path):
    rep = sync_check(_write_session(tmp_path / "s", with_triggers=True))
    (pair,) = rep.pairs
    assert pair.method == "triggers" and pair.n == 76
    assert abs(pair.offset_us - 350.0) < 3.0 and pair.jitter_p99_us < 30.0
    assert rep.cameras["davis"].n_trigger_edges == 76
    both = sync_check(tmp_path / "s", edge="both").pairs[0]
    assert both.n == 152 and abs(both.offset_us - 350.0) < 3.0


def test_match_edges_gates_and_empty():
    a = np.array([0, 100, 200, 300]) * 1000
    b = np.array([5, 104, 290]) * 1000  # edges 100 apart: gate 50; 200's nearest (290) is 90 away
    d = match_edges(a, b)
    assert sorted((d // 1000).tolist()) == [-5, -4, 10]
    assert len(match_edges(a, np.zeros(0))) == 0


def test_cli_and_errors(tmp_path, capsys):
    bag = _write_session(tmp_path / "s", with_triggers=True)
    assert cli_main(["sync_check", str(bag), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"][0]["method"] == "triggers"
    assert cli_main(["sync_check", str(bag)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"davis - evk4: offset \+3[45]\d\.\d us, jitter p99 \d+\.\d us from 76 triggers", text)
    with BagWriter(tmp_path / "empty") as w:
        w.write_string("/chatter", "hi", 1)
    with pytest.raises(SyncError, match="no <camera>/time_reference"):
        sync_check(tmp_path / "empty")
    assert cli_main(["sync_check", str(tmp_path / "empty")]) == 2

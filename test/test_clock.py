"""Clock mapping: offset and drift recovered under USB-like jitter; monotonic output; pacing."""

import numpy as np
import pytest

from ros2_evmicro.core.clock import ClockSync, Pacer, fit_lower_envelope


def _pairs(rng, n=2000, drift_ppm=80.0, offset_ns=1_700_000_000_000_000_000, period_us=10_000):
    dev = 5_000_000 + np.arange(n, dtype=np.int64) * period_us
    true = offset_ns + dev * 1000 + (dev - dev[0]) * drift_ppm / 1000.0
    delay = rng.exponential(1.5e6, n)  # 1.5 ms mean USB delay
    spikes = rng.random(n) < 0.02
    delay[spikes] += rng.uniform(5e6, 30e6, spikes.sum())  # occasional 5-30 ms stalls
    return dev, (true + delay).astype(np.int64), true.astype(np.int64)


def test_lower_envelope_recovers_drift_and_offset(rng):
    dev, host, true = _pairs(rng)
    fit = fit_lower_envelope(dev, host, n_bins=16)
    assert fit.drift_ppm == pytest.approx(80.0, abs=2.0)
    err = np.abs(fit.host_ns(dev) - true)
    assert err.max() < 0.3e6, f"max mapping error {err.max() / 1e6:.3f} ms"
    # a mean (least squares) fit would be biased by the mean delay; the envelope is not
    assert np.mean(fit.host_ns(dev) - true) < 0.2e6


def test_online_sync_converges_and_is_monotonic(rng):
    dev, host, true = _pairs(rng, n=3000)
    cs = ClockSync(window_s=10.0, refit_every=5)
    out = []
    for d, h in zip(dev, host, strict=True):
        cs.add(d, h)
        out.append(cs.to_host_ns(d))
    out = np.array(out)
    assert np.all(np.diff(out) >= 0)
    err = np.abs(out[500:] - true[500:])
    assert np.percentile(err, 99) < 0.5e6
    r = cs.residuals_ns()
    assert r.min() > -1e3 and np.median(r) < 3e6


def test_sync_restarts_when_device_clock_jumps_back():
    cs = ClockSync(window_s=1.0)
    for i in range(20):
        cs.add(10_000_000 + i * 10_000, 5_000_000_000 + i * 10_000_000)
    cs.add(100, 6_000_000_000)
    assert len(cs.pairs) == 1
    assert cs.to_host_ns(100) == 6_000_000_000


def test_sync_errors():
    with pytest.raises(ValueError, match="add\\(\\) first"):
        ClockSync().to_host_ns(0)
    with pytest.raises(ValueError, match="window_s"):
        ClockSync(window_s=0)
    with pytest.raises(ValueError, match="non-empty"):
        fit_lower_envelope(np.zeros(0), np.zeros(0))


def test_pacer_real_time_and_fast():
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    p = Pacer(1.0, clock=lambda: now[0], sleep=sleep)
    p.start(1_000_000)
    assert p.wait(1_000_000)
    assert p.wait(1_300_000)  # 0.3 s later: sleeps 0.3 s
    assert slept == [pytest.approx(0.3)]
    assert not p.wait(3_000_000, max_sleep_s=0.5)  # 2 s ahead: sleeps at most 0.5 s and says not yet due
    fast = Pacer(0.0, clock=lambda: 0.0, sleep=lambda s: pytest.fail("no sleep at rate 0"))
    assert fast.wait(5) and fast.wait(10**9)
    double = Pacer(2.0, clock=lambda: 0.0)
    double.start(0)
    assert double.due_in_s(1_000_000) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=">= 0"):
        Pacer(-1)

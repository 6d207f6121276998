"""Learnability of the simulator: a tiny CNN learns the 21 AUs from the events of a held-out subject's
face, and a trivial statistic (the event count) does not.

Both tests share one data set: 5 subjects x 21 AUs x 2 takes of 1 s DAVIS346 clips (rendered at 100 Hz,
events interpolated between renders), cropped to the ground-truth face box and binned into
(4 time bins x 2 polarities, 32, 32) count frames. Subjects 0-3 train, subject 4 tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from ros2_evmicro.core.au import AUS, NUM_AUS
from ros2_evmicro.core.sim import render_clip

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

N_SUBJECTS = 5
TAKES = 2
DURATION_S = 1.0
RENDER_HZ = 100.0
SIDE = 32
TIME_BINS = 4
CHANCE = 1.0 / NUM_AUS


def _frames(clip) -> tuple[np.ndarray, int, int]:
    """(2 * TIME_BINS, SIDE, SIDE) log counts of the square face crop, total and in-crop event counts."""
    x0, y0, x1, y1 = clip.face_box
    side = max(x1 - x0, y1 - y0) * 1.15
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    e = clip.events
    u = np.floor((e["x"] - (cx - side / 2)) / side * SIDE).astype(np.int64)
    v = np.floor((e["y"] - (cy - side / 2)) / side * SIDE).astype(np.int64)
    tb = np.minimum(e["t"] * TIME_BINS // clip.duration_us, TIME_BINS - 1)
    ok = (u >= 0) & (u < SIDE) & (v >= 0) & (v < SIDE)
    f = np.zeros((2 * TIME_BINS, SIDE, SIDE), np.float32)
    np.add.at(f, (tb[ok] * 2 + e["p"][ok], v[ok], u[ok]), 1.0)
    return np.log1p(f), len(e), int(ok.sum())


@pytest.fixture(scope="module")
def dataset():
    xs, ys, subj, total, inside = [], [], [], [], []
    for s in range(N_SUBJECTS):
        for take in range(TAKES):
            for a in AUS:
                clip = render_clip(s, a.number, "davis", DURATION_S, lux=600.0, seed=take, render_hz=RENDER_HZ)
                f, n, n_in = _frames(clip)
                xs.append(f)
                ys.append(clip.label)
                subj.append(s)
                total.append(n)
                inside.append(n_in)
    return (np.stack(xs), np.array(ys), np.array(subj), np.array(total), np.array(inside))


def _train_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 80, seed: int = 0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(x.shape[1], 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(64 * (SIDE // 8) ** 2, NUM_AUS),
    )
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    batch = 32
    steps = epochs * ((len(xt) + batch - 1) // batch)
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for _ in range(epochs):
        net.train()
        perm = torch.from_numpy(rng.permutation(len(xt)))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            dy, dx = (int(v) for v in rng.integers(-2, 3, 2))  # small crop jitter
            xb = torch.roll(xt[idx], (dy, dx), (2, 3))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xb), yt[idx], label_smoothing=0.1)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


def _nearest_centroid_accuracy(stat_train, y_train, stat_test, y_test) -> float:
    cent = np.array([stat_train[y_train == k].mean() for k in range(NUM_AUS)])
    pred = np.abs(stat_test[:, None] - cent[None, :]).argmin(1)
    return float((pred == y_test).mean())


@pytest.fixture(scope="module")
def cnn_accuracy(dataset) -> float:
    x, y, subj, _, _ = dataset
    test = subj == N_SUBJECTS - 1
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = _train_cnn(x[~test], y[~test])
        with torch.no_grad():
            acc = float((net(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean())
        print(f"\nCNN held-out accuracy {acc:.3f} (chance {CHANCE:.3f})")
        return acc
    finally:
        torch.set_num_threads(prev)


def test_cnn_learns_aus_of_a_held_out_subject(cnn_accuracy):
    # measured 0.88 when written (event counts: 0.12); 8x chance leaves room for seeds and library versions
    assert cnn_accuracy > 8 * CHANCE, f"held-out accuracy {cnn_accuracy:.2f} is not well above chance"


def test_event_count_alone_does_not_reveal_the_au(dataset, cnn_accuracy):
    x, y, subj, total, inside = dataset
    test = subj == N_SUBJECTS - 1
    acc_total = _nearest_centroid_accuracy(np.log1p(total[~test]), y[~test], np.log1p(total[test]), y[test])
    acc_inside = _nearest_centroid_accuracy(np.log1p(inside[~test]), y[~test], np.log1p(inside[test]),
                                            y[test])
    print(f"\nnearest-centroid on log event count: total {acc_total:.3f}, in face crop {acc_inside:.3f}")
    # head turns make more events than gaze shifts (physics), so a count separates a few groups at best
    assert acc_total < 0.25 and acc_inside < 0.3, (acc_total, acc_inside)
    assert max(acc_total, acc_inside) < 0.5 * cnn_accuracy, (acc_total, acc_inside, cnn_accuracy)

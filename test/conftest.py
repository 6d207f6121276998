"""Shared fixtures: the optional real recordings in ../shared/data/real and seeded RNGs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_REAL = Path(os.environ.get("EVMICRO_SHARED_DATA", REPO.parent / "shared" / "data")) / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of the real recordings; skips the test when ../shared is absent (a user's clone)."""
    if not SHARED_REAL.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_REAL} (../shared is not part of a clone)")
    return SHARED_REAL


def real_file(rel: str) -> Path:
    """Path of one real recording, or skip with the reason."""
    p = SHARED_REAL / rel
    if not p.exists():
        pytest.skip(f"real recording {rel} not found under {SHARED_REAL}")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def ros():
    """A private rclpy context with a SingleThreadedExecutor; nodes added to it are destroyed afterwards."""
    from rosutil import RosHarness

    h = RosHarness()
    try:
        yield h
    finally:
        h.close()


def write_test_checkpoints(folder: Path) -> tuple[Path, Path]:
    """Random-weight checkpoints ``folder/snn`` and ``folder/cvae`` (DAVIS cards, counts): the SNN's weights
    are scaled x6 so that the untrained net fires (a silent net proves nothing). They test the plumbing, not
    recognition."""
    import torch

    from ros2_evmicro.core.models import AUSNN, CVAE, card_for, save_checkpoint
    from ros2_evmicro.core.models.cvae import DEFAULT_CONFIG

    torch.manual_seed(0)
    snn = AUSNN()
    with torch.no_grad():
        for m in snn.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                m.weight.mul_(6.0)
    save_checkpoint(folder / "snn", snn, card_for(snn, sensor="davis", window_ms=33.0, normalisation="counts",
                                                  training_data="random weights (test)"))
    torch.manual_seed(0)
    cvae = CVAE.from_config(DEFAULT_CONFIG)
    save_checkpoint(folder / "cvae", cvae, card_for(cvae, sensor="davis", window_ms=33.0, normalisation="counts"))
    return folder / "snn", folder / "cvae"


def pytest_configure(config):
    """Keep every test's DDS traffic on this machine and apart from other runs (random domain id)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + (os.getpid() % 100)))
    for var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"):  # Fast DDS 2.x, 3.x
        os.environ.setdefault(var, str(REPO / "config" / "fastdds_shm.xml"))

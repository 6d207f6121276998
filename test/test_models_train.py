"""The SNN learns: it overfits a small batch of synthetic clips with the paper's loss (MSE to one-hot)."""

from __future__ import annotations

import pytest
import torch

from ros2_evmicro.core.models import AUSNN, snn_loss


@pytest.mark.slow
def test_snn_overfits_a_small_batch():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(11)
    n, t = 8, 10
    labels = torch.arange(n) * 2  # 8 different AUs
    # each class has its own spatial pattern of event rates; frames are Poisson draws of it
    patterns = torch.rand(n, 2, 64, 64, generator=g) < 0.15
    clips = torch.poisson(patterns.float().unsqueeze(0).expand(t, -1, -1, -1, -1) * 3.0, generator=g)
    m = AUSNN()
    opt = torch.optim.Adam(m.parameters(), lr=4e-3)
    losses = []
    for _ in range(14):
        loss = snn_loss(m(clips), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    m.eval()
    with torch.inference_mode():
        acc = (m(clips).argmax(1) == labels).float().mean().item()
    assert acc == 1.0, (acc, losses)
    assert losses[-1] < 0.1 * losses[0], losses  # MSE to one-hot starts at 1/21 (silent output)

"""3D-CNN baseline after C3D (Tran et al. 2015, "Learning Spatiotemporal Features with 3D Convolutional
Networks"), adapted to 64x64 inputs and clips of any length.

C3D is 8 convolutions (3x3x3, stride 1, pad 1) in 5 blocks with max-pools, then fc6-fc7-fc8. This
version keeps that layout with half of C3D's widths, adds BatchNorm3d after each convolution (training
from scratch on a small data set), pools time only from block 2 on (as C3D) with ``ceil_mode`` so a
1-frame clip still passes, and replaces C3D's fixed pool5 by an adaptive average pool to
``(1, 2, 2)`` (time x height x width) so the FC layers see a fixed 1024-vector whatever the clip length.

Default config (2x64x64 event frames, 21 classes)::

    conv1  2->32    pool (1,2,2)       64 -> 32 px
    conv2  32->64   pool (2,2,2)       32 -> 16
    conv3a 64->128, conv3b 128->128    pool (2,2,2)  16 -> 8
    conv4a 128->256, conv4b 256->256   pool (2,2,2)  8 -> 4
    conv5a 256->256, conv5b 256->256   pool (2,2,2)  4 -> 2
    adaptive avg pool -> (256, 1, 2, 2) -> flatten 1024
    fc6 1024->2010 - ReLU - Dropout 0.5 - fc7 2010->2010 - ReLU - Dropout 0.5 - fc8 2010->21

Parameter count: exactly 13,061,071 for that config, i.e. the paper's 13.06M (fc_width 2010 was chosen for
that; the power-of-two 2048 gives 13,255,061). Output: logits ``(B, num_classes)``; train with
cross-entropy, read scores with softmax.
Input: a clip ``(T, B, C, H, W)``, the same layout as the SNN, permuted inside to ``(B, C, T, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ros2_evmicro.core.au import NUM_AUS
from ros2_evmicro.core.models.snn import ModelInputError

__all__ = ["C3D"]

# (number of convolutions, out channels, pool kernel) per block
_BLOCKS = ((1, (1, 2, 2)), (1, (2, 2, 2)), (2, (2, 2, 2)), (2, (2, 2, 2)), (2, (2, 2, 2)))


class C3D(nn.Module):
    """C3D-style 3D CNN (see the module docstring for the default config and its parameter count).

    Args:
        in_channels: 2 for event frames, 3 for RGB, 1 for grayscale.
        height, width: input size in pixels (any size >= 32; pooled down by 32, then adaptively).
        widths: output channels of the 5 blocks (C3D: 64, 128, 256, 512, 512; default half of that).
        fc_width: width of fc6 and fc7 (C3D: 4096; 2010 here to match the paper's 13.06M).
        num_classes: 21 AUs.
        dropout: dropout probability after fc6 and fc7 (0.5 as C3D).
        batch_norm: BatchNorm3d after each convolution.
    """

    arch_name = "c3d"
    output_kind = "logits"

    def __init__(
        self,
        in_channels: int = 2,
        height: int = 64,
        width: int = 64,
        widths: Sequence[int] = (32, 64, 128, 256, 256),
        fc_width: int = 2010,
        num_classes: int = NUM_AUS,
        dropout: float = 0.5,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != len(_BLOCKS):
            raise ModelInputError(f"C3D needs {len(_BLOCKS)} block widths, got {widths}")
        if height < 32 or width < 32:
            raise ModelInputError(f"C3D input must be at least 32x32, got {height}x{width}")
        self.hparams = dict(
            in_channels=in_channels, height=height, width=width, widths=list(widths), fc_width=fc_width,
            num_classes=num_classes, dropout=dropout, batch_norm=batch_norm,
        )
        self.in_channels, self.height, self.width = in_channels, height, width
        layers: list[nn.Module] = []
        c_in = in_channels
        for (n_conv, pool), c_out in zip(_BLOCKS, widths, strict=True):
            for _ in range(n_conv):
                layers.append(nn.Conv3d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm3d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(nn.MaxPool3d(pool, pool, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d((1, 2, 2))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * 4, fc_width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of a clip ``(T, B, C, H, W)`` (any ``T >= 1``)."""
        if x_seq.ndim != 5 or tuple(x_seq.shape[-3:]) != (self.in_channels, self.height, self.width):
            raise ModelInputError(
                f"C3D expects (T, B, {self.in_channels}, {self.height}, {self.width}), "
                f"got {tuple(x_seq.shape)}"
            )
        x = x_seq.permute(1, 2, 0, 3, 4)
        return self.classifier(self.pool(self.features(x)))

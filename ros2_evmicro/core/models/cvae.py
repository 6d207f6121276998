"""Conditional VAE that reconstructs a grayscale face image from an event frame (Sec. 5 of the paper).

Notation: ``x`` = target grayscale face image ``(image_channels, H, W)`` in [0, 1]; ``c`` = condition =
event frame ``(cond_channels=2, Hc, Wc)`` (OFF, ON counts, as the frames topic carries them); ``z`` = latent
code of ``latent_dim`` (32) numbers.

Encoder q(z | x, c)::

    x -> Conv(I -> c1, 4x4, stride 2, pad 1) - ReLU - Conv(c1 -> c2, 4x4, stride 2, pad 1) - ReLU - flatten
    [that, flatten(c)] -> Linear(-> fc_width) - ReLU
        -> Linear(-> latent) = mu,  Linear(-> latent) = log sigma^2

The condition enters as ``log(1 + c)`` (``cond_log1p``, default on): event counts of a 64x64 crop range from
0 to several hundred (an EVK4 face crop sums ~40 sensor pixels per cell), and fed raw into the fully
connected layers they made training diverge (NaN weights); the logarithm keeps the scale of a burst and of a
quiet frame within one order of magnitude. ``log sigma^2`` is clamped to [-20, 10] before ``exp``.

Decoder p(x | z, c)::

    [z, flatten(c)] -> Linear(-> fc_width) - ReLU - Linear(-> c2 * H/4 * W/4) - ReLU - reshape
    -> ConvTranspose(c2 -> c1, 4x4, stride 2, pad 1) - ReLU - ConvTranspose(c1 -> I, 4x4, stride 2, pad 1)
    -> sigmoid

Loss (:func:`cvae_loss`, per batch)::

    L = mean_b [ sum_pixels (x_hat - x)^2 ]
        + beta * mean_b [ -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2) ]

i.e. the reconstruction term is the squared error SUMMED over the pixels of an image (the Gaussian
log-likelihood up to constants) and AVERAGED over the batch, and so is the KL term; ``beta`` = 1 is the
plain ELBO.

Inference: :meth:`CVAE.reconstruct` decodes with ``z = 0`` (the prior's mean: deterministic, the default)
or, with a generator, with ``z ~ N(0, I)``.

Sizes. Almost all parameters sit in the three fully connected layers, which grow with the pixel count:
for square S x S images and conditions the count is about ``(c2/16 * 2 + 4) * fc_width * S^2``
(:func:`cvae_param_count` gives the exact count from a config without allocating anything). The paper
reports 289M parameters; the 64x64 crops of the classifier give only 12.7M, so the paper's cVAE works on
much larger images. Configurations that reproduce 289M (exact counts from :func:`cvae_param_count`):

- ``PAPER_SIZE_CONFIG``: 168x168 image and condition, c1=64, c2=128, fc_width=512: 289,554,241 (+0.19%);
- 216x216, c1=32, c2=64, fc_width=512: 286,958,017 (-0.71%);
- 188x188, c1=16, c2=32, fc_width=1024: 289,726,113 (+0.25%).

So the paper's network must see faces of roughly 170-220 pixels a side (a DAVIS346 face crop at full
resolution), with fc_width 512. The shipped default (``DEFAULT_CONFIG``: 64x64, c1=32, c2=64,
fc_width=256) has 12,691,137 parameters and decodes a frame in about 1.3 ms (p50) on the 2-core CPU of
the development machine (see docs/benchmarks.md for the measured p50/p99).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CVAE",
    "CVAEConfig",
    "CVAEInputError",
    "DEFAULT_CONFIG",
    "PAPER_SIZE_CONFIG",
    "cvae_loss",
    "cvae_param_count",
]


class CVAEInputError(ValueError):
    """A tensor or configuration given to the cVAE has the wrong shape or size."""


@dataclass(frozen=True)
class CVAEConfig:
    """Sizes of a :class:`CVAE` (pixels, channels, widths); image sides must be multiples of 4."""

    image_height: int = 64
    image_width: int = 64
    image_channels: int = 1
    cond_height: int = 64
    cond_width: int = 64
    cond_channels: int = 2
    conv1: int = 32
    conv2: int = 64
    fc_width: int = 256
    latent_dim: int = 32
    cond_log1p: bool = True

    def __post_init__(self) -> None:
        for name in ("image_height", "image_width"):
            v = getattr(self, name)
            if v <= 0 or v % 4:
                raise CVAEInputError(f"cVAE {name} must be a positive multiple of 4, got {v}")
        for name in ("image_channels", "cond_height", "cond_width", "cond_channels", "conv1", "conv2",
                     "fc_width", "latent_dim"):
            if getattr(self, name) <= 0:
                raise CVAEInputError(f"cVAE {name} must be positive, got {getattr(self, name)}")

    @property
    def cond_numel(self) -> int:
        return self.cond_channels * self.cond_height * self.cond_width

    @property
    def bottleneck_numel(self) -> int:
        return self.conv2 * (self.image_height // 4) * (self.image_width // 4)


LOGVAR_MIN, LOGVAR_MAX = -20.0, 10.0
"""Range of the encoder's ``log sigma^2`` (keeps ``exp`` finite in training)."""

DEFAULT_CONFIG = CVAEConfig()
PAPER_SIZE_CONFIG = CVAEConfig(
    image_height=168, image_width=168, cond_height=168, cond_width=168, conv1=64, conv2=128, fc_width=512
)


def _as_config(cfg: CVAEConfig | Mapping | None) -> CVAEConfig:
    if cfg is None:
        return DEFAULT_CONFIG
    if isinstance(cfg, CVAEConfig):
        return cfg
    return CVAEConfig(**dict(cfg))


def cvae_param_count(cfg: CVAEConfig | Mapping | None = None) -> int:
    """Number of trainable parameters of ``CVAE(cfg)``, computed from the sizes (nothing allocated)."""
    c = _as_config(cfg)
    i, c1, c2, f, z, k2 = c.image_channels, c.conv1, c.conv2, c.fc_width, c.latent_dim, 16
    enc = (i * c1 * k2 + c1) + (c1 * c2 * k2 + c2)
    enc += (c.bottleneck_numel + c.cond_numel) * f + f + 2 * (f * z + z)
    dec = ((z + c.cond_numel) * f + f) + (f * c.bottleneck_numel + c.bottleneck_numel)
    dec += (c2 * c1 * k2 + c1) + (c1 * i * k2 + i)
    return enc + dec


class CVAE(nn.Module):
    """Conditional VAE, event frame -> grayscale face (see the module docstring).

    The keyword arguments are the fields of :class:`CVAEConfig`.
    """

    arch_name = "cvae"
    output_kind = "image"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        cfg = CVAEConfig(**kwargs)
        self.cfg = cfg
        self.hparams = asdict(cfg)
        c1, c2, f = cfg.conv1, cfg.conv2, cfg.fc_width
        self.enc_conv = nn.Sequential(
            nn.Conv2d(cfg.image_channels, c1, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(inplace=True),
        )
        self.enc_fc = nn.Linear(cfg.bottleneck_numel + cfg.cond_numel, f)
        self.fc_mu = nn.Linear(f, cfg.latent_dim)
        self.fc_logvar = nn.Linear(f, cfg.latent_dim)
        self.dec_fc1 = nn.Linear(cfg.latent_dim + cfg.cond_numel, f)
        self.dec_fc2 = nn.Linear(f, cfg.bottleneck_numel)
        self.dec_conv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c1, cfg.image_channels, 4, 2, 1),
        )

    @classmethod
    def from_config(cls, cfg: CVAEConfig | Mapping | None = None) -> CVAE:
        return cls(**asdict(_as_config(cfg)))

    def _check_cond(self, c: torch.Tensor) -> None:
        cfg = self.cfg
        if c.ndim != 4 or tuple(c.shape[1:]) != (cfg.cond_channels, cfg.cond_height, cfg.cond_width):
            raise CVAEInputError(
                f"cVAE condition must be (B, {cfg.cond_channels}, {cfg.cond_height}, {cfg.cond_width}), "
                f"got {tuple(c.shape)}"
            )

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(B, latent_dim)``, of q(z | x, c) for images ``x`` ``(B, I, H, W)``."""
        cfg = self.cfg
        if x.ndim != 4 or tuple(x.shape[1:]) != (cfg.image_channels, cfg.image_height, cfg.image_width):
            raise CVAEInputError(
                f"cVAE image must be (B, {cfg.image_channels}, {cfg.image_height}, {cfg.image_width}), "
                f"got {tuple(x.shape)}"
            )
        self._check_cond(c)
        h = torch.cat([self.enc_conv(x).flatten(1), self._cond(c).flatten(1)], dim=1)
        h = F.relu(self.enc_fc(h))
        return self.fc_mu(h), self.fc_logvar(h).clamp(LOGVAR_MIN, LOGVAR_MAX)

    def _cond(self, c: torch.Tensor) -> torch.Tensor:
        """The condition as the layers see it: ``log(1 + max(c, 0))`` with ``cond_log1p``, else ``c``."""
        return torch.log1p(c.clamp_min(0)) if self.cfg.cond_log1p else c

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Image ``(B, I, H, W)`` in [0, 1] of p(x | z, c)."""
        self._check_cond(c)
        cfg = self.cfg
        h = F.relu(self.dec_fc1(torch.cat([z, self._cond(c).flatten(1)], dim=1)))
        h = F.relu(self.dec_fc2(h)).view(-1, cfg.conv2, cfg.image_height // 4, cfg.image_width // 4)
        return torch.sigmoid(self.dec_conv(h))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(x_hat, mu, logvar)`` with ``z = mu + sigma * eps`` (reparameterisation)."""
        mu, logvar = self.encode(x, c)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z, c), mu, logvar

    def reconstruct(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inference: image ``(B, I, H, W)`` from the condition alone (``z = 0``, or ``z ~ N(0, I)``
        drawn from ``generator`` when one is given)."""
        self._check_cond(c)
        shape = (c.shape[0], self.cfg.latent_dim)
        if generator is None:
            z = torch.zeros(shape, device=c.device, dtype=c.dtype)
        else:
            z = torch.randn(shape, generator=generator, device=c.device, dtype=c.dtype)
        return self.decode(z, c)


def cvae_loss(
    x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, reconstruction, kl)``: per-image sums averaged over the batch (module docstring)."""
    b = x.shape[0]
    recon = F.mse_loss(x_hat, x, reduction="sum") / b
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / b
    return recon + beta * kl, recon, kl

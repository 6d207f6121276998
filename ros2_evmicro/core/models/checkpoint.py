"""Checkpoints with model cards: ``<name>.pt`` (state dict) next to ``<name>.card.yaml``.

The card says what the weights are (architecture and constructor arguments, input size and channels,
normalisation, event window, sensor, class list) and where they come from (training data, metrics,
software and torch versions, date, parameter count, sha256 of the ``.pt``). :func:`load_checkpoint`
rebuilds the model from the card alone, verifies the checksum, and refuses a checkpoint whose card
disagrees with what the caller (a node, an evaluation script) expects, listing every disagreement.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import ros2_evmicro
from ros2_evmicro.core.au import AU_CODES
from ros2_evmicro.core.models.registry import UnknownModelError, build_model, param_count
from ros2_evmicro.core.models.runtime import resolve_device

__all__ = [
    "CardMismatchError",
    "CheckpointError",
    "ChecksumError",
    "ModelCard",
    "card_for",
    "check_card",
    "checkpoint_paths",
    "load_card",
    "load_checkpoint",
    "save_checkpoint",
]


class CheckpointError(Exception):
    """A checkpoint or its card cannot be read or used."""


class CardMismatchError(CheckpointError):
    """The card disagrees with the values the caller expects."""


class ChecksumError(CheckpointError):
    """The weights file's sha256 differs from the one on its card."""


@dataclass
class ModelCard:
    """What a checkpoint holds. Sizes in pixels, ``window_ms`` in milliseconds."""

    arch: str = ""
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: list[int] = field(default_factory=lambda: [64, 64])  # (height, width)
    in_channels: int = 2
    normalisation: str = "counts"
    window_ms: float = 33.0
    sensor: str = ""
    classes: list[str] = field(default_factory=lambda: list(AU_CODES))
    training_data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    software_version: str = field(default_factory=lambda: ros2_evmicro.__version__)
    torch_version: str = field(default_factory=lambda: str(torch.__version__))
    created: str = ""
    param_count: int = 0
    sha256: str = ""


_CARD_FIELDS = tuple(f.name for f in fields(ModelCard))


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(<name>.pt, <name>.card.yaml)`` for ``<name>``, ``<name>.pt`` or ``<name>.card.yaml``."""
    p = Path(path)
    name = p.name
    for suffix in (".card.yaml", ".pt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + ".pt"), p.with_name(name + ".card.yaml")


def _model_io(model: nn.Module) -> tuple[int, list[int]]:
    """Channels and (height, width) of what the model consumes at inference (the cVAE: its condition)."""
    hp = getattr(model, "hparams", {})
    if "cond_channels" in hp:
        return int(hp["cond_channels"]), [int(hp["cond_height"]), int(hp["cond_width"])]
    return int(hp.get("in_channels", 0)), [int(hp.get("height", 0)), int(hp.get("width", 0))]


def card_for(model: nn.Module, **values: Any) -> ModelCard:
    """A card for ``model`` with the architecture fields filled in from it; ``values`` set the others."""
    unknown = sorted(set(values) - set(_CARD_FIELDS))
    if unknown:
        raise CheckpointError(f"unknown model card field(s) {unknown}; fields: {', '.join(_CARD_FIELDS)}")
    in_channels, size = _model_io(model)
    base = ModelCard(
        arch=getattr(model, "arch_name", type(model).__name__),
        arch_kwargs=dict(getattr(model, "hparams", {})),
        input_size=size,
        in_channels=in_channels,
    )
    return replace(base, **values)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain(v: Any) -> Any:
    """YAML-safe plain value: tuples to lists, numpy/torch scalars to Python numbers."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, str):
        return str(v)  # str subclasses such as torch's TorchVersion
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def _non_finite(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinity."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: str | Path, model: nn.Module, card: ModelCard | None = None) -> ModelCard:
    """Write ``<name>.pt`` (state dict) and ``<name>.card.yaml``; returns the card as written.

    The architecture, its constructor arguments, the parameter count, the versions and the sha256 are
    taken from the model and the written file (they overwrite the card's values); ``created`` is set to
    now (UTC) when empty. Everything else comes from ``card`` (default: :func:`card_for` defaults).
    """
    pt, card_path = checkpoint_paths(path)
    card = card or card_for(model)
    bad = _non_finite(model.state_dict())
    if bad:
        raise CheckpointError(f"refusing to save {pt}: non-finite values in {', '.join(bad[:5])}"
                              f"{' ...' if len(bad) > 5 else ''} (training diverged)")
    pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), pt)
    card = replace(
        card,
        arch=getattr(model, "arch_name", card.arch),
        arch_kwargs=dict(getattr(model, "hparams", card.arch_kwargs)),
        param_count=param_count(model),
        software_version=ros2_evmicro.__version__,
        torch_version=str(torch.__version__),
        created=card.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        sha256=_sha256(pt),
    )
    card_path.write_text(yaml.safe_dump(_plain(asdict(card)), sort_keys=False))
    return card


def load_card(path: str | Path) -> ModelCard:
    """Read the card of a checkpoint (``<name>``, ``<name>.pt`` or ``<name>.card.yaml``)."""
    _, card_path = checkpoint_paths(path)
    try:
        data = yaml.safe_load(card_path.read_text())
    except OSError as err:
        raise CheckpointError(f"Could not read model card {card_path}: {err}") from None
    except yaml.YAMLError as err:
        raise CheckpointError(f"Model card {card_path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"Model card {card_path} is not a mapping")
    unknown = sorted(set(data) - set(_CARD_FIELDS))
    if unknown:
        raise CheckpointError(f"Model card {card_path} has unknown field(s) {unknown}")
    return ModelCard(**data)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _show(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def check_card(card: ModelCard, expect: Mapping[str, Any] | None, where: str = "") -> None:
    """Raise :class:`CardMismatchError` listing each field where ``card`` differs from ``expect``."""
    if not expect:
        return
    unknown = sorted(set(expect) - set(_CARD_FIELDS))
    if unknown:
        raise CheckpointError(
            f"cannot check unknown card field(s) {unknown}; fields: {', '.join(_CARD_FIELDS)}"
        )
    diffs = [
        f"card says {k}={_show(getattr(card, k))}, node says {_show(v)}"
        for k, v in expect.items()
        if not _same(getattr(card, k), _plain(v))
    ]
    if diffs:
        raise CardMismatchError(
            f"checkpoint {where} does not fit: " + "; ".join(diffs) + " (retrain, pick another checkpoint, "
            "or change the node's parameters)"
        )


def load_checkpoint(
    path: str | Path,
    expect: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelCard]:
    """Rebuild a model from its card, load its weights, return ``(model in eval mode, card)``.

    ``device``: 'cpu', 'cuda', 'cuda:N' or 'auto' (see :func:`resolve_device`).

    Checks, in order: the card against ``expect`` (card field -> value the caller uses, e.g.
    ``{"window_ms": 50, "input_size": (64, 64), "in_channels": 2}``; raises :class:`CardMismatchError`),
    the sha256 of the ``.pt`` (:class:`ChecksumError`), the parameter count, and a strict state-dict load.
    """
    pt, card_path = checkpoint_paths(path)
    device = resolve_device(device)
    card = load_card(card_path)
    check_card(card, expect, where=str(pt))
    if not pt.is_file():
        raise CheckpointError(f"weights file {pt} missing (card {card_path} exists)")
    digest = _sha256(pt)
    if card.sha256 and digest != card.sha256:
        raise ChecksumError(
            f"{pt} has sha256 {digest[:12]}..., its card says {card.sha256[:12]}...: corrupt or swapped"
        )
    try:
        model = build_model(card.arch, **card.arch_kwargs)
    except (UnknownModelError, TypeError, ValueError) as err:
        raise CheckpointError(f"Could not build {card.arch!r} from card {card_path}: {err}") from None
    n = param_count(model)
    if card.param_count and n != card.param_count:
        raise CheckpointError(
            f"card {card_path} says {card.param_count} parameters, the rebuilt model has {n}"
        )
    try:
        state = torch.load(pt, map_location=device, weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as err:
        raise CheckpointError(f"Could not load weights {pt}: {err}") from None
    bad = _non_finite(state)
    if bad:
        raise CheckpointError(f"weights {pt} hold NaN or infinite values in {', '.join(bad[:5])}"
                              f"{' ...' if len(bad) > 5 else ''}: the model is unusable (its training diverged)")
    return model.to(device).eval(), card

"""Model registry: architecture name (as written on a model card) -> constructor."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ros2_evmicro.core.models.c3d import C3D
from ros2_evmicro.core.models.cvae import CVAE
from ros2_evmicro.core.models.snn import AUSNN

__all__ = ["UnknownModelError", "build_model", "known_models", "register_model", "param_count"]


class UnknownModelError(KeyError):
    """An architecture name that the registry does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    AUSNN.arch_name: AUSNN,
    C3D.arch_name: C3D,
    CVAE.arch_name: CVAE,
}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add (or replace) an architecture; ``factory(**kwargs)`` must return the model."""
    _REGISTRY[name] = factory


def known_models() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_model(arch: str, **kwargs: object) -> nn.Module:
    """Build architecture ``arch`` ('plif_snn', 'c3d', 'cvae') with its constructor keyword arguments."""
    try:
        factory = _REGISTRY[arch]
    except KeyError:
        raise UnknownModelError(
            f"unknown model architecture {arch!r}; known: {', '.join(known_models())}"
        ) from None
    return factory(**kwargs)


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

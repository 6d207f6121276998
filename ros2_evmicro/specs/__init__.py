"""One parameter declaration per node (``ros2_evmicro.specs.<node>.SPEC``), importable without rclpy.

The ROS nodes, the command line, training and evaluation all read these, so a value means the same thing
everywhere. ``get_spec('slicer')`` imports ``ros2_evmicro.specs.slicer`` and returns its ``SPEC``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ros2_evmicro.core.params import ParamError, ParamSpec


def get_spec(node: str) -> ParamSpec:
    try:
        mod = importlib.import_module(f"{__name__}.{node}")
    except ModuleNotFoundError:
        raise ParamError(f"no parameter declaration for node {node!r}; known: {', '.join(all_specs())}") from None
    return mod.SPEC


def all_specs() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

"""Parameter declarations: one schema per node, used by the ROS node, the command line, training and evaluation.

A :class:`ParamSpec` lists each parameter once (:class:`Param`: type from the default, unit, description,
range or choices, whether it may change at runtime). The ROS side turns it into declared parameters with
descriptors (:mod:`ros2_evmicro.ros.node`); everything else reads the same values from ``config/*.yaml`` in
the ROS params format::

    slicer:               # node name, or /** for every node
      ros__parameters:
        window_ms: 33.0

Values are checked with :meth:`ParamSpec.check` which either returns the coerced value or raises
:class:`ParamError` with a reason a person can act on. This module imports neither rclpy nor yaml at import
time of the core (yaml is imported when a file is read).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["Param", "ParamError", "ParamSpec", "ParamValues", "load_ros_params_file"]


class ParamError(ValueError):
    """A parameter value is of the wrong type, out of range, unknown, or read-only."""


_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One parameter: its name (units in the name, e.g. ``window_ms``), default, description and limits.

    ``range`` is inclusive ``(lo, hi)`` (either may be None); ``choices`` lists the allowed values;
    ``dynamic`` False makes the parameter read-only once the node runs.
    """

    name: str
    default: Any
    description: str
    unit: str = ""
    range: tuple[float | None, float | None] | None = None
    choices: tuple[Any, ...] | None = None
    dynamic: bool = True

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").replace(".", "").isalnum():
            raise ParamError(f"parameter name {self.name!r} must be alphanumeric with '_' or '.'")
        d = self.default
        if isinstance(d, list | tuple):
            if not d:
                raise ParamError(f"parameter {self.name}: a list default must not be empty (its type comes from it)")
            object.__setattr__(self, "default", list(d))
        elif not isinstance(d, _SCALARS):
            raise ParamError(f"parameter {self.name}: default {d!r} must be bool, int, float, str or a list")
        self.check(self.default)

    @property
    def value_type(self) -> type:
        d = self.default
        return list if isinstance(d, list) else type(d)

    @property
    def item_type(self) -> type | None:
        return type(self.default[0]) if isinstance(self.default, list) else None

    def _coerce_scalar(self, v: Any, typ: type) -> Any:
        if typ is bool:
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.lower() in ("true", "false"):
                return v.lower() == "true"
            raise ParamError(f"{self.name} must be true or false, got {v!r}")
        if typ is int:
            if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
                raise ParamError(f"{self.name} must be an integer, got {v!r}")
            return int(v)
        if typ is float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ParamError(f"{self.name} must be a number, got {v!r}")
            v = float(v)
            if math.isnan(v):
                raise ParamError(f"{self.name} must not be NaN")
            return v
        if typ is str:
            if isinstance(v, int | float) and not isinstance(v, bool):
                return str(v)  # `-p session:=1` arrives as an integer: an id is still meant
            if not isinstance(v, str):
                raise ParamError(f"{self.name} must be a string, got {v!r}")
            return v
        raise ParamError(f"{self.name}: unsupported type {typ}")  # pragma: no cover

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise :class:`ParamError` with the reason."""
        item = self.item_type
        if item is not None:
            if not isinstance(value, list | tuple):
                raise ParamError(f"{self.name} must be a list of {item.__name__}, got {value!r}")
            out = [self._coerce_scalar(v, item) for v in value]
            for v in out:
                self._check_limits(v)
            return out
        v = self._coerce_scalar(value, self.value_type)
        self._check_limits(v)
        return v

    def _check_limits(self, v: Any) -> None:
        unit = f" {self.unit}" if self.unit else ""
        if self.choices is not None and v not in self.choices:
            raise ParamError(f"{self.name}={v!r} is not one of {list(self.choices)}")
        if self.range is not None and isinstance(v, int | float) and not isinstance(v, bool):
            lo, hi = self.range
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise ParamError(
                    f"{self.name}={v}{unit} is out of range [{'-inf' if lo is None else lo}, "
                    f"{'inf' if hi is None else hi}]{unit}"
                )


class ParamValues(Mapping):
    """Read-only, attribute-accessible parameter values (``values.window_ms``)."""

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", MappingProxyType(dict(data)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("parameter values are read-only; use ParamSpec.update")

    def __getitem__(self, k: str) -> Any:
        return self._data[k]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ParamValues({dict(self._data)!r})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)


@dataclass(frozen=True)
class ParamSpec:
    """The parameters of one node (``node`` is its default ROS name)."""

    node: str
    params: tuple[Param, ...]
    description: str = ""
    _by_name: dict[str, Param] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        for p in self.params:
            if p.name in self._by_name:
                raise ParamError(f"{self.node}: parameter {p.name} declared twice")
            self._by_name[p.name] = p

    def __getitem__(self, name: str) -> Param:
        try:
            return self._by_name[name]
        except KeyError:
            raise ParamError(
                f"{self.node} has no parameter {name!r}; known: {', '.join(sorted(self._by_name))}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: (list(p.default) if isinstance(p.default, list) else p.default) for p in self.params}

    def check(self, name: str, value: Any) -> Any:
        return self[name].check(value)

    def values(self, overrides: Mapping[str, Any] | None = None, *, strict: bool = True) -> ParamValues:
        """Defaults updated by ``overrides`` (checked); unknown names raise unless ``strict`` is False."""
        out = self.defaults()
        errors = []
        for k, v in (overrides or {}).items():
            if k not in self._by_name:
                if strict:
                    errors.append(f"unknown parameter {k!r} (known: {', '.join(sorted(self._by_name))})")
                continue
            try:
                out[k] = self._by_name[k].check(v)
            except ParamError as err:
                errors.append(str(err))
        if errors:
            raise ParamError(f"{self.node}: " + "; ".join(errors))
        return ParamValues(out)

    def update(self, current: ParamValues, changes: Mapping[str, Any], *, runtime: bool = True) -> ParamValues:
        """New values after ``changes``; at ``runtime`` a change of a non-dynamic parameter is refused."""
        data = current.as_dict()
        for k, v in changes.items():
            p = self[k]
            if runtime and not p.dynamic and v != data.get(k):
                raise ParamError(f"{self.node}: {k} cannot change while the node runs (restart it with the new value)")
            data[k] = p.check(v)
        return ParamValues(data)

    def from_yaml(self, paths: str | Path | Iterable[str | Path], node_name: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> ParamValues:
        """Values for this node from ROS params files (later files win), then ``overrides``."""
        if isinstance(paths, str | Path):
            paths = [paths]
        merged: dict[str, Any] = {}
        for path in paths:
            merged.update(load_ros_params_file(path, node_name or self.node))
        merged.update(overrides or {})
        return self.values(merged)

    def markdown(self) -> str:
        """A markdown table of the parameters, for the docs."""
        rows = ["| parameter | default | unit | range / choices | runtime | description |", "|---|---|---|---|---|---|"]
        for p in self.params:
            lim = ""
            if p.choices is not None:
                lim = ", ".join(map(str, p.choices))
            elif p.range is not None:
                lim = f"[{p.range[0]}, {p.range[1]}]"
            rows.append(
                f"| `{p.name}` | `{p.default}` | {p.unit} | {lim} | {'yes' if p.dynamic else 'no'} | {p.description} |"
            )
        return "\n".join(rows)


def load_ros_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` (and of the ``/**`` wildcard) in a ROS params YAML file.

    Node keys may be written with or without a leading slash or namespace (``/slicer``, ``davis/slicer``);
    the last path component is matched. Nested dicts are flattened with dots, as ROS does.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamError(f"parameter file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ParamError(f"parameter file {path} is not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ParamError(f"parameter file {path}: top level must be a mapping of node names")
    out: dict[str, Any] = {}
    want = node_name.strip("/").split("/")[-1]
    for key in sorted(doc, key=lambda k: 0 if str(k) in ("/**", "**") else 1):
        body = doc[key]
        name = str(key).strip("/").split("/")[-1]
        if str(key) not in ("/**", "**") and name != want:
            continue
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ParamError(f"parameter file {path}: {key} must hold a 'ros__parameters' mapping")
        out.update(_flatten(body["ros__parameters"] or {}))
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out

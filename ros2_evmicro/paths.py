"""Where the package's data lives: ``models/`` and ``config/`` in a source tree or a colcon install."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "ros2_evmicro"
_SRC = Path(__file__).resolve().parent.parent


def share_dir(name: str) -> Path:
    """``<repo>/<name>`` in a source tree, else ``share/ros2_evmicro/<name>`` of the ament install."""
    here = _SRC / name
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / name
    except Exception as err:  # noqa: BLE001 - not installed with colcon
        raise FileNotFoundError(f"cannot find the {name}/ folder of {PACKAGE}: {err}") from None


def models_dir() -> Path:
    return share_dir("models")


def resolve_model(path: str) -> Path:
    """A checkpoint path as given (absolute, or relative to the working directory), else in ``models/``.

    ``path`` may name the ``.pt``, the ``.card.yaml`` or the bare stem (``au_snn_davis``).
    """
    p = Path(path).expanduser()
    for cand in (p, Path(str(p) + ".pt"), Path(str(p) + ".card.yaml")):
        if cand.is_file():
            return p
    if not p.is_absolute():
        m = models_dir() / p
        for cand in (m, Path(str(m) + ".pt"), Path(str(m) + ".card.yaml")):
            if cand.is_file():
                return m
    raise FileNotFoundError(
        f"no checkpoint {path!r} (looked here and in {models_dir()}); train one with `evmicro train` or set the "
        "node's checkpoint parameter")

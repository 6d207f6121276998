"""The ``evmicro`` command line. Each module of this package with a ``register(subparsers)`` function adds
one sub-command, so new tools plug in without touching this file."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ros2_evmicro import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evmicro",
        description="ros2_evmicro: event-based facial micro-expression analysis on ROS 2",
    )
    parser.add_argument("--version", action="version", version=f"ros2_evmicro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{m.name}")
        reg = getattr(mod, "register", None)
        if callable(reg):
            reg(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as err:  # domain errors derive from ValueError: message, not traceback
        print(f"evmicro {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Run a graph description in one process, on one SingleThreadedExecutor.

This is what ``evmicro run <graph>`` and ``evmicro demo`` do, and what the tests use: the same nodes, with
the same parameter files, parameters and remappings as the launch files start as separate processes.
(SingleThreadedExecutor: rclpy's MultiThreadedExecutor collapses to about 30 msg/s on this kind of machine.)
"""

from __future__ import annotations

import importlib
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ros2_evmicro.core.params import ParamError, load_ros_params_file
from ros2_evmicro.graphs import GraphError, NodeDecl, config_dir
from ros2_evmicro.ros.node import use_fastdds_profile

__all__ = ["GraphRun", "node_class", "node_parameters", "run_graph"]


def node_class(decl: NodeDecl) -> type[Node]:
    """The node class of a declaration (``ros2_evmicro.nodes.<kind>.NODE``)."""
    try:
        mod = importlib.import_module(decl.module)
    except ModuleNotFoundError as err:
        raise GraphError(f"node {decl.fqn}: cannot import {decl.module}: {err}") from None
    try:
        return mod.NODE
    except AttributeError:
        raise GraphError(f"{decl.module} defines no NODE class") from None


def node_parameters(decl: NodeDecl, cfg: Path | None = None) -> dict:
    """Parameters of a declaration: its config files (in order), then its inline parameters."""
    cfg = cfg or config_dir()
    params: dict = {}
    for f in decl.param_files:
        path = Path(f) if Path(f).is_absolute() else cfg / f
        if path.is_file():
            params.update(load_ros_params_file(path, decl.name))
    params.update(decl.parameters)
    return params


class GraphRun:
    """Nodes of a graph created in one rclpy context and spun together."""

    def __init__(self, decls: Iterable[NodeDecl], *, context=None, args: list[str] | None = None):
        use_fastdds_profile()
        self.own_context = context is None
        self.context = context or rclpy.Context()
        if self.own_context:
            rclpy.init(args=args or [], context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        try:
            for d in decls:
                cls = node_class(d)
                overrides = [Parameter(k, value=v) for k, v in node_parameters(d).items()]
                cli = ["--ros-args"] + [x for a, b in d.remappings for x in ("-r", f"{a}:={b}")]
                node = cls(node_name=d.name, namespace=d.namespace or None, context=self.context,
                           parameter_overrides=overrides, cli_args=cli, use_global_arguments=False)
                self.nodes.append(node)
                self.executor.add_node(node)
        except BaseException:
            self.close()
            raise

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.get_name() == name or n.get_fully_qualified_name() == name:
                return n
        raise KeyError(name)

    def finished(self) -> bool:
        return any(getattr(n, "finished", False) for n in self.nodes)

    def spin(self, duration_s: float | None = None, until: Callable[[], bool] | None = None) -> str:
        """Spin until a node reports ``finished``, ``until()`` is true, ``duration_s`` passes or Ctrl-C.

        Returns why it stopped: 'finished', 'until', 'duration', 'interrupted' or 'shutdown'.
        """
        t_end = None if not duration_s else time.monotonic() + duration_s
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
                if self.finished():
                    return "finished"
                if until is not None and until():
                    return "until"
                if t_end is not None and time.monotonic() >= t_end:
                    return "duration"
        except KeyboardInterrupt:
            return "interrupted"
        except ExternalShutdownException:
            return "shutdown"
        return "shutdown"

    def close(self) -> None:
        for n in reversed(self.nodes):
            close = getattr(n, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as err:  # noqa: BLE001 - close every node even if one fails
                    print(f"error while closing {n.get_name()}: {err}")
            try:
                self.executor.remove_node(n)
            except Exception:  # noqa: BLE001
                pass
            n.destroy_node()
        self.nodes = []
        if self.own_context:
            rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> GraphRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_graph(decls: Iterable[NodeDecl], *, duration_s: float | None = None) -> str:
    """Create the nodes, spin until done (Ctrl-C and SIGTERM stop cleanly), close every node."""
    try:
        run = GraphRun(decls)
    except ParamError as err:
        raise GraphError(str(err)) from None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: run.context.try_shutdown())
    try:
        return run.spin(duration_s)
    finally:
        signal.signal(signal.SIGTERM, previous)
        run.close()

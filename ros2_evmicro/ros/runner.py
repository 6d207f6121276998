"""Run a graph description in one process, on one executor (:func:`~ros2_evmicro.ros.node.make_executor`).

This is what ``evmicro run <graph>`` and ``evmicro demo`` do, and what the tests use: the same nodes, with
the same parameter files, parameters and remappings as the launch files start as separate processes.
(The SingleThreadedExecutor, or rclpy's EventsExecutor with ``EVMICRO_EXECUTOR=events``; never the
MultiThreadedExecutor: it collapses to about 30 msg/s on this kind of machine.)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ros2_evmicro.core.params import ParamError, load_ros_params_file
from ros2_evmicro.graphs import GraphError, NodeDecl, config_dir
from ros2_evmicro.ros.node import (
    freeze_startup_heap,
    make_executor,
    prepare_process,
    shut_down_under_executor,
    unfreeze_heap,
)

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


def _executor_for(decls: Iterable[NodeDecl]) -> str | None:
    """``'single'`` when these nodes replay a bag in lockstep (bag_player at rate 0 with ``lockstep``): its
    timer of period 0 publishes one burst per executor cycle, and the SingleThreadedExecutor's cycle (every
    ready callback once, in node order) is what keeps the frames and the protocol markers in bag order at the
    AU node, which makes that replay lossless and equal to the offline pipeline. None (the default executor)
    otherwise."""
    for d in decls:
        if d.kind == "bag_player":
            p = node_parameters(d)
            if float(p.get("rate", 1.0)) == 0 and bool(p.get("lockstep", True)):
                return "single"
    return None


class GraphRun:
    """Nodes of a graph created in one rclpy context and spun together.

    Declarations with a ``process`` name (the sensor drivers and the simulated rig) run in a child process
    per name, as they would on a robot, so that producing data and processing it use both cores instead of
    sharing one interpreter; ``isolate=False`` keeps everything in this process. ``executor``: see
    :func:`~ros2_evmicro.ros.node.make_executor` (default: ``EVMICRO_EXECUTOR``, else the
    SingleThreadedExecutor; always the latter for a lockstep bag replay, :func:`_executor_for`).
    """

    def __init__(self, decls: Iterable[NodeDecl], *, context=None, args: list[str] | None = None,
                 isolate: bool = True, executor: str | None = None):
        prepare_process()
        local: list[NodeDecl] = []  # run here; the others in a child process per group name
        groups: dict[str, list[NodeDecl]] = {}
        for d in decls:
            if isolate and d.process:
                groups.setdefault(d.process, []).append(d)
            else:
                local.append(d)
        self.own_context = context is None
        self.context = context or rclpy.Context()
        if self.own_context:
            rclpy.init(args=args or [], context=self.context)
        self.executor = make_executor(self.context, executor or _executor_for(local))
        self.nodes: list[Node] = []
        self._frozen = False
        self.children: dict[str, subprocess.Popen] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None
        try:
            if groups:
                self._tmp = tempfile.TemporaryDirectory(prefix="evmicro_run_")
                for name, ds in groups.items():
                    self.children[name] = _spawn_group(name, ds, Path(self._tmp.name))
            for d in local:
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
        freeze_startup_heap()
        self._frozen = True

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.get_name() == name or n.get_fully_qualified_name() == name:
                return n
        raise KeyError(name)

    def finished(self) -> bool:
        return any(getattr(n, "finished", False) for n in self.nodes)

    def children_failed(self) -> list[str]:
        return [f"{k} (exit {p.returncode})" for k, p in self.children.items() if p.poll() not in (None, 0)]

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
        except Exception as err:
            if shut_down_under_executor(err, self.context):  # a signal shut the context down mid-cycle
                return "shutdown"
            raise
        return "shutdown"

    def close(self) -> None:
        for p in self.children.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name, p in self.children.items():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"child process {name} did not stop on SIGINT: killed")
                p.kill()
                p.wait()
        self.children = {}
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
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
        try:
            self.executor.shutdown(timeout_sec=1.0)
        except Exception:  # noqa: BLE001 - closing must go on
            pass
        if self.own_context:
            rclpy.try_shutdown(context=self.context)
        if self._frozen:
            unfreeze_heap()
            self._frozen = False

    def __enter__(self) -> GraphRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _spawn_group(name: str, decls: list[NodeDecl], tmp: Path) -> subprocess.Popen:
    """Start ``python -m ros2_evmicro.ros.runner GROUP.json`` running these nodes in a child process."""
    spec = []
    for d in decls:
        dd = dataclasses.asdict(d)
        dd.update(parameters=node_parameters(d), param_files=(), process="")
        spec.append(dd)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    return subprocess.Popen([sys.executable, "-m", "ros2_evmicro.ros.runner", str(path)], env=os.environ.copy())


def _watch_parent(period_s: float = 0.5) -> None:
    """Stop this child (SIGTERM to itself: the clean shutdown) when the process that started it is gone, so a
    killed ``evmicro demo`` leaves no simulator or driver running behind it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="evmicro-parent-watch", daemon=True).start()


def _child_main(path: str) -> int:
    """Entry of a child process: run the node declarations of a JSON file until SIGINT or SIGTERM, or until
    its parent process is gone."""
    _watch_parent()
    decls = []
    for dd in json.loads(Path(path).read_text()):
        dd["remappings"] = tuple(tuple(r) for r in dd["remappings"])
        dd["param_files"] = tuple(dd["param_files"])
        decls.append(NodeDecl(**dd))
    try:
        run_graph(decls)
    except (GraphError, ParamError) as err:
        print(f"evmicro: {err}", file=sys.stderr)
        return 2
    return 0


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


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1]))

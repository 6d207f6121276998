"""Graph descriptions -> node lists, and the launch files built from them (with stand-in launch modules,
since launch/launch_ros are not on PyPI; on a ROS install the real ones are used)."""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from ros2_evmicro.graphs import GRAPHS, GraphError, get_graph, parse_graph_args
from ros2_evmicro.ros.runner import node_parameters
from ros2_evmicro.specs import get_spec

REPO = Path(__file__).resolve().parent.parent
ALL_ARGS = [
    ("demo", {}),
    ("demo", {"camera": "davis", "source": "file", "davis_file": "x.aedat4"}),
    ("demo", {"camera": "evk4", "source": "file", "evk4_file": "x.raw", "webcam": "false"}),
    ("demo", {"camera": "evk4", "webcam": "true", "calibration": "sim"}),
    ("record", {}),
    ("record", {"source": "camera", "cameras": "davis,webcam"}),
    ("replay", {"bag": "some/session"}),
    ("replay", {"bag": "b", "out_dir": "o", "camera": "evk4"}),
]


def _kinds(decls):
    return [(d.kind, d.fqn) for d in decls]


def test_demo_sim_graph():
    decls = get_graph("demo").nodes()
    assert _kinds(decls) == [
        ("sim_rig", "/sim_rig"), ("face_detector", "/davis/face_detector"), ("slicer", "/davis/slicer"),
        ("au", "/au"), ("recon", "/recon"), ("driver_monitor", "/driver_monitor"), ("dashboard", "/dashboard")]
    au = next(d for d in decls if d.kind == "au")
    assert au.remappings == (("frames", "/davis/frames"),)
    assert next(d for d in decls if d.kind == "dashboard").required


def test_demo_evk4_with_webcam_maps_face_roi():
    with pytest.raises(GraphError, match="calibration:=FILE"):
        get_graph("demo").nodes({"camera": "evk4", "webcam": "true"})
    decls = get_graph("demo").nodes({"camera": "evk4", "webcam": "true", "calibration": "rig.yaml"})
    fd = next(d for d in decls if d.kind == "face_detector")
    assert fd.namespace == "webcam" and fd.parameters["map_to"] == "evk4"
    assert fd.parameters["calibration_file"] == "rig.yaml"
    sl = next(d for d in decls if d.kind == "slicer")
    assert sl.namespace == "evk4" and sl.remappings == (("face_roi", "/webcam/face_roi_evk4"),)
    assert {d.kind for d in decls} >= {"evk4", "webcam"}


def test_demo_sheds_load_for_cameras_not_for_the_simulated_rig():
    def shed(args):
        return next(d for d in get_graph("demo").nodes(args) if d.kind == "slicer").parameters["max_backlog_ms"]

    assert shed({}) == 0.0  # the simulated rig slows down with the machine
    assert shed({"camera": "davis"}) == shed({"camera": "evk4"}) == 50.0  # a camera does not wait
    assert shed({"camera": "evk4", "max_backlog_ms": "0"}) == 0.0
    assert shed({"camera": "sim", "max_backlog_ms": "120"}) == 120.0
    with pytest.raises(GraphError, match="max_backlog_ms"):
        shed({"max_backlog_ms": "soon"})


def test_record_graph_and_errors():
    decls = get_graph("record").nodes({"cameras": "davis,evk4", "source": "camera", "run": "demo"})
    kinds = [d.kind for d in decls]
    assert kinds == ["davis", "evk4", "face_detector", "protocol_player", "recorder"]
    assert decls[2].parameters == {}  # uncalibrated real rig: no live mapping to the EVK4
    sim = get_graph("record").nodes({"cameras": "davis,evk4"})
    assert next(d for d in sim if d.kind == "face_detector").parameters["calibration_file"] == "sim"
    with pytest.raises(GraphError, match="comma list"):
        get_graph("record").nodes({"cameras": "davis,kinect"})
    with pytest.raises(GraphError, match="not one of"):
        get_graph("record").nodes({"run": "long"})
    with pytest.raises(GraphError, match="no argument 'colour'"):
        get_graph("demo").nodes({"colour": "red"})
    with pytest.raises(GraphError, match="davis_file"):
        get_graph("demo").nodes({"camera": "davis", "source": "file"})
    with pytest.raises(GraphError, match="bag:=PATH"):
        get_graph("replay").nodes()
    with pytest.raises(GraphError, match="unknown graph"):
        get_graph("party")
    assert parse_graph_args(["a:=1", "b:=x:=y"]) == {"a": "1", "b": "x:=y"}
    with pytest.raises(GraphError, match="name:=value"):
        parse_graph_args(["a=1"])


def _setup_kinds() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODE_KINDS":
            return set(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no NODE_KINDS")


@pytest.mark.parametrize("graph, args", ALL_ARGS)
def test_every_node_has_console_script_spec_and_valid_parameters(graph, args):
    kinds = _setup_kinds()
    for d in get_graph(graph).nodes(args):
        assert d.kind in kinds, f"{d.kind} has no console script in setup.py"
        assert importlib.util.find_spec(d.module) is not None, f"{d.module} missing"
        params = {k: v for k, v in node_parameters(d).items() if k != "use_sim_time"}
        get_spec(d.kind).values(params)  # raises ParamError naming the bad value


# -- launch files, with stand-ins of the launch API ------------------------------------------------------

class _Cfg:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


class _Ctx:
    def __init__(self, values):
        self.launch_configurations = values


def _fake_launch(monkeypatch):
    made = {}

    def record(kind):
        def ctor(*a, **kw):
            obj = types.SimpleNamespace(kind=kind, args=a, kwargs=kw)
            made.setdefault(kind, []).append(obj)
            return obj
        return ctor

    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda actions: types.SimpleNamespace(actions=actions)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = record("arg")
    actions.OpaqueFunction = lambda function: types.SimpleNamespace(kind="opaque", function=function)
    actions.Shutdown = record("shutdown")
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = _Cfg
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = record("node")
    for name, mod in [("launch", launch), ("launch.actions", actions), ("launch.substitutions", subs),
                      ("launch_ros", launch_ros), ("launch_ros.actions", ros_actions)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return made


@pytest.mark.parametrize("launch_file, graph, values", [
    ("live_demo.launch.py", "demo", {}),
    ("record_session.launch.py", "record", {"cameras": "davis,webcam", "subject": "S07"}),
    ("replay.launch.py", "replay", {"bag": "/data/S01"}),
])
def test_launch_files_start_the_graph_nodes(monkeypatch, launch_file, graph, values):
    made = _fake_launch(monkeypatch)
    spec = importlib.util.spec_from_file_location("lf", REPO / "launch" / launch_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    g = GRAPHS[graph]
    assert [a.args[0] for a in made["arg"]] == [a.name for a in g.args]
    opaque = ld.actions[-1]
    given = {a.name: a.default for a in g.args} | values
    nodes = opaque.function(_Ctx(given))
    want = g.nodes(values)
    assert [n.kwargs["executable"] for n in nodes] == [d.executable for d in want]
    for n, d in zip(nodes, want, strict=True):
        assert n.kwargs["package"] == "ros2_evmicro"
        assert n.kwargs["name"] == d.name and n.kwargs.get("namespace", "") == d.namespace
        assert n.kwargs["parameters"][-1] == dict(d.parameters)
        assert n.kwargs["remappings"] == list(d.remappings)
        assert ("on_exit" in n.kwargs) == d.required
        # the shared-memory profile, under the names of both Fast DDS majors (2.x reads only FASTRTPS_...)
        env = n.kwargs["additional_env"]
        assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == env["FASTDDS_DEFAULT_PROFILES_FILE"]
        assert env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")


@pytest.mark.slow
def test_child_process_of_a_killed_runner_stops_by_itself(tmp_path):
    """`evmicro demo` killed hard (SIGKILL: no close) must not leave its simulator process running."""
    import os
    import signal
    import subprocess
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from ros2_evmicro.graphs import NodeDecl\n"
        "from ros2_evmicro.ros.runner import GraphRun\n"
        "d = NodeDecl('sim_rig', 'sim_rig', process='sensors', parameters={'cameras': ['davis'], "
        "'scenario': 'idle', 'aps': False, 'imu': False, 'playback_rate': 0.2})\n"
        "run = GraphRun([d])\n"
        "print(run.children['sensors'].pid, flush=True)\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        child = int(parent.stdout.readline())
        time.sleep(3.0)  # the child is up and running its node
        os.kill(child, 0)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # reap it if it became our zombie (it is re-parented to init, normally)
            time.sleep(0.2)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the child process outlived its killed parent by 30 s")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_replay_runs_the_models_in_their_callbacks_only_in_lockstep():
    """rate 0 (lockstep, lossless) needs every model on the executor thread; a timed replay keeps the nodes'
    own choice (the cVAE on its thread)."""
    lock = get_graph("replay").nodes({"bag": "x", "rate": "0"})
    timed = get_graph("replay").nodes({"bag": "x", "rate": "1"})
    assert all(d.parameters["inference_thread"] is False for d in lock if d.kind in ("au", "recon"))
    assert all("inference_thread" not in d.parameters for d in timed if d.kind in ("au", "recon"))
    assert get_spec("recon")["inference_thread"].default is True
    assert get_spec("au")["inference_thread"].default is False
    # and the lockstep replay spins on the SingleThreadedExecutor, whose cycle keeps the bag order
    from ros2_evmicro.ros.runner import _executor_for

    assert _executor_for(lock) == "single" and _executor_for(timed) is None
    assert _executor_for(get_graph("demo").nodes()) is None


def test_make_executor_kinds(monkeypatch):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros2_evmicro.ros.node import make_executor

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        assert isinstance(make_executor(ctx, "single"), SingleThreadedExecutor)
        monkeypatch.delenv("EVMICRO_EXECUTOR", raising=False)
        assert isinstance(make_executor(ctx), SingleThreadedExecutor)
        monkeypatch.setenv("EVMICRO_EXECUTOR", "events")
        ex = make_executor(ctx)  # the EventsExecutor of rclpy.experimental (Jazzy wheels have it)
        assert not isinstance(ex, SingleThreadedExecutor) and hasattr(ex, "spin_once")
        ex.shutdown()
        monkeypatch.delenv("EVMICRO_EXECUTOR")
        with pytest.raises(ValueError, match="EVMICRO_EXECUTOR"):
            make_executor(ctx, "multi")
    finally:
        rclpy.try_shutdown(context=ctx)

"""Process-wide settings of an evmicro process (ros2_evmicro.ros.node.prepare_process, freeze_startup_heap): the
Fast DDS profile reaches the Fast DDS that is installed, glibc keeps big buffers in its heap, and a graph run
freezes its start-up objects out of the garbage collector's way."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from ros2_evmicro.graphs import NodeDecl
from ros2_evmicro.ros.node import PROFILE_VARS, fastdds_profile_env

BROKEN_PROFILE_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import rclpy
    from rclpy.node import Node
    import ros2_evmicro.ros.node as evnode
    evnode.fastdds_profile = lambda: Path(sys.argv[1])  # as if the shipped profile were this file
    evnode.prepare_process()
    rclpy.init(args=[])
    node = Node("profile_probe")
    node.destroy_node()
    rclpy.shutdown()
    """
)


def _run_with_broken_profile(tmp_path, env_update: dict[str, str]) -> str:
    bad = tmp_path / "broken_profile.xml"
    bad.write_text("<dds><profiles><participant")  # Fast DDS reports a parse error when it reads this file
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARS and k != "EVMICRO_NO_FASTDDS_PROFILE"}
    env.update({k: v.replace("{bad}", str(bad)) for k, v in env_update.items()})
    res = subprocess.run([sys.executable, "-c", BROKEN_PROFILE_RUN, str(bad)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout + res.stderr


def test_the_profile_named_by_evmicro_is_read_by_fast_dds(tmp_path):
    """Fast DDS 2.x (Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE and 3.x only FASTDDS_DEFAULT_PROFILES_FILE:
    the profile prepare_process names must reach whichever is installed. A broken file proves it is read."""
    out = _run_with_broken_profile(tmp_path, {})
    assert "broken_profile.xml" in out and "Error" in out, out[-2000:]


def test_a_profile_the_user_named_under_either_name_is_read(tmp_path):
    for var in PROFILE_VARS:
        out = _run_with_broken_profile(tmp_path, {var: "{bad}"})
        assert "broken_profile.xml" in out and "Error" in out, (var, out[-2000:])


def test_use_fastdds_profile_sets_both_names_and_respects_the_user(monkeypatch, tmp_path):
    from ros2_evmicro.ros import node as evnode

    for var in PROFILE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("EVMICRO_NO_FASTDDS_PROFILE", raising=False)
    evnode.use_fastdds_profile()
    shipped = str(evnode.fastdds_profile())
    assert {v: os.environ[v] for v in PROFILE_VARS} == fastdds_profile_env(shipped)
    mine = str(tmp_path / "mine.xml")
    for var in PROFILE_VARS:
        monkeypatch.delenv(var)
    monkeypatch.setenv(PROFILE_VARS[1], mine)
    evnode.use_fastdds_profile()
    assert os.environ[PROFILE_VARS[0]] == mine and os.environ[PROFILE_VARS[1]] == mine
    monkeypatch.delenv(PROFILE_VARS[0])
    monkeypatch.setenv("EVMICRO_NO_FASTDDS_PROFILE", "1")
    evnode.use_fastdds_profile()
    assert PROFILE_VARS[0] not in os.environ


MALLOC_PROBE = textwrap.dedent(
    """
    import ctypes, json
    import numpy as np
    from ros2_evmicro.ros.node import tune_malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    applied = tune_malloc()
    before = libc.mallinfo2().hblks
    buf = np.ones(4 << 20, np.uint8)  # a 4 MB message buffer
    during = libc.mallinfo2().hblks
    print(json.dumps({"applied": applied, "mapped_chunks_added": during - before}))
    """
)


def _glibc_at_least(major: int, minor: int) -> bool:
    name, version = platform.libc_ver()
    try:
        return name == "glibc" and tuple(int(x) for x in version.split(".")[:2]) >= (major, minor)
    except ValueError:
        return False


@pytest.mark.skipif(not _glibc_at_least(2, 33), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("tune", [True, False])
def test_tune_malloc_keeps_megabyte_buffers_in_the_heap(tune):
    import json

    env = dict(os.environ, EVMICRO_MALLOC_TUNE="1" if tune else "0")
    res = subprocess.run([sys.executable, "-c", MALLOC_PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["applied"] is tune
    # tuned: served from the heap; untuned (the control): glibc gives the 4 MB buffer a memory map of its own
    assert got["mapped_chunks_added"] == (0 if tune else 1)


def test_graph_run_freezes_its_start_up_heap_until_it_closes():
    from ros2_evmicro.ros.runner import GraphRun

    run = GraphRun([NodeDecl("driver_monitor", "driver_monitor", param_files=("driver_monitor.yaml",))],
                   isolate=False)
    try:
        assert gc.get_freeze_count() > 1000  # modules, the node and its entities
        assert gc.isenabled()
    finally:
        run.close()
    assert gc.get_freeze_count() == 0


def test_a_context_shut_down_under_the_executor_is_a_clean_stop():
    """A signal can shut the context down between the executor's check and its wait set: rclpy then raises
    RCLError, which run_node and GraphRun.spin must take as the shutdown it is, and nothing else."""
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation as impl

    from ros2_evmicro.ros.node import shut_down_under_executor

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    handle = ctx.handle
    live_err = impl.RCLError("some other failure")
    assert not shut_down_under_executor(live_err, ctx)  # the context is fine: a real error
    rclpy.shutdown(context=ctx)
    with pytest.raises(impl.RCLError, match="context is not valid") as info:
        with handle:
            impl.WaitSet(0, 0, 0, 0, 0, 0, handle)  # what the executor builds on every cycle
    assert shut_down_under_executor(info.value, ctx)
    assert not shut_down_under_executor(ValueError("context is not valid"), ctx)

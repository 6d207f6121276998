"""AU and reconstruction nodes: frames in -> JointState / Image out; card mismatch refused; clip == stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_test_checkpoints
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from ros2_evmicro.core.au import AU_CODES
from ros2_evmicro.core.params import ParamError
from ros2_evmicro.ros.convert import au_from_msg, frames_to_msg, image_from_msg, marker_to_msg, stamp_to_ns
from ros2_evmicro.ros.node import FRAMES_QOS, SENSOR_QOS


@pytest.fixture(scope="module")
def test_ckpts(tmp_path_factory) -> tuple[Path, Path]:
    return write_test_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def snn_ckpt(test_ckpts):
    return test_ckpts[0]


@pytest.fixture(scope="module")
def cvae_ckpt(test_ckpts):
    return test_ckpts[1]


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(0.6, (n, 2, 64, 64)).astype(np.float32)


def _drive(ros, node_cls, params, frames, markers=None, topic_out="evmicro/au", msg_type=JointState, expect=None):
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    node = ros.add(node_cls(context=ros.context, parameter_overrides=overrides))
    peer = ros.add(Node("peer", context=ros.context))
    got = []
    peer.create_subscription(msg_type, topic_out, got.append, FRAMES_QOS)
    pub = peer.create_publisher(Image, "frames", FRAMES_QOS)
    mpub = peer.create_publisher(String, "protocol/marker", SENSOR_QOS)
    markers = markers or {}
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0
                          and (not markers or mpub.get_subscription_count() > 0), 10)
    for i, f in enumerate(frames):
        if i in markers:
            mpub.publish(marker_to_msg(markers[i]))
            ros.spin_for(0.05)
        pub.publish(frames_to_msg(f, 1_000_000_000 + i * 33_000_000, "davis346_optical"))
        assert ros.spin_until(lambda n=i: len(got) >= n + 1 or markers, 10) or markers
        ros.spin_for(0.005)
    if len(frames) in markers:
        mpub.publish(marker_to_msg(markers[len(frames)]))
    ros.spin_until(lambda: len(got) >= (expect or len(frames)), 10)
    return node, got


def test_au_node_stream_publishes_scores(ros, snn_ckpt):
    from ros2_evmicro.nodes.au import AUNode

    frames = _frames(6)
    node, got = _drive(ros, AUNode, {"checkpoint": str(snn_ckpt), "device": "cpu"}, frames)
    assert len(got) == 6
    m = got[-1]
    assert list(m.name) == list(AU_CODES)
    s = au_from_msg(m)
    assert s.shape == (21,) and np.all((s >= 0) & (s <= 1)) and s.max() > 0
    assert stamp_to_ns(m.header.stamp) == 1_000_000_000 + 5 * 33_000_000
    assert m.header.frame_id == "davis346_optical"
    assert node.diag.counters["frames"] == 6


@pytest.mark.parametrize("threaded", [False, True])
def test_au_node_clip_equals_segment_stream(ros, snn_ckpt, threaded):
    """The paper's clip classification and the streaming SNN (reset at the segment) give the same scores, with
    the SNN in the frame callback or on the node's worker thread (markers in order with the frames)."""
    from ros2_evmicro.core.models import load_checkpoint
    from ros2_evmicro.core.models.runtime import classify_clip
    from ros2_evmicro.nodes.au import AUNode

    frames = _frames(8, seed=3)
    mk = {"session": "s", "subject": "S01", "run": "main", "au": 12, "trial": 1, "segment": "S01_AU12_t1"}
    markers = {2: {**mk, "phase": "perform"}, 8: {**mk, "phase": "rest"}}
    _, clip_msgs = _drive(ros, AUNode, {"checkpoint": str(snn_ckpt), "device": "cpu", "mode": "clip",
                                        "inference_thread": threaded}, frames, markers, expect=1)
    assert len(clip_msgs) == 1
    model, _ = load_checkpoint(snn_ckpt)
    ref = classify_clip(model, frames[2:8])
    np.testing.assert_allclose(au_from_msg(clip_msgs[0]), ref, atol=1e-6)
    assert ref.max() > 0


@pytest.mark.parametrize("threaded", [False, True])
def test_au_node_stream_segment_matches_clip(ros, snn_ckpt, threaded):
    from ros2_evmicro.core.models import load_checkpoint
    from ros2_evmicro.core.models.runtime import classify_clip
    from ros2_evmicro.nodes.au import AUNode

    frames = _frames(8, seed=3)
    mk = {"session": "s", "subject": "S01", "run": "main", "au": 12, "trial": 1, "segment": "S01_AU12_t1"}
    _, msgs = _drive(ros, AUNode, {"checkpoint": str(snn_ckpt), "device": "cpu", "reset_policy": "segment",
                                   "inference_thread": threaded}, frames, {2: {**mk, "phase": "perform"}})
    model, _ = load_checkpoint(snn_ckpt)
    np.testing.assert_allclose(au_from_msg(msgs[-1]), classify_clip(model, frames[2:8]), atol=1e-6)


def test_au_node_refuses_mismatching_card(ros, snn_ckpt):
    from ros2_evmicro.nodes.au import AUNode

    with pytest.raises(ParamError, match="card says sensor=davis, node says evk4"):
        AUNode(context=ros.context, parameter_overrides=[Parameter("checkpoint", value=str(snn_ckpt)),
                                                         Parameter("sensor", value="evk4")])
    with pytest.raises(ParamError, match="window_ms"):
        AUNode(context=ros.context, parameter_overrides=[Parameter("checkpoint", value=str(snn_ckpt)),
                                                         Parameter("window_ms", value=50.0)])
    with pytest.raises(ParamError, match="no checkpoint"):
        AUNode(context=ros.context, parameter_overrides=[Parameter("checkpoint", value="/nonexistent/x")])


def test_recon_node_copies_header_and_is_deterministic(ros, cvae_ckpt):
    from ros2_evmicro.core.models import load_checkpoint
    from ros2_evmicro.core.models.runtime import Reconstructor
    from ros2_evmicro.nodes.recon import ReconNode

    frames = _frames(3, seed=5)
    node, got = _drive(ros, ReconNode, {"checkpoint": str(cvae_ckpt), "device": "cpu"}, frames,
                       topic_out="evmicro/face_recon", msg_type=Image)
    assert len(got) == 3
    assert got[1].encoding == "mono8" and (got[1].height, got[1].width) == (64, 64)
    assert stamp_to_ns(got[1].header.stamp) == 1_000_000_000 + 33_000_000
    assert got[1].header.frame_id == "davis346_optical"
    model, _ = load_checkpoint(cvae_ckpt)
    np.testing.assert_array_equal(image_from_msg(got[2]), Reconstructor(model, "cpu").reconstruct(frames[2]))


def test_drop_counter():
    from ros2_evmicro.nodes._inference import DropCounter

    d = DropCounter(33.0)
    assert [d.see(t * 33_000_000) for t in (0, 1, 2, 5, 6, 6, 9)] == [0, 0, 0, 2, 0, 0, 2]
    assert d.dropped == 4


def test_inference_worker_keeps_order_bounds_frames_and_survives_errors():
    import threading

    from ros2_evmicro.nodes._inference import InferenceWorker

    gate, started = threading.Event(), threading.Event()
    done: list[str] = []
    errors: list[BaseException] = []
    w = InferenceWorker("test_worker", depth=2, on_error=errors.append)
    try:
        w.submit(lambda: (started.set(), gate.wait(5), done.append("f0")))
        assert started.wait(5) and not w.idle()  # f0 runs and holds the worker
        displaced = [w.submit(lambda i=i: done.append(f"f{i}")) for i in (1, 2)]
        w.submit(lambda: done.append("marker"), droppable=False)
        displaced.append(w.submit(lambda: done.append("f3")))  # f1 is discarded: 2 frames were waiting
        displaced.append(w.submit(lambda: 1 / 0))  # f2 goes; a failing job is reported, the worker goes on
        displaced.append(w.submit(lambda: done.append("f4")))  # f3 goes; the marker is never discarded
        gate.set()
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert displaced == [0, 0, 1, 1, 1]
    assert done == ["f0", "marker", "f4"] and w.discarded == 3
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
    assert w.submit(lambda: done.append("late")) == 0 and w.wait_idle(1) and done[-1] == "f4"  # stopped


def test_inference_worker_runs_at_the_priority_it_is_given():
    import os
    import threading

    from ros2_evmicro.nodes._inference import InferenceWorker

    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen: list[int] = []
    w = InferenceWorker("nice_worker", depth=1, nice=7)
    try:
        assert w.wait_started(5)
        w.submit(lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        assert w.wait_idle(5)
    finally:
        w.stop()
    assert seen == [min(base + 7, 19)] and w.nice_error == ""
    assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the rest of the process keeps its priority


def test_recon_node_on_its_thread_counts_the_frames_it_discards(ros, cvae_ckpt):
    """Frames the cVAE's worker had to discard show up as dropped_frames (gaps in the stamps)."""
    from ros2_evmicro.nodes.recon import ReconNode

    node = ros.add(ReconNode(context=ros.context, parameter_overrides=[
        Parameter("checkpoint", value=str(cvae_ckpt)), Parameter("device", value="cpu"),
        Parameter("queue_depth", value=1)]))
    assert node.worker is not None and node.worker.nice == 10  # the display product yields to the AU path
    import threading

    frames = [frames_to_msg(f, 1_000_000_000 + i * 33_000_000, "davis346_optical") for i, f in enumerate(_frames(5))]
    node.intake._receive(frames[0])
    assert node.worker.wait_idle(10)
    gate, started = threading.Event(), threading.Event()
    node.worker.submit(lambda: (started.set(), gate.wait(5)), droppable=False)  # hold the worker
    assert started.wait(5)
    for msg in frames[1:]:
        node.intake._receive(msg)
    gate.set()
    assert node.worker.wait_idle(10)
    assert node.diag.counters["frames"] == 5
    assert node.diag.counters["dropped_frames"] == 3  # only the newest of the four waiting ones was decoded
    assert node.diag.counters["reconstructions"] == 2

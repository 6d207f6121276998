"""Parameter declarations: checks, YAML in the ROS params format, and the node's start-up/runtime refusals."""

import pytest
from rclpy.parameter import Parameter

from ros2_evmicro.core.params import Param, ParamError, ParamSpec, load_ros_params_file
from ros2_evmicro.specs import all_specs, get_spec

SPEC = ParamSpec("demo_node", (
    Param("window_ms", 33.0, "window length", "ms", (1.0, 1000.0)),
    Param("size_px", 64, "crop size", "px", (8, 512), dynamic=False),
    Param("mode", "stream", "mode", choices=("stream", "clip")),
    Param("cams", ["davis"], "cameras"),
    Param("enabled", True, "on/off"),
))


def test_defaults_and_coercion():
    v = SPEC.values({"window_ms": 50, "enabled": "false"})
    assert v.window_ms == 50.0 and isinstance(v.window_ms, float)
    assert v.enabled is False and v.size_px == 64 and v.cams == ["davis"]
    with pytest.raises(AttributeError, match="read-only"):
        v.window_ms = 3


@pytest.mark.parametrize("over, match", [
    ({"window_ms": 0.5}, r"window_ms=0.5 ms is out of range \[1.0, 1000.0\] ms"),
    ({"size_px": 6.5}, "must be an integer"),
    ({"mode": "batch"}, r"not one of \['stream', 'clip'\]"),
    ({"cams": "davis"}, "must be a list of str"),
    ({"enabled": 3}, "true or false"),
    ({"nope": 1}, "unknown parameter 'nope'"),
    ({"window_ms": float("nan")}, "NaN"),
])
def test_bad_values_have_reasons(over, match):
    with pytest.raises(ParamError, match=match):
        SPEC.values(over)


def test_runtime_update_refuses_fixed():
    v = SPEC.values()
    assert SPEC.update(v, {"window_ms": 20}).window_ms == 20.0
    with pytest.raises(ParamError, match="cannot change while the node runs"):
        SPEC.update(v, {"size_px": 32})


def test_bad_declarations():
    with pytest.raises(ParamError, match="out of range"):
        Param("x", 5, "d", range=(10, 20))
    with pytest.raises(ParamError, match="must not be empty"):
        Param("x", [], "d")
    with pytest.raises(ParamError, match="declared twice"):
        ParamSpec("n", (Param("a", 1, "d"), Param("a", 2, "d")))


def test_yaml_ros_params_format(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    window_ms: 40.0\n    mode: clip\n"
                 "davis/demo_node:\n  ros__parameters:\n    window_ms: 25\n    nested:\n      a: 1\n"
                 "other:\n  ros__parameters:\n    window_ms: 99.0\n")
    raw = load_ros_params_file(f, "demo_node")
    assert raw == {"window_ms": 25, "mode": "clip", "nested.a": 1}
    with pytest.raises(ParamError, match="unknown parameter 'nested.a'"):
        SPEC.from_yaml(f)
    h = tmp_path / "h.yaml"
    h.write_text("/**:\n  ros__parameters:\n    window_ms: 40.0\n    mode: clip\n"
                 "/demo_node:\n  ros__parameters:\n    window_ms: 25\n")
    v = SPEC.from_yaml([h], overrides={"size_px": 32})
    assert (v.window_ms, v.mode, v.size_px) == (25.0, "clip", 32)
    g = tmp_path / "g.yaml"
    g.write_text("demo_node:\n  window_ms: 3\n")
    with pytest.raises(ParamError, match="ros__parameters"):
        load_ros_params_file(g, "demo_node")
    with pytest.raises(ParamError, match="does not exist"):
        load_ros_params_file(tmp_path / "missing.yaml", "demo_node")


def test_every_shipped_config_matches_its_declaration():
    from ros2_evmicro.graphs import config_dir

    names = all_specs()
    assert "event_monitor" in names
    for name in names:
        spec = get_spec(name)
        path = config_dir() / f"{name}.yaml"
        if path.exists():
            spec.from_yaml(path)  # raises on an unknown or bad value
    with pytest.raises(ParamError, match="no parameter declaration"):
        get_spec("no_such_node")


def test_node_rejects_bad_values_at_startup_and_runtime(ros):
    from ros2_evmicro.nodes.event_monitor import EventMonitor

    with pytest.raises(ParamError, match="width"):
        EventMonitor(context=ros.context, parameter_overrides=[Parameter("width", value=70000)])
    with pytest.raises(ParamError, match="must be a number"):
        EventMonitor(context=ros.context, parameter_overrides=[Parameter("report_period_s", value="soon")])
    node = ros.add(EventMonitor(context=ros.context))
    res = node.set_parameters([Parameter("time_tolerance_us", value=-5)])[0]
    assert not res.successful and "out of range" in res.reason
    res = node.set_parameters([Parameter("report_period_s", value=2.0)])[0]
    assert not res.successful and "cannot change while the node runs" in res.reason
    assert node.set_parameters([Parameter("width", value=346)])[0].successful
    assert node.p.width == 346
    desc = node.describe_parameter("width")
    assert "px" in desc.description and desc.integer_range[0].to_value == 65535


def test_publishers_carry_no_default_qos_event_handlers_subscriptions_keep_theirs(ros):
    """rclpy's default QoS-event handlers only log, and the executor walks every one of them before each
    callback: an evmicro node's publishers go without them, its subscriptions keep theirs (the mismatch is
    reported there); explicit event callbacks are honoured."""
    from rclpy.event_handler import PublisherEventCallbacks
    from std_msgs.msg import String

    from ros2_evmicro.nodes.event_monitor import EventMonitor

    node = ros.add(EventMonitor(context=ros.context))
    n0 = len(list(node.waitables))
    node.create_publisher(String, "plain", 10)
    assert len(list(node.waitables)) == n0
    node.create_subscription(String, "plain", lambda m: None, 10)
    n1 = len(list(node.waitables))
    assert n1 > n0
    node.create_publisher(String, "watched", 10, event_callbacks=PublisherEventCallbacks(
        incompatible_qos=lambda info: None))
    assert len(list(node.waitables)) > n1

"""Driver monitor node in-process: AU JointState messages in, /diagnostics statuses and alerts out."""

from __future__ import annotations

import json

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from test_monitor import scripted

from ros2_evmicro.ros.convert import au_to_msg
from ros2_evmicro.ros.node import FRAMES_QOS

T0_NS = 1_700_000_000_000_000_000


def _setup(ros, **params):
    from ros2_evmicro.nodes.driver_monitor import DriverMonitorNode

    over = [Parameter(k, value=v) for k, v in {"report_period_s": 0.2, **params}.items()]
    node = ros.add(DriverMonitorNode(context=ros.context, parameter_overrides=over))
    talker = ros.add(Node("au_talker", context=ros.context))
    pub = talker.create_publisher(JointState, "evmicro/au", FRAMES_QOS)
    statuses, alerts = [], []
    talker.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 50)
    talker.create_subscription(String, "evmicro/alerts", lambda m: alerts.append(json.loads(m.data)), 100)
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0, 10)
    return node, pub, statuses, alerts


def _publish(ros, node, pub, t, s, batch: int = 10):
    """Publish in batches, waiting for the node to take each (keep-last queues must not overflow)."""
    for i in range(0, len(t), batch):
        for ti, si in zip(t[i:i + batch], s[i:i + batch], strict=True):
            pub.publish(au_to_msg(si, T0_NS + int(ti)))
        n = min(i + batch, len(t))
        assert ros.spin_until(lambda n=n: node.diag.counters["au_msgs"] >= n, 10), "AU messages were not taken"


def _level(st) -> int:
    return st.level[0] if isinstance(st.level, bytes) else int(st.level)


def test_head_turn_gives_distraction_warn_on_diagnostics(ros):
    node, pub, statuses, alerts = _setup(ros)
    t, s = scripted(6.0, [(51, 1.0, 3.0)], seed=11)
    _publish(ros, node, pub, t[:130], s[:130])  # up to 4.3 s: head away 3 s
    got = lambda: [st for st in statuses if st.name == "evmicro/distraction" and _level(st) == 1]  # noqa: E731
    assert ros.spin_until(lambda: got(), 10), [(st.name, st.level, st.message) for st in statuses]
    st = got()[0]
    vals = {kv.key: kv.value for kv in st.values}
    assert vals["level"] == "WARN" and float(vals["head_away_s"]) >= 2.0
    assert "AU51" in st.message
    drowsy = [x for x in statuses if x.name == "evmicro/drowsiness"]
    assert drowsy and _level(drowsy[-1]) == 0
    assert {"blink_rate_per_min", "blink_ms_mean", "perclos", "eyes_closed_s"} <= {kv.key for kv in
                                                                                   drowsy[-1].values}
    assert ros.spin_until(lambda: {"look_away", "distraction"} <= {a["kind"] for a in alerts}, 10), alerts
    lv = [a for a in alerts if a["kind"] == "distraction"][0]
    assert lv["level"] == "WARN" and lv["t_ns"] >= T0_NS
    assert [e["kind"] for e in node.events][-2:] == ["look_away", "distraction"]


def test_statuses_stale_without_input_and_bad_message_counted(ros):
    node, pub, statuses, _ = _setup(ros, stale_s=0.5)
    assert ros.spin_until(lambda: any(st.name == "evmicro/drowsiness" for st in statuses), 10)
    st = [x for x in statuses if x.name == "evmicro/drowsiness"][-1]
    assert _level(st) == 3 and st.message == "no AU input"
    bad = JointState(name=["AU2"], position=[0.5])
    pub.publish(bad)
    assert ros.spin_until(lambda: node.diag.counters.get("bad_au", 0) == 1, 10)
    t, s = scripted(0.2, seed=12)
    _publish(ros, node, pub, t, s, batch=6)  # the node still works
    statuses.clear()
    assert ros.spin_until(lambda: any(x.name == "evmicro/distraction" and _level(x) == 0 for x in statuses), 10)


def test_runtime_parameter_change_checked(ros):
    node, _, _, _ = _setup(ros)
    bad = node.set_parameters([Parameter("away_warn_s", value=9.0)])[0]
    assert not bad.successful and "away_warn_s=9.0 must be below away_error_s=4.0" in bad.reason
    assert node.monitor.p.away_warn_s == 2.0 and node.p.away_warn_s == 2.0
    ok = node.set_parameters([Parameter("away_warn_s", value=1.5)])[0]
    assert ok.successful and node.monitor.p.away_warn_s == 1.5

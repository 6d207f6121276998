"""The node base class: parameters from one :class:`~ros2_evmicro.core.params.ParamSpec`, diagnostics,
guarded callbacks, QoS profiles and the console-script ``main`` shared by every node.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ros2_evmicro.core.params import Param, ParamError, ParamSpec, ParamValues

__all__ = [
    "EVENTS_QOS",
    "FRAMES_QOS",
    "LATCHED_QOS",
    "MARKER_QOS",
    "SENSOR_QOS",
    "PROFILE_VARS",
    "Diagnostics",
    "EvmicroNode",
    "fastdds_profile",
    "fastdds_profile_env",
    "freeze_startup_heap",
    "prepare_process",
    "run_node",
    "shut_down_under_executor",
    "tune_malloc",
    "unfreeze_heap",
    "use_fastdds_profile",
]

EVENTS_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1000,
    durability=DurabilityPolicy.VOLATILE,
)
"""Events: reliable, keep-last 1000 (a reliable publisher also serves best-effort subscribers)."""
SENSOR_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
"""Images, IMU and other sensor streams: reliable, depth 100 so a recorder loses nothing."""
FRAMES_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=30)
"""Pipeline products (frames, AU scores, reconstructions)."""
LATCHED_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Camera info and other slowly changing state: late joiners get the last value."""
MARKER_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1000,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""``protocol/marker``: every publisher keeps the last 1000 markers, so a subscriber that joins late (a recorder,
the demo's report) still receives every marker of the run; a volatile subscriber gets the live ones."""

_OK, _WARN, _ERROR, _STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                              DiagnosticStatus.STALE)
_BIG = 1e300


def fastdds_profile() -> Path | None:
    """Path of the shipped Fast DDS shared-memory profile (``config/fastdds_shm.xml``), if found."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config" / "fastdds_shm.xml"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("ros2_evmicro")) / "config" / "fastdds_shm.xml")
    except Exception:  # noqa: BLE001 - not installed with colcon
        pass
    for c in candidates:
        if c.is_file():
            return c
    return None


PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
"""The environment variables that name a Fast DDS XML profile. Fast DDS 2.x (Humble, Jazzy: the PyPI wheels carry
2.14) reads only the first; Fast DDS 3.x (Kilted and later) reads only the second."""


def fastdds_profile_env(path: str | Path) -> dict[str, str]:
    """Environment naming ``path`` as the Fast DDS profile under both variable names (:data:`PROFILE_VARS`)."""
    return {v: str(path) for v in PROFILE_VARS}


def use_fastdds_profile() -> None:
    """Point Fast DDS at the shipped shared-memory profile unless the user chose one (call before init).

    Both variable names are set, since each Fast DDS major version reads only one of them. A profile the user
    named under one name is copied to the other (so it takes effect whichever Fast DDS is installed), and
    ``EVMICRO_NO_FASTDDS_PROFILE=1`` leaves the environment alone.
    """
    if os.environ.get("EVMICRO_NO_FASTDDS_PROFILE") == "1":
        return
    chosen = next((os.environ[v] for v in PROFILE_VARS if os.environ.get(v)), None)
    if chosen is None:
        prof = fastdds_profile()
        if prof is None:
            return
        chosen = str(prof)
    for v in PROFILE_VARS:
        if not os.environ.get(v):
            os.environ[v] = chosen


_M_TRIM_THRESHOLD = -1  # mallopt parameters of glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MALLOC_MMAP_THRESHOLD = 32 << 20
"""Allocations up to this size stay in glibc's heap (see :func:`tune_malloc`); 32 MB holds a packet of 2.7M events."""
MALLOC_TRIM_THRESHOLD = 128 << 20
"""Free memory at the top of the heap kept by the process instead of being returned to the kernel."""


def tune_malloc() -> bool:
    """Keep buffers of megabytes (event messages, their copies on publish and take, torch activations) in the
    C heap instead of giving each its own memory map (glibc only; call early in the process).

    glibc serves an allocation above its mmap threshold (128 kB at start, raised on the fly) with a fresh
    ``mmap`` and unmaps it on ``free``, and it trims the heap top once a few MB are free there; whether a buffer
    of megabytes is then page-faulted in again on every message depends on the heap's history. On the 2-core
    reference VM, in a plain loop, serializing one 2.4 MB PointCloud2 (200k events, 10 ms at 20 Mev/s) took
    6-8 ms that way instead of 0.4-0.7 ms; between two processes (``bench.bench_transport``) the thresholds cut
    the publish -> callback p99 at 20 Mev/s from 14.2 to 9.9 ms and at 50 Mev/s from 46.8 to 21.7 ms, the p50
    unchanged (docs/benchmarks.md). Fixed thresholds (:data:`MALLOC_MMAP_THRESHOLD`,
    :data:`MALLOC_TRIM_THRESHOLD`) keep that memory mapped between uses; the cost is that up to that much freed
    memory stays with the process.

    ``EVMICRO_MALLOC_TUNE=0`` turns it off. Returns whether both settings were applied (False where the C
    library is not glibc).
    """
    if os.environ.get("EVMICRO_MALLOC_TUNE") == "0" or not sys.platform.startswith("linux"):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False


def prepare_process() -> None:
    """Process-wide settings for a process that runs ros2_evmicro nodes, before ``rclpy.init``: the Fast DDS
    profile (:func:`use_fastdds_profile`) and the allocator (:func:`tune_malloc`)."""
    use_fastdds_profile()
    tune_malloc()


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, models, nodes: the start-up) to the garbage collector's permanent
    generation, so a full collection later scans only what the running graph allocates.

    Measured on the reference VM with the pipeline's nodes loaded: a full (generation 2) collection paused the
    process 47-257 ms; after the freeze one took about 1 ms. Python runs a full collection only when the
    long-lived objects have grown by a quarter, so a long live session meets it now and then: a pause of that
    size can overflow the frame queues (4 frames, 132 ms). Call once the nodes are built; :func:`unfreeze_heap`
    undoes it.
    """
    gc.collect()
    gc.freeze()


def unfreeze_heap() -> None:
    """Give the frozen objects back to the collector (a graph closes; its nodes and models may be freed)."""
    gc.unfreeze()


def _descriptor(p: Param) -> ParameterDescriptor:
    desc = p.description + (f" [{p.unit}]" if p.unit else "")
    d = ParameterDescriptor(description=desc, read_only=False, dynamic_typing=True)
    if p.choices is not None:
        d.additional_constraints = "one of: " + ", ".join(map(str, p.choices))
    if not p.dynamic:
        d.additional_constraints = (d.additional_constraints + "; " if d.additional_constraints else "") + (
            "fixed while the node runs")
    if p.range is not None and p.value_type in (int, float):
        lo, hi = p.range
        if p.value_type is int:
            d.integer_range = [IntegerRange(from_value=int(-(2**62) if lo is None else lo),
                                            to_value=int(2**62 if hi is None else hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(-_BIG if lo is None else lo),
                                                         to_value=float(_BIG if hi is None else hi), step=0.0)]
    return d


EXECUTORS = ("events", "single")


def make_executor(context: rclpy.Context | None = None, kind: str | None = None):
    """The executor :class:`~ros2_evmicro.ros.runner.GraphRun` (``evmicro run``, ``evmicro demo``) spins on.

    ``kind`` (default: the environment variable ``EVMICRO_EXECUTOR``, else ``'single'``): ``'single'`` is the
    SingleThreadedExecutor, ``'events'`` rclpy's EventsExecutor (``rclpy.experimental``, C++: it dispatches
    each message as it arrives instead of rebuilding a wait set in Python every cycle; where it does not exist,
    before Jazzy, 'events' falls back to 'single'). Measured on the 2-core machine (docs/driver_monitor.md,
    "Where the models run"): with only the slicer and the models in the process ('bench.bench_pipeline') the
    EventsExecutor cut event->AU by 3-5 ms, but in ``evmicro demo``, where the face detector, the monitor and
    the dashboard share the process, it let the AU and cVAE queues overflow (1-2 frames per run in three runs,
    none with 'single'): it serves events strictly in arrival order, where the SingleThreadedExecutor's
    cycle gives every ready callback a turn. A lockstep bag replay needs 'single' anyway
    (``runner._executor_for``), and the console scripts (:func:`run_node`) always use it (the
    EventsExecutor's ``spin()`` did not return on a context shutdown there). Never the MultiThreadedExecutor:
    it collapses to about 30 msg/s on this kind of machine.
    """
    kind = (kind or os.environ.get("EVMICRO_EXECUTOR") or "single").strip().lower()
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {kind!r} (EVMICRO_EXECUTOR)")
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            kind = "single"
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


class Diagnostics:
    """Counters, values and a status level published on ``/diagnostics`` once per ``period_s``.

    Counters also appear as rates per second over the last period (``<name>_per_s``). Safe to update from a
    node's own worker threads (the inference nodes' model thread) while the executor publishes.
    """

    def __init__(self, node: Node, name: str | None = None, *, hardware_id: str = "", period_s: float = 1.0):
        self.node = node
        self.name = name or node.get_fully_qualified_name().lstrip("/")
        self.hardware_id = hardware_id
        self.counters: dict[str, int] = defaultdict(int)
        self.values: dict[str, Any] = {}
        self.level = _OK
        self.message = "ok"
        self._last_counts: dict[str, int] = {}
        self._last_t = time.monotonic()
        self._lock = threading.Lock()
        self.extra: list[DiagnosticStatus] = []
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = node.create_timer(period_s, self.publish) if period_s > 0 else None

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.values[key] = value

    def status(self, level: int | str, message: str) -> None:
        if isinstance(level, str):
            level = {"OK": _OK, "WARN": _WARN, "ERROR": _ERROR, "STALE": _STALE}[level.upper()]
        self.level = bytes([level]) if isinstance(level, int) else level
        self.message = message

    def build(self) -> DiagnosticStatus:
        with self._lock:
            counters, values = dict(self.counters), dict(self.values)
        now = time.monotonic()
        dt = max(now - self._last_t, 1e-9)
        kv = []
        for k, v in sorted(counters.items()):
            kv.append(KeyValue(key=k, value=str(v)))
            kv.append(KeyValue(key=f"{k}_per_s", value=f"{(v - self._last_counts.get(k, 0)) / dt:.3f}"))
        for k, v in sorted(values.items()):
            kv.append(KeyValue(key=k, value=f"{v:.6g}" if isinstance(v, float) else str(v)))
        self._last_counts = counters
        self._last_t = now
        level = self.level if isinstance(self.level, bytes) else bytes([self.level])
        return DiagnosticStatus(level=level, name=self.name, message=self.message,
                                hardware_id=self.hardware_id, values=kv)

    def publish(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        arr.status = [self.build(), *self.extra]
        self.pub.publish(arr)


class EvmicroNode(Node):
    """Base of every ros2_evmicro node.

    Subclasses set ``SPEC`` (their :class:`ParamSpec`); the base declares one ROS parameter per entry with a
    descriptor (description, unit, range, read-only-ness), reads and checks the initial values (a bad value
    raises :class:`ParamError` at start-up with the reason), rejects bad runtime changes with
    ``SetParametersResult(successful=False, reason=...)``, and offers :attr:`p` (current values),
    :attr:`diag` (diagnostics) and :meth:`guard` (a callback wrapper that logs, counts and drops bad input).
    """

    SPEC: ParamSpec

    def __init__(self, node_name: str | None = None, **kwargs: Any):
        super().__init__(node_name or self.SPEC.node, **kwargs)
        values = {}
        for p in self.SPEC:
            try:
                param = self.declare_parameter(p.name, p.default, _descriptor(p))
            except (InvalidParameterValueException, InvalidParameterTypeException) as err:
                raise ParamError(f"node {self.get_name()}: {p.name}: {err}") from None
            values[p.name] = param.value
        try:
            self.p: ParamValues = self.SPEC.values(values)
        except ParamError as err:
            raise ParamError(f"node {self.get_name()}: {err}") from None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diag = Diagnostics(self)

    def create_publisher(self, msg_type, topic, qos_profile, *, callback_group=None, event_callbacks=None,
                         **kwargs: Any):
        """rclpy's ``create_publisher``, without the publisher-side default QoS-event handlers.

        rclpy gives every publisher and subscription two event handlers (incompatible QoS, incompatible type)
        that only log, and a SingleThreadedExecutor rebuilds its wait set with every one of them before each
        callback. Measured on the 2-core machine with the slicer, AU and reconstruction nodes in one process
        (32 such handlers): an idle ``spin_once`` took 0.74 ms with them, 0.43 ms without the publishers' (0.35 ms
        without any). A QoS mismatch
        raises the event on both sides, so the subscriptions keep theirs (this process's and ``ros2 topic
        echo``'s warn about it); the publishers here do without. Pass ``event_callbacks`` to have them."""
        from rclpy.event_handler import PublisherEventCallbacks

        if event_callbacks is None:
            event_callbacks = PublisherEventCallbacks(use_default_callbacks=False)
        return super().create_publisher(msg_type, topic, qos_profile, callback_group=callback_group,
                                        event_callbacks=event_callbacks, **kwargs)

    # -- parameters -------------------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self.SPEC}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = self.SPEC.update(self.p, changes, runtime=True)
        except ParamError as err:
            return SetParametersResult(successful=False, reason=str(err))
        old, self.p = self.p, new
        try:
            self.on_parameters_changed({k: new[k] for k in changes if old[k] != new[k]})
        except (ParamError, ValueError) as err:
            self.p = old
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def on_parameters_changed(self, changed: dict[str, Any]) -> None:
        """Hook: apply accepted runtime changes (raise ValueError to refuse them)."""

    # -- time ---------------------------------------------------------------------------------------------
    def now_ns(self) -> int:
        """Current time of the node's clock (ROS time, or bag time with use_sim_time)."""
        return self.get_clock().now().nanoseconds

    # -- callbacks ----------------------------------------------------------------------------------------
    def guard(self, fn: Callable[[Any], None], what: str) -> Callable[[Any], None]:
        """Wrap a subscription callback: an exception is logged (throttled), counted as ``bad_<what>`` on
        diagnostics and the message dropped; the node keeps running."""

        def wrapped(msg: Any) -> None:
            try:
                fn(msg)
            except Exception as err:  # noqa: BLE001 - a bad message must not kill the node
                self._bad(what, err)

        return wrapped

    def guard_info(self, fn: Callable[[Any, dict], None], what: str) -> Callable[[Any, dict], None]:
        """:meth:`guard` for a callback that also takes rclpy's message info (a dict with the DDS
        ``source_timestamp`` and ``received_timestamp``, ns of the wall clock): rclpy passes it to a callback
        of two arguments."""

        def wrapped(msg: Any, info: dict) -> None:
            try:
                fn(msg, info)
            except Exception as err:  # noqa: BLE001 - a bad message must not kill the node
                self._bad(what, err)

        return wrapped

    def _bad(self, what: str, err: Exception) -> None:
        self.diag.count(f"bad_{what}")
        self.get_logger().error(f"dropped a bad {what} message: {err}", throttle_duration_sec=2.0)


def shut_down_under_executor(err: BaseException, context: rclpy.Context | None = None) -> bool:
    """Whether ``err``, raised while spinning, only says that the context was shut down meanwhile.

    A SIGTERM or SIGINT shuts the context down from a signal handler; when that lands after the executor checked
    the context and before it built its wait set, rclpy raises ``RCLError`` ("failed to initialize wait set:
    the given context is not valid") instead of ``ExternalShutdownException``. Seen in about 1 of 12 SIGTERMs
    to the recorder on a loaded 2-core machine (test_recorder.py::test_sigterm_closes_cleanly): it made a clean
    stop exit with a traceback and code 1.
    """
    ctx = context if context is not None else rclpy.get_default_context()
    return isinstance(err, _rclpy_impl.RCLError) and not ctx.ok()


def run_node(cls: type[Node], args: list[str] | None = None) -> int:
    """Console-script body: init rclpy, spin one node on a SingleThreadedExecutor, exit cleanly.

    A bad parameter ends the process with exit code 2 and the reason on stderr, not a traceback.
    """
    prepare_process()
    node = None
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = cls()
        freeze_startup_heap()
        executor = SingleThreadedExecutor()  # spin() must end on a context shutdown (see make_executor)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy_impl.RCLError as err:
        if not shut_down_under_executor(err):
            raise
    except ParamError as err:
        print(f"{cls.__name__}: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

"""Driver throughput: sources against the bare readers, and file -> PointCloud2 -> subscriber end to end.

Run from the repo root: ``python -m bench.bench_drivers`` (EVMICRO_BENCH_NO_WRITE=1 for a trial run).

- ``Aedat4FileSource`` (events merged with frames, IMU and triggers, converted to EVENT_DTYPE) against
  dv-processing's own ``getNextEventBatch`` loop on the same 1 M-event AEDAT4 file;
- ``RawFileSource`` (1 MiB chunks, triggers interleaved) against ``RawReader.read_all`` on the same 10 M-event
  EVT 3.0 file (the decoder's ceiling);
- end to end: ``Evk4Node`` plays that RAW file at ``playback_rate`` 0 (10 ms packets) and a subscriber in the
  same process (another thread of the executor) receives every PointCloud2; events per second from the node's
  start to the last message, against the same ``RawReader.read_all`` anchor.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.harness import Row, best_rate, report
from ros2_evmicro.core.codecs import IMU_DTYPE, Aedat4Frame, RawReader, write_aedat4, write_raw
from ros2_evmicro.core.codecs.synthetic import row_burst_events
from ros2_evmicro.core.sources import Aedat4FileSource, RawFileSource

N_AEDAT4 = 1_000_000
N_RAW = 10_000_000


def _drain(src) -> int:
    from ros2_evmicro.core.stream import EventsItem

    n = 0
    while (items := src.read(0.0)) is not None:
        n += sum(len(i.events) for i in items if isinstance(i, EventsItem))
    src.close()
    return n


def _aedat4_rows(tmp: Path) -> list[Row]:
    try:
        import dv_processing as dv
    except ImportError:
        return []
    import numpy as np

    ev = row_burst_events(N_AEDAT4, 346, 260, duration_us=5_000_000, seed=1)
    ev["t"] += 1_700_000_000_000_000
    t0 = int(ev["t"][0])
    frames = [Aedat4Frame(t0 + k * 40_000, np.full((260, 346), k % 255, np.uint8)) for k in range(125)]
    imu = np.zeros(5000, dtype=IMU_DTYPE)
    imu["t"] = t0 + np.arange(5000) * 1000
    path = write_aedat4(tmp / "bench.aedat4", ev, 346, 260, frames=frames, imu=imu, packet_events=5000)

    def dv_loop() -> int:
        rec = dv.io.MonoCameraRecording(str(path))
        n = 0
        while (batch := rec.getNextEventBatch()) is not None:
            n += batch.size()
        return n

    ours = best_rate(lambda: _drain(Aedat4FileSource(path)), N_AEDAT4, repeat=3)
    anchor = best_rate(dv_loop, N_AEDAT4, repeat=3)
    return [Row("Aedat4FileSource read (events + 125 frames + 5000 IMU, merged)", ours / 1e6, "Mev/s",
                "dv getNextEventBatch loop (events only, no conversion)", anchor / 1e6,
                note="1 M events, 5 s, LZ4 (write_aedat4)")]


def _end_to_end(path: Path) -> tuple[float, int, int]:
    """(events/s, events received, packets received) of Evk4Node -> subscriber, in one process."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2, TimeReference

    from ros2_evmicro.nodes.evk4 import Evk4Node

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    got = {"events": 0, "packets": 0, "last": 0.0}

    def on_msg(m: PointCloud2) -> None:
        got["events"] += m.width
        got["packets"] += 1
        got["last"] = time.perf_counter()

    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    sub = Node("bench_sub", context=ctx)
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=5000)
    sub.create_subscription(PointCloud2, "/evk4/events", on_msg, qos)
    for topic in ("/evk4/time_reference", "/evk4/triggers"):  # every topic the driver waits for
        sub.create_subscription(TimeReference, topic, lambda m: None, qos)
    ex.add_node(sub)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    t0 = time.perf_counter()
    drv = Evk4Node(namespace="evk4", context=ctx, parameter_overrides=[
        Parameter("source", value="file"), Parameter("path", value=str(path)),
        Parameter("playback_rate", value=0.0), Parameter("wait_for_subscribers_s", value=10.0)])
    ex.add_node(drv)
    t_end = time.monotonic() + 300
    while time.monotonic() < t_end and not (drv.ended and got["packets"] >= drv.counts["packets"]):
        time.sleep(0.01)
    rate = got["events"] / (got["last"] - t0)
    drv.close()
    ex.shutdown()
    drv.destroy_node()
    sub.destroy_node()
    rclpy.try_shutdown(context=ctx)
    return rate, got["events"], got["packets"]


def _raw_rows(tmp: Path) -> list[Row]:
    ev = row_burst_events(N_RAW, 1280, 720, duration_us=2_000_000, seed=0)
    path = write_raw(tmp / "bench.raw", ev, fmt="evt3", width=1280, height=720)
    del ev
    decode = best_rate(lambda: RawReader(path).read_all(), N_RAW, repeat=3)
    source = best_rate(lambda: _drain(RawFileSource(path)), N_RAW, repeat=3)
    e2e, n, pk = _end_to_end(path)
    note = f"{n:,} events in {pk} packets received" + ("" if n == N_RAW else f" (expected {N_RAW:,})")
    return [
        Row("RawFileSource read (1 MiB chunks, triggers interleaved)", source / 1e6, "Mev/s",
            "RawReader.read_all (whole-file decode)", decode / 1e6, note="10 M events EVT 3.0, 2 s of sensor time"),
        Row("Evk4Node file -> PointCloud2 -> subscriber (playback_rate 0)", e2e / 1e6, "Mev/s",
            "RawReader.read_all (whole-file decode)", decode / 1e6, note=note + "; one process, 10 ms packets"),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = _aedat4_rows(tmp)
        rows += _raw_rows(tmp)
    report("Drivers: source read rates and file -> PointCloud2 end to end", rows)


if __name__ == "__main__":
    main()

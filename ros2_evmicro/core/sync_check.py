"""How well the cameras of a session bag share one clock: residual offset and jitter, offline.

Two sources of evidence, used in this order:

1. **Hardware trigger edges** (``<cam>/triggers``, ``sensor_msgs/TimeReference``: ``header.stamp`` = the
   driver's ROS-time stamp of the edge, ``time_ref`` = device time). When one trigger line feeds several
   cameras, the same edge is stamped by each: edges are matched by nearest stamp (within half the median
   edge period) and the stamp differences give the **residual offset** between the cameras' mapped clocks
   (median) and its **jitter** (p99 of the absolute deviation from the median).
2. **Clock pairings** (``<cam>/time_reference``: ``header.stamp`` = host arrival, ``time_ref`` = device time
   of the packet's first event). Each camera's device->host mapping is refitted over the whole bag with
   :func:`~ros2_evmicro.core.clock.fit_lower_envelope`; the residuals (arrival minus fitted time: transfer
   delay above the least-delayed packets) give each camera's p50/p99 jitter and its drift. Without a shared
   physical event the true offset between two cameras is not observable; the report gives the difference of
   their median residuals (how much later one camera's packets typically arrive relative to its envelope)
   as the estimate, and says so.

Times in the report are microseconds. Reads rosbag2 (MCAP or sqlite3) through :mod:`ros2_evmicro.core.bagio`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ros2_evmicro.core.clock import fit_lower_envelope

__all__ = ["CameraClock", "PairOffset", "SyncError", "SyncReport", "camera_clock", "match_edges", "sync_check"]


class SyncError(ValueError):
    """The bag holds nothing to check the synchronisation with."""


@dataclass(frozen=True)
class CameraClock:
    """One camera's device->host fit over the bag: drift (ppm), residual jitter p50/p99 (us), pair count."""

    camera: str
    n_pairs: int
    drift_ppm: float
    offset_ms: float  # host minus device time at the first pair (ms): the clocks' epoch difference
    residual_p50_us: float
    residual_p99_us: float
    n_trigger_edges: int = 0


@dataclass(frozen=True)
class PairOffset:
    """Offset of camera ``a``'s mapped clock minus camera ``b``'s (us), how it was measured, and its jitter."""

    a: str
    b: str
    method: str  # 'triggers' or 'time_reference'
    n: int
    offset_us: float
    jitter_p99_us: float


@dataclass
class SyncReport:
    cameras: dict[str, CameraClock] = field(default_factory=dict)
    pairs: list[PairOffset] = field(default_factory=list)

    def text(self) -> str:
        lines = ["camera   pairs   drift_ppm   offset_ms   residual_p50_us   residual_p99_us   trigger_edges"]
        for c in self.cameras.values():
            lines.append(f"{c.camera:<8} {c.n_pairs:>5}   {c.drift_ppm:>9.2f}   {c.offset_ms:>9.3f}   "
                         f"{c.residual_p50_us:>15.1f}   {c.residual_p99_us:>15.1f}   {c.n_trigger_edges:>13}")
        for p in self.pairs:
            note = "" if p.method == "triggers" else "  (estimate: no shared trigger)"
            lines.append(f"{p.a} - {p.b}: offset {p.offset_us:+.1f} us, jitter p99 {p.jitter_p99_us:.1f} us "
                         f"from {p.n} {p.method}{note}")
        return "\n".join(lines)


def camera_clock(camera: str, dev_us: np.ndarray, host_ns: np.ndarray) -> CameraClock:
    """Fit one camera's pairs (device us, host arrival ns) and summarise the residuals."""
    dev = np.asarray(dev_us, dtype=np.int64)
    host = np.asarray(host_ns, dtype=np.int64)
    if len(dev) == 0:
        raise SyncError(f"camera {camera}: no time_reference pairs")
    fit = fit_lower_envelope(dev, host)
    res_us = (host - fit.host_ns(dev)) / 1000.0
    return CameraClock(camera, len(dev), float(fit.drift_ppm), float(fit.a_ns / 1e6),
                       float(np.percentile(res_us, 50)), float(np.percentile(res_us, 99)))


def match_edges(a_ns: np.ndarray, b_ns: np.ndarray) -> np.ndarray:
    """Stamp differences a - b (ns) of edges matched by nearest stamp, within half the median edge period."""
    a = np.sort(np.asarray(a_ns, dtype=np.int64))
    b = np.sort(np.asarray(b_ns, dtype=np.int64))
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    periods = np.concatenate([np.diff(a), np.diff(b)])
    periods = periods[periods > 0]
    gate = int(np.median(periods) // 2) if len(periods) else np.iinfo(np.int64).max
    j = np.clip(np.searchsorted(b, a), 1, len(b) - 1) if len(b) > 1 else np.zeros(len(a), dtype=np.int64)
    if len(b) > 1:
        left = b[j - 1]
        right = b[j]
        nearest = np.where(np.abs(a - left) <= np.abs(a - right), left, right)
    else:
        nearest = np.full(len(a), b[0])
    d = a - nearest
    return d[np.abs(d) <= gate]


def _robust(d_us: np.ndarray) -> tuple[float, float]:
    med = float(np.median(d_us))
    return med, float(np.percentile(np.abs(d_us - med), 99))


def sync_check(path: str | os.PathLike, edge: str = "rise") -> SyncReport:
    """Report per-camera clock fits and the offsets between cameras of a session bag (see module docstring).

    ``edge``: which trigger edges to match ('rise', 'fall' or 'both').
    """
    from ros2_evmicro.core.bagio import BagReader

    report = SyncReport()
    with BagReader(path) as bag:
        topics = bag.topics
        cams = sorted({t.strip("/").split("/")[0] for t, (typ, _) in topics.items()
                       if t.endswith("/time_reference") and typ.endswith("TimeReference")})
        trig_cams = sorted({t.strip("/").split("/")[0] for t, (typ, _) in topics.items()
                            if t.endswith("/triggers") and typ.endswith("TimeReference")})
        if not cams and not trig_cams:
            raise SyncError(f"bag {path} has no <camera>/time_reference or <camera>/triggers topic; "
                            f"topics: {sorted(topics)}")
        edges: dict[str, np.ndarray] = {}
        for cam in trig_cams:
            st = []
            for _, _, m in bag.messages([f"/{cam}/triggers"]):
                kind = m.source.rsplit("/", 1)[-1]
                if edge == "both" or kind == edge:
                    st.append(int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec))
            edges[cam] = np.array(st, dtype=np.int64)
        for cam in cams:
            dev, host = [], []
            for _, _, m in bag.messages([f"/{cam}/time_reference"]):
                dev.append((int(m.time_ref.sec) * 1_000_000_000 + int(m.time_ref.nanosec)) // 1000)
                host.append(int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec))
            if dev:
                c = camera_clock(cam, np.array(dev), np.array(host))
                if cam in edges:
                    c = CameraClock(**{**c.__dict__, "n_trigger_edges": len(edges[cam])})
                report.cameras[cam] = c
    names = sorted(set(report.cameras) | set(edges))
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = match_edges(edges.get(a, np.zeros(0)), edges.get(b, np.zeros(0)))
            if len(d):
                off, jit = _robust(d / 1000.0)
                report.pairs.append(PairOffset(a, b, "triggers", len(d), off, jit))
            elif a in report.cameras and b in report.cameras:
                ca, cb = report.cameras[a], report.cameras[b]
                off = ca.residual_p50_us - cb.residual_p50_us
                jit = float(np.hypot(ca.residual_p99_us - ca.residual_p50_us, cb.residual_p99_us - cb.residual_p50_us))
                report.pairs.append(PairOffset(a, b, "time_reference", min(ca.n_pairs, cb.n_pairs), off, jit))
    return report

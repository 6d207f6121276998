"""Recording-session folders: ``session.yaml``, the markers table, summaries and segment export (no ROS).

A session folder ``<out_dir>/<subject>_<session>/`` is itself the rosbag2 folder (``metadata.yaml`` and
``<subject>_<session>_<i>.mcap``, so ``ros2 bag info``/``play`` take the session folder directly), plus

- ``session.yaml``: subject id, age range, sex, lux, lighting, operator, notes, calibration files, software
  version, cameras, start/end time, topics with message counts, storage files and the segments they hold;
- ``markers.csv``: one row per protocol marker (the contract's fields, the receive time and the bag file).

:func:`summarize_session` computes what ``evmicro session info`` prints (counts, rates, largest gaps, drops,
per-segment summary, clock-sync residuals); :func:`export_segment` writes one segment's events as RAW EVT3
and the webcam frames as MP4.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import shutil
import struct
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros2_evmicro.core.bagio import BagError, BagReader, find_bag_dir

__all__ = [
    "MARKER_FIELDS",
    "MARKERS_FILE",
    "SESSION_FILE",
    "MarkerTable",
    "Segment",
    "SessionError",
    "SessionInfo",
    "export_segment",
    "free_gb",
    "new_session_dir",
    "read_markers",
    "segments_from_markers",
    "summarize_session",
]

SESSION_FILE = "session.yaml"
MARKERS_FILE = "markers.csv"
MARKER_FIELDS = ("stamp_ns", "session", "subject", "run", "au", "trial", "phase", "segment")
_CSV_FIELDS = (*MARKER_FIELDS, "recv_ns", "bag_file")
_SENSOR_SIZES = {"davis": (346, 260), "evk4": (1280, 720)}


class SessionError(ValueError):
    """A session folder is missing, incomplete, or a requested segment does not exist."""


def new_session_dir(out_dir: str | os.PathLike, subject: str, session: str) -> Path:
    """``<out_dir>/<subject>_<session>``, or with ``_2``, ``_3``... when it holds data (never overwritten)."""
    base = Path(out_dir) / f"{subject}_{session}"
    p, k = base, 1
    while p.exists() and any(p.iterdir()):
        k += 1
        p = base.with_name(f"{base.name}_{k}")
    return p


def free_gb(path: str | os.PathLike) -> float:
    """Free space (GiB) of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free / 2**30


# -- session.yaml --------------------------------------------------------------------------------------------


@dataclass
class SessionInfo:
    """What ``session.yaml`` holds. Times are ns since the epoch (ROS time); ``*_iso`` are their UTC text."""

    subject: str
    session: str
    age_range: str = ""
    sex: str = ""
    lux: float = 0.0
    lighting: str = ""
    operator: str = ""
    notes: str = ""
    calibration_files: list[str] = field(default_factory=list)
    software_version: str = ""
    cameras: list[str] = field(default_factory=list)
    split: str = "session"
    start_ns: int = 0
    end_ns: int = 0
    status: str = "recording"  # recording, complete, stopped_low_disk, stopped
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {type, count}
    files: list[dict[str, Any]] = field(default_factory=list)  # {path, segment, messages}
    markers: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start_iso"] = _iso(self.start_ns)
        d["end_iso"] = _iso(self.end_ns)
        return d

    def write(self, folder: str | os.PathLike) -> Path:
        import yaml

        path = Path(folder) / SESSION_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, folder: str | os.PathLike) -> SessionInfo:
        import yaml

        path = Path(folder) / SESSION_FILE
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise SessionError(f"{folder} is not a session folder (no {SESSION_FILE})") from None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _iso(ns: int) -> str:
    if not ns:
        return ""
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC).isoformat(timespec="milliseconds")


# -- markers.csv ---------------------------------------------------------------------------------------------


class MarkerTable:
    """Append-only ``markers.csv``; each row is flushed at once (a crash keeps every marker received)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="", encoding="utf8")  # noqa: SIM115 - kept open while recording
        self._w = csv.DictWriter(self._fh, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        if new:
            self._w.writeheader()
            self._fh.flush()
        self.rows = 0

    def append(self, marker: dict, recv_ns: int = 0, bag_file: str = "") -> None:
        row = {k: marker.get(k, "") for k in MARKER_FIELDS}
        row["recv_ns"] = int(recv_ns)
        row["bag_file"] = bag_file
        self._w.writerow(row)
        self._fh.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def read_markers(folder: str | os.PathLike) -> list[dict]:
    """Rows of ``markers.csv`` with ``stamp_ns``, ``au``, ``trial`` and ``recv_ns`` as ints."""
    path = Path(folder) / MARKERS_FILE
    if not path.is_file():
        return []
    out = []
    with open(path, newline="", encoding="utf8") as fh:
        for row in csv.DictReader(fh):
            for k in ("stamp_ns", "au", "trial", "recv_ns"):
                row[k] = int(row[k]) if row.get(k) not in (None, "") else 0
            out.append(row)
    return out


# -- segments ------------------------------------------------------------------------------------------------


@dataclass
class Segment:
    """One take of one AU: from its first marker to the next take's first marker (or ``done``).

    ``perform`` is the perform window ``(start_ns, end_ns)`` (end = the next marker), or None when the take
    never reached it. ``status``: 'ok' (perform and rest seen), 'redo' (marked bad), 'incomplete'.
    """

    name: str
    run: str
    au: int
    trial: int
    start_ns: int
    end_ns: int
    perform: tuple[int, int] | None
    status: str
    phases: list[str]


def segments_from_markers(markers: list[dict]) -> list[Segment]:
    """Group markers (bag or CSV rows, in time order) into segments."""
    ms = sorted((m for m in markers if m.get("phase")), key=lambda m: int(m["stamp_ns"]))
    segs: list[Segment] = []
    cur: Segment | None = None
    for i, m in enumerate(ms):
        t = int(m["stamp_ns"])
        name = m.get("segment", "")
        if cur is not None and (name != cur.name or m["phase"] == "done"):
            cur.end_ns = t
            segs.append(cur)
            cur = None
        if m["phase"] == "done" or not name:
            continue
        if cur is None:
            cur = Segment(
                name, str(m.get("run", "")), int(m["au"]), int(m["trial"]), t, t, None, "incomplete", []
            )
        cur.phases.append(m["phase"])
        if m["phase"] == "perform":
            end = int(ms[i + 1]["stamp_ns"]) if i + 1 < len(ms) else t
            cur.perform = (t, end)
        if m["phase"] == "redo":
            cur.status = "redo"
        elif m["phase"] == "rest" and cur.perform is not None and cur.status != "redo":
            cur.status = "ok"
    if cur is not None:
        cur.end_ns = int(ms[-1]["stamp_ns"]) if ms else cur.start_ns
        segs.append(cur)
    return segs


# -- summary -------------------------------------------------------------------------------------------------


def _pc2_width(raw: bytes) -> int:
    """``width`` of a CDR PointCloud2 without decoding it (header: stamp, frame_id; then height, width)."""
    (n,) = struct.unpack_from("<I", raw, 12)
    off = 16 + n
    off += (-(off - 4)) % 4
    return struct.unpack_from("<I", raw, off + 4)[0]


@dataclass
class TopicStats:
    topic: str
    msgtype: str
    count: int
    rate_hz: float
    largest_gap_s: float
    events: int = 0
    event_rate: float = 0.0


def summarize_session(folder: str | os.PathLike) -> dict[str, Any]:
    """Everything ``evmicro session info`` prints, as a dict (see :func:`format_summary`)."""
    folder = Path(folder)
    bag_dir = find_bag_dir(folder)
    info = None
    if (folder / SESSION_FILE).is_file():
        info = SessionInfo.read(folder)
    times: dict[str, list[int]] = defaultdict(list)
    widths: dict[str, list[int]] = defaultdict(list)
    diag_drops: dict[str, float] = {}
    time_refs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    with BagReader(bag_dir) as r:
        types = {t: typ for t, (typ, _) in r.topics.items()}
        markers = r.markers() if "/protocol/marker" in types else []
        for m in r.raw():
            if m.msgtype == "sensor_msgs/msg/PointCloud2":
                w = _pc2_width(m.raw)
                if w == 0:  # a watermark (docs/interfaces.md): not a packet, no events; rates and gaps skip it
                    continue
                widths[m.topic].append(w)
            times[m.topic].append(m.t_ns)
            if m.msgtype == "diagnostic_msgs/msg/DiagnosticArray":
                arr = r.decode(m.raw, m.msgtype)
                for st in arr.status:
                    for kv in st.values:
                        if "drop" in kv.key and not kv.key.endswith("_per_s"):
                            try:
                                diag_drops[f"{st.name}/{kv.key}"] = float(kv.value)
                            except ValueError:
                                pass
            elif m.msgtype == "sensor_msgs/msg/TimeReference":
                tr = r.decode(m.raw, m.msgtype)
                host = tr.header.stamp.sec * 10**9 + tr.header.stamp.nanosec
                sensor = tr.time_ref.sec * 10**9 + tr.time_ref.nanosec
                time_refs[m.topic].append((host, sensor))
    if not markers:
        markers = read_markers(folder)
    stats = []
    for topic, ts in sorted(times.items()):
        t = np.asarray(ts, dtype=np.int64)
        dur = (t[-1] - t[0]) / 1e9 if len(t) > 1 else 0.0
        gaps = np.diff(np.sort(t)) / 1e9 if len(t) > 1 else np.zeros(0)
        st = TopicStats(
            topic,
            types[topic],
            len(t),
            (len(t) - 1) / dur if dur > 0 else 0.0,
            float(gaps.max()) if len(gaps) else 0.0,
        )
        if topic in widths:
            st.events = int(np.sum(widths[topic]))
            st.event_rate = st.events / dur if dur > 0 else 0.0
        stats.append(st)
    drops: dict[str, Any]
    if diag_drops:
        drops = {"source": "diagnostics", "counters": diag_drops}
    else:
        # no counters recorded: count packet gaps longer than 3x the median packet period
        est = {}
        for topic in widths:
            t = np.sort(np.asarray(times[topic], dtype=np.int64))
            if len(t) > 3:
                d = np.diff(t)
                med = float(np.median(d))
                est[topic] = int(np.sum(np.maximum(np.round(d[d > 3 * med] / med) - 1, 0))) if med > 0 else 0
        drops = {"source": "packet gaps (no drop counters recorded)", "estimated_missing_packets": est}
    segs = segments_from_markers(markers)
    seg_rows = []
    for s in segs:
        row: dict[str, Any] = {
            "segment": s.name,
            "au": s.au,
            "trial": s.trial,
            "status": s.status,
            "duration_s": (s.end_ns - s.start_ns) / 1e9,
            "perform_s": (s.perform[1] - s.perform[0]) / 1e9 if s.perform else 0.0,
        }
        if s.perform:
            for topic in widths:
                t = np.asarray(times[topic], dtype=np.int64)
                sel = (t >= s.perform[0]) & (t < s.perform[1])
                row[f"events{topic}"] = int(np.asarray(widths[topic], dtype=np.int64)[sel].sum())
            for topic, typ in types.items():
                if typ == "sensor_msgs/msg/Image":
                    t = np.asarray(times[topic], dtype=np.int64)
                    row[f"frames{topic}"] = int(np.count_nonzero((t >= s.perform[0]) & (t < s.perform[1])))
        seg_rows.append(row)
    sync = {}
    for topic, pairs in time_refs.items():
        sync[topic] = clock_fit_residuals(pairs)
    return {
        "folder": str(folder),
        "bag": str(bag_dir),
        "info": info.to_dict() if info else None,
        "topics": [asdict(s) for s in stats],
        "drops": drops,
        "segments": seg_rows,
        "sync": sync,
        "markers": len(markers),
    }


def clock_fit_residuals(pairs: list[tuple[int, int]]) -> dict[str, float]:
    """Least-squares fit host_ns = a * sensor_ns + b of TimeReference pairs; residuals in microseconds."""
    if len(pairs) < 3:
        return {"pairs": len(pairs), "drift_ppm": math.nan, "rms_us": math.nan, "max_us": math.nan}
    a = np.asarray(pairs, dtype=np.float64)
    host, sensor = a[:, 0], a[:, 1]
    hs, ss = host - host[0], sensor - sensor[0]
    slope, icpt = np.polyfit(ss, hs, 1)
    res = hs - (slope * ss + icpt)
    return {
        "pairs": len(pairs),
        "drift_ppm": float((slope - 1) * 1e6),
        "rms_us": float(np.sqrt(np.mean(res**2)) / 1e3),
        "max_us": float(np.abs(res).max() / 1e3),
    }


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of :func:`summarize_session`."""
    lines = [f"session {s['folder']}"]
    info = s.get("info")
    if info:
        lines.append(
            f"  subject {info['subject']} session {info['session']}  status {info['status']}  "
            f"lux {info['lux']}  cameras {', '.join(info['cameras'])}  software {info['software_version']}"
        )
        lines.append(f"  {info['start_iso']} .. {info['end_iso']}")
    lines.append(f"  {'topic':<28} {'type':<32} {'count':>8} {'rate Hz':>9} {'max gap s':>10} {'Mev/s':>7}")
    for t in s["topics"]:
        ev = f"{t['event_rate'] / 1e6:7.3f}" if t["events"] else ""
        lines.append(
            f"  {t['topic']:<28} {t['msgtype']:<32} {t['count']:>8} {t['rate_hz']:>9.2f} "
            f"{t['largest_gap_s']:>10.3f} {ev:>7}"
        )
    d = s["drops"]
    if d["source"] == "diagnostics":
        lines.append("  drops (diagnostics counters, last value):")
        lines += [f"    {k}: {v:g}" for k, v in sorted(d["counters"].items())]
    else:
        lines.append(
            f"  drops ({d['source']}): "
            + (", ".join(f"{k} {v}" for k, v in d["estimated_missing_packets"].items()) or "none")
        )
    if s["segments"]:
        lines.append(f"  segments ({len(s['segments'])}, {s['markers']} markers):")
        for row in s["segments"]:
            extra = "  ".join(f"{k}={v}" for k, v in row.items() if k.startswith(("events", "frames")))
            lines.append(
                f"    {row['segment']:<18} {row['status']:<10} {row['duration_s']:7.2f} s  perform "
                f"{row['perform_s']:5.2f} s  {extra}"
            )
    for topic, r in s["sync"].items():
        lines.append(
            f"  sync {topic}: {r['pairs']} pairs, drift {r['drift_ppm']:.2f} ppm, residual rms "
            f"{r['rms_us']:.1f} us, max {r['max_us']:.1f} us"
        )
    return "\n".join(lines)


# -- export --------------------------------------------------------------------------------------------------


def export_segment(
    folder: str | os.PathLike, segment: str, out: str | os.PathLike, *, window: str = "segment"
) -> list[Path]:
    """Write one segment's events as RAW EVT3 (one file per event camera) and webcam frames as MP4.

    ``window``: 'segment' (first marker of the take to the next take) or 'perform' (the perform window).
    Event times in the RAW file are microseconds since the window start. Returns the files written.
    """
    if window not in ("segment", "perform"):
        raise SessionError(f"window must be 'segment' or 'perform', got {window!r}")
    folder = Path(folder)
    with BagReader(find_bag_dir(folder)) as r:
        markers = r.markers() if "/protocol/marker" in r.topics else read_markers(folder)
        segs = {s.name: s for s in segments_from_markers(markers)}
        if segment not in segs:
            raise SessionError(f"{folder} has no segment {segment!r}; segments: {', '.join(segs) or 'none'}")
        s = segs[segment]
        if window == "perform":
            if s.perform is None:
                raise SessionError(f"segment {segment} has no perform window ({s.status})")
            t0, t1 = s.perform
        else:
            t0, t1 = s.start_ns, s.end_ns
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for topic, (typ, _) in sorted(r.topics.items()):
            cam = topic.strip("/").split("/")[0]
            if typ == "sensor_msgs/msg/PointCloud2" and topic.endswith("/events"):
                ev = r.events(topic, t0, t1)
                w, h = _camera_size(r, cam)
                if len(ev):
                    ev = ev.copy()
                    ev["t"] -= ev["t"].min()
                    ev = ev[np.argsort(ev["t"], kind="stable")]
                written.append(_write_events(out / f"{segment}_{cam}.raw", ev, w, h))
            elif typ == "sensor_msgs/msg/Image" and cam == "webcam":
                p = _write_mp4(out / f"{segment}_{cam}.mp4", r, topic, t0, t1)
                if p is not None:
                    written.append(p)
    return written


def _camera_size(r: BagReader, cam: str) -> tuple[int, int]:
    topic = f"/{cam}/camera_info"
    if topic in r.topics:
        for _, _, m in r.messages([topic]):
            if m.width and m.height:
                return int(m.width), int(m.height)
    if cam in _SENSOR_SIZES:
        return _SENSOR_SIZES[cam]
    raise SessionError(f"no {topic} in the bag and no known sensor size for camera {cam!r}")


def _write_events(path: Path, events: np.ndarray, width: int, height: int) -> Path:
    try:
        from ros2_evmicro.core.codecs import write_raw
    except ImportError as err:  # pragma: no cover - codecs are part of the package
        raise SessionError(f"RAW export needs ros2_evmicro.core.codecs: {err}") from None
    return write_raw(path, events, "evt3", width, height)


def _write_mp4(path: Path, r: BagReader, topic: str, t0: int, t1: int) -> Path | None:
    """Stream the Image messages of ``topic`` in [t0, t1) into an MP4 (fps from their log times)."""
    import cv2

    t = np.asarray([m.t_ns for m in r.raw([topic], t0, t1)], dtype=np.int64)
    if not len(t):
        return None
    fps = float((len(t) - 1) / ((t[-1] - t[0]) / 1e9)) if len(t) > 1 and t[-1] > t[0] else 30.0
    vw = None
    try:
        for _, _, m in r.messages([topic], t0, t1):
            from ros2_evmicro.core.bagio import image_from_cdr

            img = image_from_cdr(m)
            if m.encoding in ("mono8", "8UC1"):
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            elif m.encoding == "rgb8":
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            elif m.encoding != "bgr8":
                raise SessionError(f"cannot export {topic} frames with encoding {m.encoding} to MP4")
            if vw is None:
                h, w = img.shape[:2]
                vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                if not vw.isOpened():
                    raise SessionError(f"OpenCV cannot write {path} (mp4v codec missing)")
            vw.write(np.ascontiguousarray(img))
    finally:
        if vw is not None:
            vw.release()
    return path


__all__ += ["BagError", "TopicStats", "clock_fit_residuals", "format_summary"]

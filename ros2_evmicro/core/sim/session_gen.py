"""Simulated recording sessions: whole session folders, written exactly as the recorder would write them.

One folder per simulated subject, ``<out_dir>/<subject>_sim/`` (the layout of
:mod:`ros2_evmicro.nodes.recorder` and :mod:`ros2_evmicro.core.session`):

- the rosbag2 (``metadata.yaml`` + ``<subject>_sim_0.mcap``, written with :class:`~..bagio.BagWriter`) with
  the topics, message types and frame ids of the sim_rig node and the drivers:

  ==========================  ===============================  =======================================
  topic                       type                             content
  ==========================  ===============================  =======================================
  ``/<cam>/events``           ``sensor_msgs/PointCloud2``      DAVIS346 / EVK4 packets (contract layout)
  ``/<cam>/camera_info``      ``sensor_msgs/CameraInfo``       once at the start (latched), intrinsics
                                                               of the simulated rig
  ``/<cam>/time_reference``   ``sensor_msgs/TimeReference``    one per event packet (event cameras) or
                                                               per frame (webcam)
  ``/davis/image_raw``        ``sensor_msgs/Image`` mono8      APS frames
  ``/davis/imu``              ``sensor_msgs/Imu``              IMU samples (1 kHz)
  ``/webcam/image_raw``       ``sensor_msgs/Image`` bgr8       webcam frames
  ``/<cam>/face_roi``         ``geometry_msgs/PolygonStamped`` GROUND-TRUTH face box of the simulator
                                                               (no face detector), ``face_roi_hz``
  ``/protocol/marker``        ``std_msgs/String`` (JSON)       the protocol's phase changes
  ``/sim/truth``              ``std_msgs/String`` (JSON)       performed AUs, phase, segment, face boxes
                                                               (the sim_rig node's ground truth)
  ==========================  ===============================  =======================================

- ``session.yaml`` (:class:`~..session.SessionInfo` fields plus ``simulated: true``, ``seed``,
  ``subject_seed``, ``time_scale`` and ``ground_truth``, which names the topics that hold simulator truth
  rather than measurements), with ``calibration_files: [sim]`` (the simulated rig's own geometry, which
  the dataset builder and the graphs understand);
- ``markers.csv`` (one row per marker, ``recv_ns`` = the marker's stamp).

The subject follows the recording protocol of ``config/protocol.yaml``'s ``main`` run (demo, countdown,
perform, rest per AU; :data:`MAIN_RUN_PHASES_S`) with every phase scaled by ``time_scale``; the perform
window never gets shorter than what the longest take of the chosen AUs needs.

Time: ROS time = :func:`session_start_ns` (a fixed epoch, 2025-01-01 09:00 UTC, plus whole days from the
seed and whole hours from the subject number) + scene time. A message's bag (receive) time is its header
stamp (a lossless recorder with zero latency), event packets are stamped at their first event, as the
drivers do. Nothing depends on the wall clock, so the same arguments give the same bytes in every file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ros2_evmicro.core.bagio import BagWriter, qos_profile
from ros2_evmicro.core.events import EventPacket
from ros2_evmicro.core.session import MARKERS_FILE, SESSION_FILE, MarkerTable, SessionInfo
from ros2_evmicro.core.sim.face import SimError
from ros2_evmicro.core.sim.rig import CAMERAS, SimRig
from ros2_evmicro.core.sim.timeline import AU_NUMBERS, Protocol, duration_range_s, protocol_timeline

__all__ = [
    "EPOCH_NS",
    "FRAME_IDS",
    "MAIN_RUN_PHASES_S",
    "SESSION_NAME",
    "GeneratedSession",
    "SessionGenError",
    "SessionSpec",
    "file_digests",
    "generate_session",
    "generate_sessions",
    "main_run_protocol",
    "session_start_ns",
    "session_topics",
]

EPOCH_NS = 1_735_722_000 * 1_000_000_000
"""2025-01-01 09:00:00 UTC in ns: the start of every simulated session (plus seed days, subject hours)."""
MAIN_RUN_PHASES_S: dict[str, float] = {"demo": 6.0, "countdown": 3.0, "perform": 5.0, "rest": 6.0}
"""Phase lengths (s) of the ``main`` run of ``config/protocol.yaml`` (demo = 3 reps x 2 s)."""
SESSION_NAME = "sim"
FRAME_IDS: dict[str, str] = {"davis": "davis346_optical", "evk4": "evk4_optical", "webcam": "webcam_optical"}
IMU_FRAME_ID = "davis346_imu"
LEAD_S = 0.5  # scene time before the first phase
TAIL_S = 0.5  # scene time after the 'done' marker (the recorder's stop_on_done delay)
_EVENT_CAMS = ("davis", "evk4")
_GROUND_TRUTH_NOTE = "simulator ground truth (face box of the rendered face), not a detector's output"


class SessionGenError(SimError):
    """A simulated session cannot be generated (bad arguments, or the folder already holds other data)."""


@dataclass(frozen=True)
class SessionSpec:
    """What one simulated session holds.

    ``subject`` is the id (``S01``); ``subject_seed`` draws the face; ``seed`` the sensor noise, background
    movements and the takes. ``aus`` None means all 21 in Table 1 order. ``time_scale`` scales the protocol
    phases (1.0 = the 7-minute main run). ``face_roi_hz`` / ``truth_hz``: rates of the ground-truth topics.
    ``compression``: MCAP chunk compression ('' / 'none', 'zstd', 'lz4'; raw 1080p webcam frames take
    about 190 MB per second of scene uncompressed).
    """

    subject: str = "S01"
    subject_index: int = 1
    subject_seed: int = 1
    cameras: tuple[str, ...] = CAMERAS
    aus: tuple[int, ...] | None = None
    lux: float = 600.0
    time_scale: float = 1.0
    seed: int = 0
    packet_period_ms: float = 10.0
    face_roi_hz: float = 30.0
    truth_hz: float = 30.0
    aps: bool = True
    imu: bool = True
    compression: str = ""

    def __post_init__(self) -> None:
        cams = tuple(self.cameras)
        bad = [c for c in cams if c not in CAMERAS]
        if bad or not cams or len(set(cams)) != len(cams):
            raise SessionGenError(f"cameras must be distinct names from {CAMERAS}, got {cams}")
        if not (0.005 <= self.time_scale <= 10.0):
            raise SessionGenError(f"time_scale must be within 0.005..10, got {self.time_scale}")
        if not (10.0 <= self.lux <= 100000.0):
            raise SessionGenError(f"lux must be within 10..100000, got {self.lux}")
        for name in ("face_roi_hz", "truth_hz"):
            if not (0.0 < getattr(self, name) <= 1000.0):
                raise SessionGenError(f"{name} must be within (0, 1000] Hz, got {getattr(self, name)}")
        if self.seed < 0 or self.subject_seed < 0 or self.subject_index < 0:
            raise SessionGenError("seed, subject_seed and subject_index must be >= 0")
        if self.compression not in ("", "none", "zstd", "lz4"):
            raise SessionGenError(f"compression must be none, zstd or lz4, got {self.compression!r}")
        object.__setattr__(self, "cameras", cams)

    @property
    def folder_name(self) -> str:
        return f"{self.subject}_{SESSION_NAME}"


@dataclass(frozen=True)
class GeneratedSession:
    """Result of :func:`generate_session`: the folder, its scene length and message counts per topic."""

    folder: Path
    subject: str
    start_ns: int
    duration_s: float
    counts: dict[str, int]
    markers: int
    skipped: bool = False


def session_start_ns(seed: int, subject_index: int) -> int:
    """ROS time (ns) of scene time 0: :data:`EPOCH_NS` + ``seed mod 3650`` days + ``subject_index`` hours."""
    return EPOCH_NS + (int(seed) % 3650) * 86_400 * 10**9 + int(subject_index) * 3_600 * 10**9


def main_run_protocol(aus: Sequence[int] | None, time_scale: float, *, seed: int = 0, subject: str = "S01",
                      trials: int = 1) -> Protocol:
    """The ``main`` run (:data:`MAIN_RUN_PHASES_S`) with every phase scaled by ``time_scale``; the perform
    window is at least 1.25 x the longest take of the AUs plus 0.1 s, so every take fits."""
    chosen = AU_NUMBERS if aus is None else tuple(int(a) for a in aus)
    if not chosen:
        raise SessionGenError("no AU to perform (aus is empty)")
    s = float(time_scale)
    try:
        longest = max(duration_range_s(a)[1] for a in chosen)
        return protocol_timeline(
            chosen,
            demo_s=MAIN_RUN_PHASES_S["demo"] * s,
            countdown_s=MAIN_RUN_PHASES_S["countdown"] * s,
            perform_s=max(MAIN_RUN_PHASES_S["perform"] * s, 1.25 * longest + 0.1),
            rest_s=MAIN_RUN_PHASES_S["rest"] * s,
            trials=trials,
            seed=seed,
            start_s=LEAD_S,
            subject=subject,
            session=SESSION_NAME,
            run="main",
        )
    except SimError as err:
        raise SessionGenError(str(err)) from None


def session_topics(cameras: Sequence[str], *, aps: bool = True, imu: bool = True) -> list[tuple[str, str, Any]]:
    """(topic, type, rosbags QoS) of a session's topics, in the recorder's order (+ ``/sim/truth``).

    QoS as the recorder stores it: events reliable depth 1000, camera_info reliable transient-local, the
    rest reliable depth 100.
    """
    rel = qos_profile(True, 100, False)
    out: list[tuple[str, str, Any]] = []
    for cam in cameras:
        if cam in _EVENT_CAMS:
            out.append((f"/{cam}/events", "sensor_msgs/msg/PointCloud2", qos_profile(True, 1000, False)))
        out.append((f"/{cam}/camera_info", "sensor_msgs/msg/CameraInfo", qos_profile(True, 100, True)))
        out.append((f"/{cam}/time_reference", "sensor_msgs/msg/TimeReference", rel))
    if "davis" in cameras:
        if aps:
            out.append(("/davis/image_raw", "sensor_msgs/msg/Image", rel))
        if imu:
            out.append(("/davis/imu", "sensor_msgs/msg/Imu", rel))
    if "webcam" in cameras:
        out.append(("/webcam/image_raw", "sensor_msgs/msg/Image", rel))
    out += [(f"/{cam}/face_roi", "geometry_msgs/msg/PolygonStamped", rel) for cam in cameras]
    out.append(("/protocol/marker", "std_msgs/msg/String", rel))
    out.append(("/sim/truth", "std_msgs/msg/String", rel))
    return out


class _Ticker:
    """Fires at the first item at or after each multiple of ``1/hz`` of scene time (integer microseconds)."""

    def __init__(self, hz: float) -> None:
        self.period_us = max(1, int(round(1e6 / hz)))
        self.next_us = 0

    def due(self, t_us: int) -> bool:
        if t_us < self.next_us:
            return False
        self.next_us = (t_us // self.period_us + 1) * self.period_us
        return True


def _session_yaml(info: SessionInfo, spec: SessionSpec, duration_s: float) -> dict[str, Any]:
    d = info.to_dict()
    d.update(
        simulated=True,
        seed=int(spec.seed),
        subject_seed=int(spec.subject_seed),
        time_scale=float(spec.time_scale),
        scene_duration_s=round(float(duration_s), 6),
        aus=[int(a) for a in (spec.aus if spec.aus is not None else AU_NUMBERS)],
        ground_truth={f"/{c}/face_roi": _GROUND_TRUTH_NOTE for c in spec.cameras}
        | {"/sim/truth": "simulator ground truth: performed AUs, phase, segment, face boxes (JSON)"},
    )
    return d


def _write_yaml_atomic(path: Path, doc: dict) -> None:
    import yaml

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    os.replace(tmp, path)


def _prepare_folder(folder: Path, overwrite: bool) -> bool:
    """True when the folder already holds a complete session of the same name (skip it)."""
    if not folder.exists() or not any(folder.iterdir()):
        return False
    if not overwrite and (folder / SESSION_FILE).is_file():
        try:
            if SessionInfo.read(folder).status == "complete":
                return True
        except (ValueError, TypeError):
            pass
    if not overwrite:
        raise SessionGenError(f"{folder} already holds data that is not a complete session; "
                              "remove it or pass overwrite (--overwrite)")
    shutil.rmtree(folder)
    return False


def generate_session(out_dir: str | os.PathLike, spec: SessionSpec, *, overwrite: bool = False,
                     progress: bool | Callable[[float], None] = False) -> GeneratedSession:
    """Write one simulated session folder ``<out_dir>/<subject>_sim`` (see the module docstring).

    A folder that already holds a complete session is left as it is (``skipped``); one holding anything
    else raises :class:`SessionGenError` unless ``overwrite``. ``progress``: True for a tqdm bar on stderr,
    or a callable receiving the scene time done (s).
    """
    from ros2_evmicro import __version__

    folder = Path(out_dir) / spec.folder_name
    if _prepare_folder(folder, overwrite):
        info = SessionInfo.read(folder)
        counts = {t: int(v.get("count", 0)) for t, v in info.topics.items()}
        return GeneratedSession(folder, spec.subject, info.start_ns, (info.end_ns - info.start_ns) / 1e9,
                                counts, info.markers, skipped=True)
    protocol = main_run_protocol(spec.aus, spec.time_scale, seed=spec.seed * 1009 + spec.subject_index,
                                 subject=spec.subject)
    rig = SimRig(spec.subject_seed, lux=spec.lux, cameras=spec.cameras, timeline=protocol, seed=spec.seed,
                 aps=spec.aps, imu=spec.imu)
    duration_s = protocol.duration_s + TAIL_S
    t0_ns = session_start_ns(spec.seed, spec.subject_index)
    t0_us = t0_ns // 1000
    markers = protocol.markers(t0_ns)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    writer = BagWriter(tmp, "mcap", crc=True, fsync_period_s=-1.0, name=spec.folder_name,
                       compression=spec.compression,
                       custom_data={"subject": spec.subject, "session": SESSION_NAME,
                                    "software_version": __version__, "simulated": "true",
                                    "seed": str(spec.seed)})
    table = MarkerTable(tmp / MARKERS_FILE)
    topics = session_topics(spec.cameras, aps=spec.aps, imu=spec.imu)
    try:
        for name, typ, qos in topics:
            writer.add_topic(name, typ, qos)
        for cam in spec.cameras:
            g = rig.geometry[cam]
            K = [g.fx, 0.0, g.cx, 0.0, g.fy, g.cy, 0.0, 0.0, 1.0]
            writer.write_camera_info(f"/{cam}/camera_info", g.width, g.height, stamp_ns=t0_ns,
                                     frame_id=FRAME_IDS[cam], K=K)
        roi_tick, truth_tick = _Ticker(spec.face_roi_hz), _Ticker(spec.truth_hz)
        pending_markers = list(markers)
        bar = _progress_bar(progress, duration_s, spec.subject)
        batch: list[tuple[int, int, Callable[[], None]]] = []
        seq = 0
        last_bar_us = 0

        def put(t_ns: int, fn: Callable[[], None]) -> None:
            nonlocal seq
            batch.append((int(t_ns), seq, fn))
            seq += 1

        def flush_batch() -> None:
            batch.sort(key=lambda x: (x[0], x[1]))
            for _, _, fn in batch:
                fn()
            batch.clear()

        for item in rig.stream(spec.packet_period_ms, duration_s):
            kind = item[0]
            if kind == "truth":
                # one truth item starts each packet period: everything of the previous period is complete
                flush_batch()
                t_us = int(item[1])
                b_us = t_us + int(round(spec.packet_period_ms * 1000))
                while pending_markers and pending_markers[0]["stamp_ns"] < t0_ns + b_us * 1000:
                    m = pending_markers.pop(0)
                    put(m["stamp_ns"], partial(_write_marker, writer, table, m))
                gt = item[2]
                stamp = t0_ns + t_us * 1000
                if roi_tick.due(t_us):
                    for cam, box in gt.face_boxes.items():
                        put(stamp, partial(writer.write_polygon, f"/{cam}/face_roi", box, stamp_ns=stamp,
                                           frame_id=FRAME_IDS[cam]))
                if truth_tick.due(t_us):
                    text = json.dumps({
                        "stamp_ns": stamp, "performed": [int(a) for a in gt.performed], "phase": gt.phase,
                        "segment": gt.segment,
                        "face_boxes": {k: [round(float(v), 2) for v in b] for k, b in gt.face_boxes.items()}})
                    put(stamp, partial(writer.write_string, "/sim/truth", text, stamp))
                if bar is not None and t_us - last_bar_us >= 100_000:
                    bar(t_us / 1e6)
                    last_bar_us = t_us
            elif kind in _EVENT_CAMS:
                pkt: EventPacket = item[1]
                if pkt.t_start is None:  # EventPacket fills it in
                    raise SessionGenError(f"{kind} packet without t_start")
                host = t0_ns + int(pkt.t_start) * 1000
                put(host, partial(writer.write_time_reference, f"/{kind}/time_reference", host, int(pkt.t_start),
                                  f"sim_{kind}", frame_id=FRAME_IDS[kind]))
                ev = pkt.events
                if len(ev):
                    t_first = int(ev["t"][0])
                    stamp = (t0_us + t_first) * 1000
                    put(stamp, partial(writer.write_events, f"/{kind}/events", ev, stamp_ns=stamp,
                                       frame_id=FRAME_IDS[kind], t_ref_us=t_first))
            elif kind == "davis_aps":
                stamp = t0_ns + int(item[1]) * 1000
                put(stamp, partial(writer.write_image, "/davis/image_raw", item[2], "mono8", stamp_ns=stamp,
                                   frame_id=FRAME_IDS["davis"]))
            elif kind == "davis_imu":
                stamp = t0_ns + int(item[1]) * 1000
                put(stamp, partial(writer.write_imu, "/davis/imu", item[2], item[3], stamp_ns=stamp,
                                   frame_id=IMU_FRAME_ID))
            elif kind == "webcam":
                stamp = t0_ns + int(item[1]) * 1000
                put(stamp, partial(writer.write_image, "/webcam/image_raw", item[2], "bgr8", stamp_ns=stamp,
                                   frame_id=FRAME_IDS["webcam"]))
                put(stamp, partial(writer.write_time_reference, "/webcam/time_reference", stamp, int(item[1]),
                                   "sim_webcam", frame_id=FRAME_IDS["webcam"]))
        flush_batch()
        for m in pending_markers:  # markers at the very end (none with TAIL_S > 0)
            _write_marker(writer, table, m)
        if bar is not None:
            bar(duration_s)
        writer.close()
    except BaseException:
        writer.abort()
        table.close()
        raise
    table.close()
    counts = {c.topic: c.count for c in writer.conns.values()}
    info = SessionInfo(
        subject=spec.subject,
        session=SESSION_NAME,
        lux=float(spec.lux),
        lighting=f"simulated, {spec.lux:g} lux at the face",
        operator="evmicro sim session",
        notes=f"simulated session (subject_seed {spec.subject_seed}, seed {spec.seed}, time_scale "
              f"{spec.time_scale:g}); face_roi and /sim/truth are simulator ground truth",
        calibration_files=["sim"],
        software_version=__version__,
        cameras=list(spec.cameras),
        split="session",
        start_ns=t0_ns,
        end_ns=t0_ns + int(round(duration_s * 1e9)),
        status="complete",
        topics={c.topic: {"type": c.msgtype, "count": c.count} for c in writer.conns.values()},
        files=[{"path": f.path, "segment": "", "messages": f.count} for f in writer.files],
        markers=table.rows,
    )
    _write_yaml_atomic(tmp / SESSION_FILE, _session_yaml(info, spec, duration_s))
    if folder.exists():
        folder.rmdir()  # empty (checked by _prepare_folder)
    os.replace(tmp, folder)
    return GeneratedSession(folder, spec.subject, t0_ns, duration_s, counts, table.rows)


def _write_marker(writer: BagWriter, table: MarkerTable, m: dict) -> None:
    writer.write_marker("/protocol/marker", m)
    table.append(m, int(m["stamp_ns"]), writer.current_file)


def _progress_bar(progress: bool | Callable[[float], None], total_s: float, subject: str):
    """A callable ``update(scene_s)`` or None."""
    if callable(progress):
        return progress
    if not progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=round(total_s, 1), desc=f"{subject}", unit="s", leave=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s scene [{elapsed}<{remaining}]")

    def update(t_s: float) -> None:
        bar.n = round(min(t_s, total_s), 1)
        bar.refresh()
        if t_s >= total_s:
            bar.close()

    return update


def generate_sessions(out_dir: str | os.PathLike, subjects: int, *, cameras: Sequence[str] = CAMERAS,
                      aus: Sequence[int] | None = None, lux: float = 600.0, time_scale: float = 1.0,
                      seed: int = 0, first_subject: int = 1, overwrite: bool = False,
                      progress: bool = False, aps: bool = True, imu: bool = True,
                      compression: str = "") -> list[GeneratedSession]:
    """Sessions of ``subjects`` simulated subjects ``S<first_subject>``...: subject ``i`` is drawn from
    ``subject_seed = 1000 * seed + i``. Complete sessions already in ``out_dir`` are skipped (resumable)."""
    if subjects < 1:
        raise SessionGenError(f"subjects must be >= 1, got {subjects}")
    if first_subject < 0:
        raise SessionGenError(f"first_subject must be >= 0, got {first_subject}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(first_subject, first_subject + subjects):
        spec = SessionSpec(subject=f"S{i:02d}", subject_index=i, subject_seed=1000 * int(seed) + i,
                           cameras=tuple(cameras), aus=None if aus is None else tuple(int(a) for a in aus),
                           lux=lux, time_scale=time_scale, seed=seed, aps=aps, imu=imu,
                           compression=compression)
        out.append(generate_session(out_dir, spec, overwrite=overwrite, progress=progress))
    return out


def file_digests(folder: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative path -> hex digest): for reproducibility checks."""
    import hashlib

    root = Path(folder)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[str(p.relative_to(root))] = h.hexdigest()
    return out



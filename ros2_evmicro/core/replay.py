"""Bag replay and offline evaluation (no rclpy): what the bag player publishes, the replay pipeline computed
straight from the bag, and AU scoring against the protocol markers.

Replay stream
    :func:`replay_stream` yields a bag's messages in bag-time order as :class:`ReplayItem` (raw CDR bytes
    for types the player republishes as they are; decoded events for foreign
    ``event_camera_msgs/msg/EventPacket`` topics, which become the contract's ``/<cam>/events``), cut to
    ``[start_s, end_s)`` after the bag start and filtered to ``topics``. Latched topics (``camera_info``)
    whose last message lies before ``start_s`` are yielded first, so a consumer still learns the sensor
    size. Foreign events keep their sensor clock mapped to ROS time by one constant offset per topic: the
    first message's ``header.stamp`` minus its first event's sensor time.

Offline pipeline (:func:`offline_pipeline`)
    The replay graph (slicer node -> AU node) computed from the bag with the same core code, processing
    the bag's messages in bag-time order exactly as the nodes see them when the player publishes them in
    that order: ``camera_info`` makes the :class:`~.slicer.Slicer`; each ``face_roi`` goes into a
    :class:`RoiHistory` (the slicer node's rule: the newest box stamped at or before the window's end,
    among the boxes received so far, at most 64 kept); each events message is pushed and every window it
    closes is cropped (:func:`~.dataset.crop_counts`, the node's crop) and handed to the AU model at once;
    ``protocol/marker`` messages reset the stream (reset policy ``segment``) or open and close clips (mode
    ``clip``) as the AU node does. Open windows at the end of the bag are not flushed (the node does not
    either). Frames are bit-identical to the slicer node's; scores equal the AU node's up to float
    summation order.

Scoring (:func:`score_segments`)
    For each perform phase of a protocol segment (``segments_from_markers``; takes marked ``redo`` are left
    out), the segment's scores are those of the last AU output stamped inside the perform window (stream:
    the running score at the end of the take, i.e. the clip score with reset policy ``segment``; clip mode:
    the clip's one output), or their mean/max over the window (``aggregate``). Top-1 / top-3 correctness
    uses a stable ranking (ties go to the earlier AU of Table 1). :func:`evaluate_recorded` scores the
    ``evmicro/au`` messages a replay run recorded; :func:`evaluate_offline` scores the offline pipeline.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ros2_evmicro.core.au import AU_CODES, NUM_AUS, au_index
from ros2_evmicro.core.bagio import BagError, BagReader, events_from_cdr, find_bag_dir
from ros2_evmicro.core.roi import RoiHistory
from ros2_evmicro.core.session import segments_from_markers

__all__ = [
    "EVENT_PACKET_TYPE",
    "KNOWN_SIZES",
    "OfflineResult",
    "ReplayConfig",
    "ReplayError",
    "ReplayItem",
    "ReplayReport",
    "RoiHistory",
    "SegmentScore",
    "bag_topics",
    "evaluate_offline",
    "evaluate_recorded",
    "foreign_camera",
    "format_report",
    "offline_pipeline",
    "parse_camera_map",
    "recorded_outputs",
    "replay_stream",
    "score_segments",
]

EVENT_PACKET_TYPE = "event_camera_msgs/msg/EventPacket"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
KNOWN_SIZES: dict[tuple[int, int], str] = {(346, 260): "davis", (1280, 720): "evk4"}
"""Sensor size (width, height) -> camera name, for foreign EventPacket topics without a mapping."""
Box = tuple[float, float, float, float]


class ReplayError(ValueError):
    """A bag cannot be replayed or evaluated (missing topic, bad mapping, no checkpoint, ...)."""


# ---------------------------------------------------------------------------------------------
# replay stream
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayItem:
    """One message to publish. ``raw``: CDR bytes (republished as they are); ``events``: decoded events
    (EVENT_DTYPE, ``t`` in ROS time microseconds) of a foreign EventPacket, published on ``topic`` (the
    contract's ``/<cam>/events``) with ``frame_id``. ``t_ns``: bag time; ``width``/``height``: sensor size
    of foreign events (0 otherwise)."""

    topic: str
    msgtype: str
    t_ns: int
    raw: bytes | None = None
    events: np.ndarray | None = None
    frame_id: str = ""
    width: int = 0
    height: int = 0


def parse_camera_map(items: Iterable[str]) -> dict[str, str]:
    """``['/dvs/events=davis', ...]`` -> ``{'/dvs/events': 'davis'}`` (empty strings ignored)."""
    out = {}
    for it in items:
        it = str(it).strip()
        if not it:
            continue
        if "=" not in it:
            raise ReplayError(f"camera mapping entries are 'TOPIC=CAMERA', got {it!r}")
        topic, cam = (s.strip() for s in it.split("=", 1))
        if not topic or not cam:
            raise ReplayError(f"camera mapping entry {it!r} has an empty topic or camera")
        out["/" + topic.lstrip("/")] = cam
    return out


def bag_topics(path: str | os.PathLike) -> dict[str, str]:
    """{topic: message type} of a bag (session folder or rosbag2 folder)."""
    with BagReader(path) as r:
        return {t: typ for t, (typ, _) in r.topics.items()}


def foreign_camera(topic: str, width: int, height: int, camera_map: dict[str, str]) -> str:
    """Camera name of a foreign EventPacket topic: the mapping, else the known sensor size."""
    if topic in camera_map:
        return camera_map[topic]
    cam = KNOWN_SIZES.get((int(width), int(height)))
    if cam is None:
        raise ReplayError(
            f"EventPacket topic {topic} ({width}x{height}) matches no known camera; map it with "
            f"camera:=['{topic}=davis'] (or evk4)"
        )
    return cam


def replay_stream(
    path: str | os.PathLike,
    *,
    topics: Sequence[str] | None = None,
    start_s: float = 0.0,
    end_s: float = 0.0,
    camera_map: dict[str, str] | None = None,
) -> Iterator[ReplayItem]:
    """The messages a bag player publishes, in bag-time order (see the module docstring).

    ``topics``: the bag topics to replay (None or empty: all; a foreign topic is named by its bag name).
    ``start_s``/``end_s``: offsets (s) from the bag's first message; ``end_s`` 0 = to the end.
    """
    if start_s < 0 or end_s < 0 or (end_s and end_s <= start_s):
        raise ReplayError(f"need 0 <= start_s < end_s (end_s 0 = the end), got start_s={start_s}, end_s={end_s}")
    camera_map = dict(camera_map or {})
    with BagReader(path) as r:
        types = {t: typ for t, (typ, _) in r.topics.items()}
        want = [t for t in (topics or []) if t]
        missing = [t for t in want if t not in types]
        if missing:
            raise ReplayError(f"bag {r.path} has no topic {missing}; it has {sorted(types)}")
        chosen = want or sorted(types)
        foreign = [t for t in chosen if types[t] == EVENT_PACKET_TYPE]
        plain = [t for t in chosen if types[t] != EVENT_PACKET_TYPE]
        t0 = r.start_ns
        lo = t0 + int(round(start_s * 1e9))
        hi = t0 + int(round(end_s * 1e9)) if end_s else None
        bag_path = r.path
        # latched state before the start offset
        if start_s > 0:
            latched = [t for t in plain if types[t] == CAMERA_INFO_TYPE]
            last: dict[str, Any] = {}
            for m in r.raw(latched, None, lo):
                last[m.topic] = m
            for m in sorted(last.values(), key=lambda m: m.t_ns):
                yield ReplayItem(m.topic, m.msgtype, lo, raw=bytes(m.raw))
        plain_iter = (
            ReplayItem(m.topic, m.msgtype, m.t_ns, raw=bytes(m.raw)) for m in r.raw(plain, lo, hi)
        ) if plain else iter(())
        if not foreign:
            yield from plain_iter
            return
        merged = heapq.merge(plain_iter, _foreign_items(bag_path, foreign, camera_map, lo, hi),
                             key=lambda it: it.t_ns)
        yield from merged


def _foreign_items(path: Path, topics: list[str], camera_map: dict[str, str], lo: int,
                   hi: int | None) -> Iterator[ReplayItem]:
    """Decoded EventPacket messages of ``topics`` as ``/<cam>/events`` items (constant offset per topic)."""
    from ros2_evmicro.core.codecs import CodecError, read_eventpacket_bag

    offsets: dict[str, int] = {}
    cams: dict[str, str] = {}
    try:
        for pk in read_eventpacket_bag(path):
            topic = pk.info.topic
            if topic not in topics:
                continue
            ev = pk.events
            if topic not in cams:
                cams[topic] = foreign_camera(topic, pk.info.width, pk.info.height, camera_map)
            if len(ev) and topic not in offsets:
                offsets[topic] = pk.header_stamp_ns // 1000 - int(ev["t"][0])
            if pk.bag_time_ns < lo or (hi is not None and pk.bag_time_ns >= hi) or not len(ev):
                continue
            ev = ev.copy()
            ev["t"] += offsets[topic]
            yield ReplayItem(f"/{cams[topic]}/events", "sensor_msgs/msg/PointCloud2", pk.bag_time_ns,
                             events=ev, frame_id=pk.info.frame_id or f"{cams[topic]}_optical",
                             width=pk.info.width, height=pk.info.height)
    except CodecError as err:
        raise ReplayError(f"cannot decode the EventPacket topics of {path}: {err}") from None


# ---------------------------------------------------------------------------------------------
# offline pipeline
# ---------------------------------------------------------------------------------------------


def _spec_default(node: str, name: str) -> Any:
    from ros2_evmicro.specs import get_spec

    return get_spec(node)[name].default


@dataclass
class ReplayConfig:
    """Parameters of the offline pipeline: the slicer node's and the AU node's (defaults from their
    specs, :mod:`ros2_evmicro.specs.slicer` and :mod:`ros2_evmicro.specs.au`)."""

    camera: str = "davis"
    window_ms: float = field(default_factory=lambda: _spec_default("slicer", "window_ms"))
    late_tolerance_ms: float = field(default_factory=lambda: _spec_default("slicer", "late_tolerance_ms"))
    width: int = 0
    height: int = 0
    max_empty_windows: int = field(default_factory=lambda: _spec_default("slicer", "max_empty_windows"))
    roi_mode: str = "topic"
    roi_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    center_box_fraction: float = field(default_factory=lambda: _spec_default("slicer", "center_box_fraction"))
    roi_deadband: float = field(default_factory=lambda: _spec_default("slicer", "roi_deadband"))
    crop_size_px: int = field(default_factory=lambda: _spec_default("slicer", "crop_size_px"))
    crop_margin: float = field(default_factory=lambda: _spec_default("slicer", "crop_margin"))
    normalization: str = field(default_factory=lambda: _spec_default("slicer", "normalization"))
    clip_value: float = field(default_factory=lambda: _spec_default("slicer", "clip_value"))
    on_invalid: str = field(default_factory=lambda: _spec_default("slicer", "on_invalid"))
    mode: str = field(default_factory=lambda: _spec_default("au", "mode"))
    reset_policy: str = field(default_factory=lambda: _spec_default("au", "reset_policy"))
    window_frames: int = field(default_factory=lambda: _spec_default("au", "window_frames"))
    hop_frames: int = field(default_factory=lambda: _spec_default("au", "hop_frames"))
    clip_phase: str = field(default_factory=lambda: _spec_default("au", "clip_phase"))
    roi_topic: str = ""  # default /<camera>/face_roi
    marker_topic: str = "/protocol/marker"

    def __post_init__(self) -> None:
        from ros2_evmicro.specs.au import SPEC as AU_SPEC
        from ros2_evmicro.specs.slicer import SPEC as SLICER_SPEC

        sl = {k: getattr(self, k) for k in ("window_ms", "late_tolerance_ms", "width", "height",
                                              "max_empty_windows", "roi_mode", "center_box_fraction",
                                              "roi_deadband", "crop_size_px", "crop_margin", "normalization",
                                              "clip_value", "on_invalid")}
        au = {k: getattr(self, k) for k in ("mode", "reset_policy", "window_frames", "hop_frames", "clip_phase",
                                              "window_ms", "normalization")}
        try:
            SLICER_SPEC.values(sl)
            AU_SPEC.values(au)
        except ValueError as err:
            raise ReplayError(f"bad replay configuration: {err}") from None
        if self.camera not in ("davis", "evk4"):
            raise ReplayError(f"camera must be davis or evk4, got {self.camera!r}")

    @property
    def events_topic(self) -> str:
        return f"/{self.camera}/events"

    @property
    def info_topic(self) -> str:
        return f"/{self.camera}/camera_info"

    @property
    def face_topic(self) -> str:
        return self.roi_topic or f"/{self.camera}/face_roi"


@dataclass
class OfflineResult:
    """Frames and AU outputs of the offline pipeline, in the order the nodes would publish them.

    ``frame_stamps_ns`` (N,) int64 window starts; ``frames`` (N, 2, S, S) float32; ``roi_sources`` the crop's
    source per frame ('topic', 'center_fallback', ...); ``score_stamps_ns`` (M,) and ``scores`` (M, 21)
    float32 (empty without a model); ``markers`` in bag order; ``report`` the segment scores (or None)."""

    frame_stamps_ns: np.ndarray
    frames: np.ndarray
    roi_sources: list[str]
    score_stamps_ns: np.ndarray
    scores: np.ndarray
    markers: list[dict]
    report: ReplayReport | None = None


def _center_box(width: int, height: int, fraction: float) -> Box:
    side = fraction * min(width, height)
    cx, cy = width / 2.0, height / 2.0
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


class _AUState:
    """The AU node's behaviour (stream with reset policy, or clip), fed frames and markers in order."""

    def __init__(self, model, cfg: ReplayConfig, device: str) -> None:
        from ros2_evmicro.core.models.runtime import AUStreamer

        self.model = model
        self.cfg = cfg
        self.streamer = AUStreamer(model, device, reset_policy=cfg.reset_policy, window_frames=cfg.window_frames,
                                   hop_frames=min(cfg.hop_frames, cfg.window_frames))
        self.clip: list[np.ndarray] = []
        self.clip_stamp = 0
        self.collecting = False
        self.out: list[tuple[int, np.ndarray]] = []

    def marker(self, m: dict) -> None:
        phase = m.get("phase", "")
        if self.cfg.mode == "stream":
            if self.cfg.reset_policy == "segment" and phase == self.cfg.clip_phase:
                self.streamer.reset()
            return
        if phase == self.cfg.clip_phase:
            self.clip, self.collecting = [], True
        elif self.collecting:
            self.collecting = False
            if self.clip:
                from ros2_evmicro.core.models.runtime import classify_clip

                self.out.append((self.clip_stamp, classify_clip(self.model, np.stack(self.clip))))
                self.clip = []

    def frame(self, stamp_ns: int, frame: np.ndarray) -> None:
        if self.cfg.mode == "clip":
            if self.collecting:
                self.clip.append(frame)
                self.clip_stamp = stamp_ns
            return
        self.out.append((stamp_ns, self.streamer.step(frame)))


def offline_pipeline(
    bag: str | os.PathLike,
    cfg: ReplayConfig | None = None,
    *,
    model=None,
    device: str = "cpu",
    keep_frames: bool = True,
) -> OfflineResult:
    """Frames (and AU outputs when ``model`` is given) of the replay graph, computed from the bag (see the
    module docstring). ``model``: an AUSNN (or anything :class:`~.models.runtime.AUStreamer` takes)."""
    from ros2_evmicro.core.dataset import crop_counts
    from ros2_evmicro.core.face import FaceError, normalize_frames, square_box
    from ros2_evmicro.core.slicer import Slicer

    cfg = cfg or ReplayConfig()
    window_us = max(1, int(round(cfg.window_ms * 1000)))
    late_us = int(round(cfg.late_tolerance_ms * 1000))
    au = _AUState(model, cfg, device) if model is not None else None
    slicer: Slicer | None = None
    size_from_params = bool(cfg.width and cfg.height)
    rois = RoiHistory(deadband=cfg.roi_deadband)
    stamps: list[int] = []
    frames: list[np.ndarray] = []
    sources: list[str] = []
    markers: list[dict] = []

    def make(w: int, h: int) -> Slicer:
        return Slicer(w, h, window_us, late_us, dtype=np.uint16, on_invalid=cfg.on_invalid,
                      max_empty_windows=cfg.max_empty_windows)

    if size_from_params:
        slicer = make(cfg.width, cfg.height)
    with BagReader(bag) as r:
        have = set(r.topics)
        if cfg.events_topic not in have:
            raise ReplayError(f"bag {r.path} has no {cfg.events_topic}; it has {sorted(have)}")
        wanted = [t for t in (cfg.events_topic, cfg.info_topic, cfg.face_topic, cfg.marker_topic) if t in have]
        for topic, _t, msg in r.messages(wanted):
            if topic == cfg.info_topic:
                w, h = int(msg.width), int(msg.height)
                if w > 0 and h > 0 and not size_from_params and (
                        slicer is None or (slicer.size.width, slicer.size.height) != (w, h)):
                    slicer = make(w, h)
            elif topic == cfg.face_topic:
                pts = msg.polygon.points
                if len(pts) < 3:  # the node drops such a message (WireError)
                    continue
                xs, ys = [float(p.x) for p in pts], [float(p.y) for p in pts]
                box = (min(xs), min(ys), max(xs), max(ys))
                try:
                    square_box(box, 0.0)  # the node drops an empty or non-finite box
                except FaceError:
                    continue
                rois.add(int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec), box)
            elif topic == cfg.marker_topic:
                m = json.loads(msg.data)
                markers.append(m)
                if au is not None and isinstance(m, dict):
                    au.marker(m)
            elif slicer is not None:
                for f in slicer.push(events_from_cdr(msg)):
                    box, margin, source = _roi_for(f, cfg, rois, slicer.size.width, slicer.size.height)
                    crop = crop_counts(f.counts, box, cfg.crop_size_px, margin)
                    if cfg.normalization != "none":
                        crop = normalize_frames(crop, cfg.normalization, clip_value=cfg.clip_value)
                    crop = np.ascontiguousarray(crop, dtype=np.float32)
                    stamp = f.t_start_us * 1000
                    if keep_frames:
                        frames.append(crop)
                    stamps.append(stamp)
                    sources.append(source)
                    if au is not None:
                        au.frame(stamp, crop)
    s = cfg.crop_size_px
    outs = au.out if au is not None else []
    return OfflineResult(
        np.asarray(stamps, np.int64),
        np.stack(frames) if frames else np.zeros((0, 2, s, s), np.float32),
        sources,
        np.asarray([o[0] for o in outs], np.int64),
        np.stack([o[1] for o in outs]).astype(np.float32) if outs else np.zeros((0, NUM_AUS), np.float32),
        markers,
    )


def _roi_for(frame, cfg: ReplayConfig, rois: RoiHistory, w: int, h: int) -> tuple[Box, float, str]:
    """The slicer node's ``roi_for``: (box, margin, source)."""
    if cfg.roi_mode == "full":
        return (0.0, 0.0, float(w), float(h)), 0.0, "full"
    if cfg.roi_mode == "fixed":
        return cast(Box, tuple(float(v) for v in cfg.roi_box)), cfg.crop_margin, "fixed"
    if cfg.roi_mode == "topic":
        hit = rois.at(frame.t_end_us * 1000)
        if hit is not None:
            return hit[0], cfg.crop_margin, "topic"
        return _center_box(w, h, cfg.center_box_fraction), cfg.crop_margin, "center_fallback"
    return _center_box(w, h, cfg.center_box_fraction), cfg.crop_margin, "center"


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


@dataclass
class SegmentScore:
    """One scored perform window: the AU asked for, the predicted ranking's head, and correctness."""

    segment: str
    au: int
    trial: int
    perform_start_ns: int
    perform_end_ns: int
    outputs: int  # AU outputs stamped inside the perform window
    predicted: str  # top-1 AU code ('' when no output)
    top3: list[str]
    true_score: float
    correct_top1: bool
    correct_top3: bool


@dataclass
class ReplayReport:
    """Per-segment results and the totals (accuracy = top-1 over scored segments)."""

    source: str
    aggregate: str
    segments: list[SegmentScore]
    unscored: list[str]  # perform windows without any AU output

    @property
    def scored(self) -> int:
        return len(self.segments)

    @property
    def accuracy(self) -> float:
        return float(np.mean([s.correct_top1 for s in self.segments])) if self.segments else float("nan")

    @property
    def top3_accuracy(self) -> float:
        return float(np.mean([s.correct_top3 for s in self.segments])) if self.segments else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "aggregate": self.aggregate, "scored": self.scored,
                "accuracy": self.accuracy, "top3_accuracy": self.top3_accuracy,
                "unscored": list(self.unscored), "segments": [asdict(s) for s in self.segments]}


def _ranking(scores: np.ndarray) -> np.ndarray:
    """AU indices from the highest score down; ties keep Table 1 order (stable)."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


def score_segments(
    stamps_ns: np.ndarray,
    scores: np.ndarray,
    markers: list[dict],
    *,
    phase: str = "perform",
    aggregate: str = "last",
    source: str = "",
) -> ReplayReport:
    """Score AU outputs (``stamps_ns`` (M,), ``scores`` (M, 21)) against the markers' perform windows."""
    if aggregate not in ("last", "mean", "max"):
        raise ReplayError(f"aggregate must be 'last', 'mean' or 'max', got {aggregate!r}")
    stamps = np.asarray(stamps_ns, np.int64).reshape(-1)
    sc = np.asarray(scores, np.float64).reshape(-1, NUM_AUS) if len(stamps) else np.zeros((0, NUM_AUS))
    if len(sc) != len(stamps):
        raise ReplayError(f"{len(stamps)} stamps but {len(sc)} score rows")
    order = np.argsort(stamps, kind="stable")
    stamps, sc = stamps[order], sc[order]
    rows: list[SegmentScore] = []
    unscored: list[str] = []
    for seg in segments_from_markers(markers):
        if seg.status == "redo":
            continue
        win = _phase_window(markers, seg.name, phase)
        if win is None:
            continue
        i0, i1 = np.searchsorted(stamps, win[0], "left"), np.searchsorted(stamps, win[1], "left")
        if i1 <= i0:
            unscored.append(seg.name)
            continue
        part = sc[i0:i1]
        s = part[-1] if aggregate == "last" else (part.mean(0) if aggregate == "mean" else part.max(0))
        rank = _ranking(s)
        k = au_index(seg.au)
        rows.append(SegmentScore(seg.name, seg.au, seg.trial, int(win[0]), int(win[1]), int(i1 - i0),
                                 AU_CODES[int(rank[0])], [AU_CODES[int(j)] for j in rank[:3]], float(s[k]),
                                 bool(rank[0] == k), bool(k in rank[:3])))
    return ReplayReport(source, aggregate, rows, unscored)


def _phase_window(markers: list[dict], segment: str, phase: str) -> tuple[int, int] | None:
    """(start, end) ns of the last ``phase`` of ``segment``: from its marker to the next marker."""
    ms = sorted((m for m in markers if m.get("phase")), key=lambda m: int(m["stamp_ns"]))
    win = None
    for i, m in enumerate(ms):
        if m.get("segment") == segment and m["phase"] == phase:
            end = int(ms[i + 1]["stamp_ns"]) if i + 1 < len(ms) else int(m["stamp_ns"])
            win = (int(m["stamp_ns"]), end)
    return win


def recorded_outputs(path: str | os.PathLike, au_topic: str = "/evmicro/au",
                     frames_topic: str | None = None) -> dict[str, Any]:
    """What a replay run recorded: AU outputs (stamps, scores in Table 1 order), markers, and the frames of
    ``frames_topic`` when given (stamps, (N, 2, S, S) float32)."""
    from ros2_evmicro.core.bagio import image_from_cdr

    folder = Path(path)
    try:
        bag_dir = find_bag_dir(folder)
    except BagError:
        subs = sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        if len(subs) != 1:
            raise
        bag_dir = find_bag_dir(subs[0])
    out: dict[str, Any] = {"bag": str(bag_dir)}
    with BagReader(bag_dir) as r:
        if au_topic not in r.topics:
            raise ReplayError(f"{bag_dir} holds no {au_topic}; it has {sorted(r.topics)}")
        st, sc = [], []
        for _, _, m in r.messages([au_topic]):
            names = list(m.name)
            pos = np.asarray(m.position, np.float64)
            if names != list(AU_CODES):
                idx = {n: i for i, n in enumerate(names)}
                if any(c not in idx for c in AU_CODES):
                    raise ReplayError(f"{au_topic} message names {names} are not the 21 AU codes")
                pos = pos[[idx[c] for c in AU_CODES]]
            st.append(int(m.header.stamp.sec) * 10**9 + int(m.header.stamp.nanosec))
            sc.append(pos.astype(np.float32))
        out["score_stamps_ns"] = np.asarray(st, np.int64)
        out["scores"] = np.stack(sc) if sc else np.zeros((0, NUM_AUS), np.float32)
        out["markers"] = r.markers()
        if frames_topic:
            fs, fr = [], []
            for _, _, m in r.messages([frames_topic]):
                img = image_from_cdr(m)  # (H, W, 2) 32FC2
                fs.append(int(m.header.stamp.sec) * 10**9 + int(m.header.stamp.nanosec))
                fr.append(np.ascontiguousarray(np.asarray(img, np.float32).transpose(2, 0, 1)))
            out["frame_stamps_ns"] = np.asarray(fs, np.int64)
            out["frames"] = np.stack(fr) if fr else np.zeros((0, 2, 0, 0), np.float32)
    return out


def evaluate_recorded(outputs: str | os.PathLike, *, markers_from: str | os.PathLike | None = None,
                      phase: str = "perform", aggregate: str = "last") -> ReplayReport:
    """Score the ``evmicro/au`` outputs a replay run recorded (``evmicro run replay out_dir:=DIR``) against
    the markers it recorded, or those of the session ``markers_from``."""
    rec = recorded_outputs(outputs)
    markers = rec["markers"]
    if markers_from is not None:
        with BagReader(markers_from) as r:
            markers = r.markers()
    if not markers:
        raise ReplayError(f"no protocol markers in {rec['bag']} (give the session with markers_from)")
    return score_segments(rec["score_stamps_ns"], rec["scores"], markers, phase=phase, aggregate=aggregate,
                          source=f"recorded outputs {rec['bag']}")


def evaluate_offline(bag: str | os.PathLike, checkpoint: str | os.PathLike, cfg: ReplayConfig | None = None,
                     *, device: str = "cpu", phase: str = "perform", aggregate: str = "last") -> OfflineResult:
    """Run the offline pipeline with the AU checkpoint (its card checked against ``cfg`` as the AU node
    does) and score it; the result's ``report`` holds the segment scores."""
    from ros2_evmicro.core.models.checkpoint import CheckpointError, load_checkpoint
    from ros2_evmicro.paths import resolve_model

    cfg = cfg or ReplayConfig()
    norm = {"none": "counts"}.get(cfg.normalization, cfg.normalization)
    try:
        path = resolve_model(str(checkpoint))
        model, _card = load_checkpoint(path, expect={"sensor": cfg.camera, "window_ms": float(cfg.window_ms),
                                                      "normalisation": norm, "in_channels": 2}, device=device)
    except (FileNotFoundError, CheckpointError) as err:
        raise ReplayError(f"cannot load the AU checkpoint {checkpoint}: {err}") from None
    res = offline_pipeline(bag, cfg, model=model, device=device, keep_frames=False)
    res.report = score_segments(res.score_stamps_ns, res.scores, res.markers, phase=phase, aggregate=aggregate,
                                source=f"offline {Path(bag)} with {Path(str(checkpoint)).name}")
    return res


def format_report(rep: ReplayReport) -> str:
    """Human-readable table of a :class:`ReplayReport`."""
    lines = [f"{rep.source}: {rep.scored} perform windows scored ({rep.aggregate} output), "
             f"top-1 {rep.accuracy:.3f}, top-3 {rep.top3_accuracy:.3f}"]
    lines.append(f"  {'segment':<18} {'true':>5} {'pred':>5} {'top-3':<17} {'score':>6} {'outputs':>7}")
    for s in rep.segments:
        mark = "ok" if s.correct_top1 else ("top3" if s.correct_top3 else "")
        lines.append(f"  {s.segment:<18} {'AU' + str(s.au):>5} {s.predicted:>5} {','.join(s.top3):<17} "
                     f"{s.true_score:6.3f} {s.outputs:>7} {mark}")
    if rep.unscored:
        lines.append(f"  no AU output inside: {', '.join(rep.unscored)}")
    return "\n".join(lines)

"""The synthetic rig: one simulated subject seen by DAVIS346 (events, APS, IMU), EVK4 and a webcam.

The three cameras sit side by side on one bar about 80 cm from the face (see
:func:`.sensors.default_geometry`); each renders the face at its own scale and place, over its own view
of a static room (a wall 2.4 m away, the subject's neck and shoulders). :meth:`SimRig.stream` walks the
scene clock in packets and yields time-ordered items::

    ('truth', t_us, GroundTruth)          AU activations, performed AUs, per-camera face boxes
    ('davis', EventPacket)                DAVIS346 events of [t_start, t_end)
    ('davis_aps', t_us, mono8)            APS frame, stamped at the start of its exposure
    ('davis_imu', t_us, accel, gyro)      IMU sample (m/s^2, rad/s)
    ('evk4', EventPacket)                 EVK4 events
    ('webcam', t_us, bgr8)                webcam frame, stamped at the start of its exposure

Scene time starts at 0 us. Everything is a function of ``(subject_seed, seed, lux, timeline, options)``:
the same arguments give the same bytes.

:func:`render_clip` renders one labelled clip (one take of one AU) in memory for dataset generation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ros2_evmicro.core.au import AUS, au_index
from ros2_evmicro.core.events import EVENT_DTYPE, EventPacket, concat_events
from ros2_evmicro.core.sim.face import UNIT_M, FaceRenderer, SimError, Subject, subject_from_seed
from ros2_evmicro.core.sim.sensors import (
    DAVIS346_PARAMS,
    EVK4_PARAMS,
    ApsParams,
    ApsSensor,
    CameraGeometry,
    EventSensor,
    EventSensorParams,
    ImuModel,
    WebcamParams,
    WebcamSensor,
    default_geometry,
    homography,
)
from ros2_evmicro.core.sim.timeline import (
    Action,
    Background,
    Protocol,
    Timeline,
    clip_timeline,
    protocol_timeline,
)

__all__ = [
    "CAMERAS",
    "Clip",
    "GroundTruth",
    "SimRig",
    "face_region",
    "head_position",
    "protocol_timeline",
    "render_clip",
]

CAMERAS: tuple[str, ...] = ("davis", "evk4", "webcam")
EVENT_PARAMS: dict[str, EventSensorParams] = {"davis": DAVIS346_PARAMS, "evk4": EVK4_PARAMS}
DEFAULT_RENDER_HZ: dict[str, float] = {"davis": 250.0, "evk4": 300.0}
_ORDER = {"truth": 0, "davis": 1, "davis_aps": 2, "davis_imu": 3, "evk4": 4, "webcam": 5}


@dataclass
class GroundTruth:
    """What the face does at ``t_us``: AU activations (21, float32, with co-activations), the performed
    (labelled) AU numbers, the full control vector, the face box (x0, y0, x1, y1) per camera, and with a
    protocol timeline the current phase and segment name (else empty strings)."""

    t_us: int
    activations: np.ndarray
    performed: tuple[int, ...]
    controls: np.ndarray
    face_boxes: dict[str, tuple[float, float, float, float]]
    phase: str = ""
    segment: str = ""


# ------------------------------------------------------------------------------------------------- scene
@dataclass(frozen=True)
class _Room:
    wall_depth_m: float
    wall: tuple[float, float, float]
    rects: tuple[tuple[float, float, float, float, tuple[float, float, float]], ...]


def _room(seed: int) -> _Room:
    rng = np.random.default_rng([int(seed), 0x2003])
    base = rng.uniform(0.3, 0.65)
    wall = (base * rng.uniform(0.9, 1.05), base * rng.uniform(0.95, 1.05), base * rng.uniform(0.95, 1.1))
    rects = []
    # a door or window frame edge, a poster, a horizontal rail
    x = rng.uniform(-0.9, -0.4) * rng.choice([-1, 1])
    rects.append((x, -1.5, x + 0.9, 2.0, tuple(rng.uniform(0.15, 0.8, 3))))
    px, py = rng.uniform(-0.8, 0.8), rng.uniform(-0.7, -0.2)
    rects.append((px, py, px + rng.uniform(0.3, 0.6), py + rng.uniform(0.3, 0.6), tuple(rng.uniform(0.1, 0.9, 3))))
    ry = rng.uniform(0.1, 0.5)
    rects.append((-3.0, ry, 3.0, ry + 0.04, tuple(rng.uniform(0.1, 0.9, 3))))
    return _Room(float(rng.uniform(2.0, 3.0)), wall, tuple(rects))


def _background(geom: CameraGeometry, room: _Room, subject: Subject, head_m: tuple[float, float, float],
                color: bool) -> np.ndarray:
    """Static radiance of the room and the subject's neck and shoulders as seen by ``geom`` (float32)."""
    h, w = geom.height, geom.width
    img: np.ndarray = np.empty((h, w, 3), np.float32)
    grad = np.linspace(1.08, 0.85, h, dtype=np.float32)[:, None, None]
    img[:] = np.asarray(room.wall, np.float32) * grad
    zw = room.wall_depth_m
    for x0, y0, x1, y1, col in room.rects:
        u0, v0 = geom.project((x0, y0, zw))
        u1, v1 = geom.project((x1, y1, zw))
        cv2.rectangle(img, (int(round(u0)), int(round(v0))), (int(round(u1)), int(round(v1))),
                      tuple(float(c) for c in col), -1)
    sigma = max(0.8, geom.fx / 600.0)
    img = cv2.GaussianBlur(img, (0, 0), sigma)  # out of focus
    # neck and shoulders in face units around the head centre, at the head's depth + 5 cm
    hx, hy, hz = head_m
    z = hz + 0.05

    def px(pts):
        out = [geom.project((hx + x * UNIT_M, hy + y * UNIT_M, z)) for x, y in pts]
        return (np.round(np.array(out) * 16)).astype(np.int32)

    body = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    shoulders = [(-0.7, 2.0), (0.7, 2.0), (3.0, 2.6), (3.5, 6.0), (-3.5, 6.0), (-3.0, 2.6)]
    neck = [(-0.6, 0.6), (0.6, 0.6), (0.68, 2.2), (-0.68, 2.2)]
    shirt = tuple(int(c * 255) for c in subject.shirt)
    skin = tuple(int(c * 255 * 0.62) for c in subject.skin)
    for poly, fill in ((shoulders, shirt), (neck, skin)):
        p = px(poly)
        cv2.fillPoly(body, [p], fill, cv2.LINE_AA, 4)
        cv2.fillPoly(mask, [p], 255, cv2.LINE_AA, 4)
    a = mask.astype(np.float32)[..., None] / 255.0
    img = img * (1 - a) + body.astype(np.float32) / 255.0 * a
    if not color:
        img = img @ np.array([0.114, 0.587, 0.299], np.float32)
        img = img[..., None]
    return np.ascontiguousarray(img, dtype=np.float32)


class _CameraView:
    """One camera's renderer: the face at the camera's scale, its crop and its background."""

    def __init__(self, geom: CameraGeometry, subject: Subject, room: _Room, head_m, color: bool) -> None:
        self.geom = geom
        depth = head_m[2] - geom.position_m[2]
        self.scale = geom.px_per_m(head_m[2]) * UNIT_M
        self.renderer = FaceRenderer(subject, self.scale, color=color)
        self.center = geom.project(head_m)
        left, up, right, down = self.renderer.extent_px()
        x0 = max(0, int(math.floor(self.center[0] - left)))
        y0 = max(0, int(math.floor(self.center[1] - up)))
        x1 = min(geom.width, int(math.ceil(self.center[0] + right)))
        y1 = min(geom.height, int(math.ceil(self.center[1] + down)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            raise SimError(f"the face (centre {self.center}, depth {depth:.2f} m) is outside camera {geom.name}")
        self.origin = (x0, y0)
        self.region = (x0, y0, x1 - x0, y1 - y0)
        self.background = _background(geom, room, subject, head_m, color)
        self.bg_crop = np.ascontiguousarray(self.background[y0:y1, x0:x1])

    def render(self, c: np.ndarray) -> np.ndarray:
        return self.renderer.render(c, self.center, self.bg_crop, self.origin)

    def face_box(self, c: np.ndarray) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.renderer.face_box(c, self.center)
        g = self.geom
        return (max(0.0, x0), max(0.0, y0), min(float(g.width), x1), min(float(g.height), y1))


def head_position(subject_seed: int, seed: int = 0, distance_m: float = 0.8) -> tuple[float, float, float]:
    """Centre of the subject's head (x, y, z metres, rig frame) for ``(subject_seed, seed)``."""
    rng = np.random.default_rng([int(subject_seed), int(seed), 0x4EAD])
    return (float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.01, 0.025)),
            float(distance_m * rng.uniform(0.96, 1.04)))


def face_region(camera: str, subject_seed: int, seed: int = 0, pad: float = 0.1,
                geometry: dict[str, CameraGeometry] | None = None) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` of ``camera`` that holds the face and its motion (the renderer's
    reach), widened by ``pad`` of its size on each side and clipped to the sensor."""
    g = (geometry or default_geometry())[camera]
    head = head_position(subject_seed, seed)
    subject = subject_from_seed(subject_seed)
    rend = FaceRenderer(subject, g.px_per_m(head[2]) * UNIT_M, color=camera == "webcam")
    cx, cy = g.project(head)
    left, up, right, down = rend.extent_px()
    px, py = pad * (left + right), pad * (up + down)
    x0, y0 = max(0, int(math.floor(cx - left - px))), max(0, int(math.floor(cy - up - py)))
    x1, y1 = min(g.width, int(math.ceil(cx + right + px))), min(g.height, int(math.ceil(cy + down + py)))
    return x0, y0, x1, y1


# --------------------------------------------------------------------------------------------------- rig
class SimRig:
    """A simulated subject in front of the camera rig (see the module docstring).

    ``timeline`` is a :class:`Timeline`, a :class:`Protocol`, or a list of
    ``(t_start_s, au, intensity, duration_s)`` (background movements added). ``render_hz`` overrides the
    internal render rate per event camera (events are interpolated between renders).
    """

    def __init__(
        self,
        subject_seed: int,
        *,
        lux: float = 600.0,
        cameras: Sequence[str] = CAMERAS,
        timeline: Timeline | Protocol | Sequence | None = None,
        seed: int = 0,
        background: Background | None = None,
        aps: bool = True,
        aps_params: ApsParams = ApsParams(),
        imu: bool = True,
        webcam_params: WebcamParams = WebcamParams(),
        render_hz: dict[str, float] | None = None,
        glasses: bool | None = None,
        distance_m: float = 0.8,
        geometry: dict[str, CameraGeometry] | None = None,
    ) -> None:
        cams = tuple(cameras)
        unknown = [c for c in cams if c not in CAMERAS]
        if unknown or not cams or len(set(cams)) != len(cams):
            raise SimError(f"cameras must be distinct names from {CAMERAS}, got {cams}")
        if not (0.3 <= distance_m <= 3.0):
            raise SimError(f"distance must be within 0.3..3 m, got {distance_m}")
        self.cameras = cams
        self.lux = float(lux)
        self.seed = int(seed)
        self.subject = subject_from_seed(subject_seed, glasses=glasses)
        self.protocol: Protocol | None = None
        if isinstance(timeline, Protocol):
            self.protocol = timeline
            self.timeline = timeline.timeline
        elif isinstance(timeline, Timeline):
            self.timeline = timeline
        else:
            self.timeline = Timeline(timeline or (), background=background, seed=self.seed)
        self.head_m = head_position(subject_seed, self.seed, distance_m)
        self.geometry = dict(geometry or default_geometry())
        room = _room(subject_seed)
        self.views: dict[str, _CameraView] = {
            c: _CameraView(self.geometry[c], self.subject, room, self.head_m, color=(c == "webcam")) for c in cams
        }
        seeds = {c: [int(subject_seed), self.seed, i] for i, c in enumerate(CAMERAS)}
        self.render_hz = dict(DEFAULT_RENDER_HZ)
        self.render_hz.update(render_hz or {})
        for c, hz in self.render_hz.items():
            if not (20.0 <= hz <= 20000.0):
                raise SimError(f"render rate of {c} must be within 20..20000 Hz, got {hz}")
        self.sensors: dict[str, EventSensor] = {
            c: EventSensor(EVENT_PARAMS[c], self.views[c].region, lux=self.lux,
                           seed=int(np.random.SeedSequence(seeds[c]).generate_state(1)[0]))
            for c in cams if c in EVENT_PARAMS
        }
        self.aps: ApsSensor | None = None
        self.imu: ImuModel | None = None
        if "davis" in cams and aps:
            g = self.geometry["davis"]
            self.aps = ApsSensor(g.width, g.height, aps_params, lux=self.lux, seed=seeds["davis"][0] * 7919 + self.seed)
            self.aps.set_background(self.views["davis"].background)
        if "davis" in cams and imu:
            self.imu = ImuModel(seed=int(subject_seed) * 7919 + self.seed)
        self.webcam: WebcamSensor | None = None
        if "webcam" in cams:
            g = self.geometry["webcam"]
            if (webcam_params.width, webcam_params.height) != (g.width, g.height):
                raise SimError(f"webcam params size {webcam_params.width}x{webcam_params.height} differs from "
                               f"its geometry {g.width}x{g.height}")
            self.webcam = WebcamSensor(webcam_params, lux=self.lux, seed=int(subject_seed) * 7919 + self.seed)
            self.webcam.set_background(self.views["webcam"].background)

    # ------------------------------------------------------------------------------------ geometry
    @property
    def duration_s(self) -> float:
        """Default length of a stream: the protocol, or the timeline's last action plus 0.3 s."""
        if self.protocol is not None:
            return self.protocol.duration_s
        return self.timeline.duration_s + 0.3 if self.timeline.actions else 1.0

    def sensor_size(self, camera: str) -> tuple[int, int]:
        """(width, height) of ``camera``."""
        g = self._geom(camera)
        return g.width, g.height

    def _geom(self, camera: str) -> CameraGeometry:
        if camera not in self.geometry:
            raise SimError(f"unknown camera {camera!r}; known: {tuple(self.geometry)}")
        return self.geometry[camera]

    def homography(self, src: str, dst: str) -> np.ndarray:
        """3x3 homography from ``src`` pixels to ``dst`` pixels on the face plane."""
        return homography(self._geom(src), self._geom(dst), self.head_m[2])

    def face_box(self, camera: str, t_s: float) -> tuple[float, float, float, float]:
        """Ground-truth face box (x0, y0, x1, y1) of ``camera`` at scene time ``t_s``."""
        if camera not in self.views:
            raise SimError(f"camera {camera!r} is not part of this rig {self.cameras}")
        return self.views[camera].face_box(self.timeline.controls(float(t_s)))

    def truth(self, t_us: int) -> GroundTruth:
        """Ground truth at ``t_us``."""
        c = self.timeline.controls(t_us * 1e-6)
        seg = self.protocol.segment_at(t_us * 1e-6) if self.protocol is not None else None
        return GroundTruth(int(t_us), c[: len(AUS)].copy(), self.timeline.performed_at(t_us * 1e-6), c,
                           {k: v.face_box(c) for k, v in self.views.items()},
                           seg.phase if seg else "", seg.segment if seg else "")

    def render(self, camera: str, t_s: float) -> np.ndarray:
        """Radiance crop of ``camera`` at ``t_s`` (float32 (h, w, channels)); its origin is
        ``self.views[camera].origin``."""
        if camera not in self.views:
            raise SimError(f"camera {camera!r} is not part of this rig {self.cameras}")
        return self.views[camera].render(self.timeline.controls(float(t_s))).copy()

    def _exposed(self, view: _CameraView, t0_us: float, exposure_us: float, n_sub: int) -> np.ndarray:
        ts = (t0_us + (np.arange(n_sub) + 0.5) * exposure_us / n_sub) * 1e-6
        cs = self.timeline.controls(ts)
        acc = np.zeros_like(view.bg_crop)
        for c in cs:
            acc += view.render(c)
        return acc / np.float32(n_sub)

    # -------------------------------------------------------------------------------------- stream
    def stream(self, packet_period_ms: float = 10.0, duration_s: float | None = None) -> Iterator[tuple]:
        """Yield the time-ordered items of every camera (see the module docstring) until ``duration_s``
        (default :attr:`duration_s`; ``math.inf`` streams forever). A new call restarts at t = 0."""
        if not (0.1 <= packet_period_ms <= 1000.0):
            raise SimError(f"packet period must be within 0.1..1000 ms, got {packet_period_ms}")
        dur = self.duration_s if duration_s is None else float(duration_s)
        if dur <= 0:
            raise SimError(f"duration must be > 0 s, got {dur}")
        period_us = int(round(packet_period_ms * 1000))
        end_us = dur * 1e6
        ev_state = {}
        for cam, sensor in self.sensors.items():
            view = self.views[cam]
            sensor.reset(view.render(self.timeline.controls(0.0)), 0.0)
            ev_state[cam] = {"k": 0, "pending": [], "dt": 1e6 / self.render_hz[cam]}
        aps_k = 0
        web_k = 0
        a = 0
        while a < end_us:
            b = a + period_us if math.isinf(end_us) else int(min(a + period_us, math.ceil(end_us)))
            items: list[tuple] = []
            items.append(("truth", a, self.truth(a)))
            for cam, sensor in self.sensors.items():
                items.append((cam, self._event_packet(cam, sensor, ev_state[cam], a, b)))
            if self.aps is not None:
                fp = 1e6 / self.aps.params.fps
                while aps_k * fp < b:
                    t_f = int(round(aps_k * fp))
                    if t_f >= a:
                        crop = self._exposed(self.views["davis"], t_f, self.aps.exposure_us, self.aps.params.n_sub)
                        items.append(("davis_aps", t_f, self.aps.frame(crop, self.views["davis"].origin)))
                    aps_k += 1
            if self.imu is not None:
                ts, acc, gyr = self.imu.samples(a, b)
                items.extend(("davis_imu", int(t), acc[i], gyr[i]) for i, t in enumerate(ts))
            if self.webcam is not None:
                fp = 1e6 / self.webcam.params.fps
                while web_k * fp < b:
                    t_f = int(round(web_k * fp))
                    if t_f >= a:
                        view = self.views["webcam"]
                        crop = self._exposed(view, t_f, self.webcam.exposure_us, self.webcam.params.n_sub)
                        items.append(("webcam", t_f, self.webcam.frame(crop, view.origin)))
                    web_k += 1
            items.sort(key=lambda it: (it[1].t_start if isinstance(it[1], EventPacket) else it[1], _ORDER[it[0]]))
            yield from items
            a = b

    def _event_packet(self, cam: str, sensor: EventSensor, st: dict, a: int, b: int) -> EventPacket:
        view = self.views[cam]
        dt = st["dt"]
        k1 = int(math.ceil(b / dt))
        if k1 > st["k"]:
            ks = np.arange(st["k"] + 1, k1 + 1)
            cs = self.timeline.controls(ks * dt * 1e-6)
            for k, c in zip(ks, cs, strict=True):
                st["pending"].append(sensor.step(view.render(c), k * dt))
            st["k"] = k1
        sig = concat_events(st["pending"])
        if len(sig) and sig["t"].max() >= b:
            later = sig["t"] >= b
            st["pending"] = [sig[later]]
            sig = sig[~later]
        else:
            st["pending"] = []
        ev = concat_events([sig, sensor.noise(a, b)])
        if len(ev) == 0:
            ev = np.zeros(0, EVENT_DTYPE)
        ev = ev[np.argsort(ev["t"], kind="stable")]
        p = EVENT_PARAMS[cam]
        return EventPacket(ev, p.width, p.height, t_start=a, t_end=b, frame_id=p.frame_id)


# ----------------------------------------------------------------------------------------------- clips
@dataclass
class Clip:
    """One labelled clip: events (or frames) of one take of one AU by one simulated subject."""

    events: np.ndarray
    width: int
    height: int
    au: int
    label: int
    camera: str
    action: Action
    face_box: tuple[float, float, float, float]
    duration_us: int
    lux: float
    subject_seed: int
    seed: int
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)
    truth_t_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    truth_au: np.ndarray = field(default_factory=lambda: np.zeros((0, len(AUS)), np.float32))
    origin: tuple[int, int] = (0, 0)


def render_clip(
    subject_seed: int,
    au: int,
    camera: str = "davis",
    duration_s: float = 2.5,
    lux: float = 600.0,
    seed: int = 0,
    *,
    frames: bool = False,
    render_hz: float | None = None,
    background: Background | None = None,
    packet_period_ms: float = 50.0,
    webcam_roi: bool = False,
) -> Clip:
    """Render one take of ``au`` by subject ``subject_seed`` seen by ``camera`` (in memory).

    Returns the clip's events (EVENT_DTYPE, sorted; empty for the webcam), and with ``frames=True`` the
    APS frames (DAVIS) or webcam frames. ``face_box`` is the box at the clip's start (the crop a dataset
    would use), in full-sensor pixels; ``truth_au`` samples the AU activations every packet.

    ``webcam_roi=True`` (webcam only) renders just the face region of the 1920x1080 sensor
    (:func:`face_region`: the face, its motion and a 10 % border), about 2x faster: the frames are that
    region, whose top-left pixel is ``Clip.origin``. The face and room look the same there; the sensor noise
    is a different draw. (The event cameras need no such option: their sensor model already covers only the
    face region.)
    """
    if camera not in CAMERAS:
        raise SimError(f"unknown camera {camera!r}; known: {CAMERAS}")
    au_num = AUS[au_index(au)].number
    tl = clip_timeline(au_num, duration_s, seed=int(subject_seed) * 100003 + int(seed), background=background)
    geometry, web_params, origin = None, WebcamParams(), (0, 0)
    if webcam_roi and camera == "webcam":
        geometry = default_geometry()
        g = geometry[camera]
        x0, y0, x1, y1 = face_region(camera, subject_seed, seed, geometry=geometry)
        geometry[camera] = CameraGeometry(g.name, x1 - x0, y1 - y0, g.fx, g.fy, g.cx - x0, g.cy - y0, g.position_m)
        web_params = WebcamParams(**{**web_params.__dict__, "width": x1 - x0, "height": y1 - y0})
        origin = (x0, y0)
    rig = SimRig(subject_seed, lux=lux, cameras=(camera,), timeline=tl, seed=seed,
                 aps=frames and camera == "davis", imu=False,
                 render_hz={camera: render_hz} if render_hz and camera in EVENT_PARAMS else None,
                 geometry=geometry, webcam_params=web_params)
    evs, frs, tt, ta = [], [], [], []
    for item in rig.stream(packet_period_ms=packet_period_ms, duration_s=duration_s):
        kind = item[0]
        if kind == "truth":
            tt.append(item[1])
            ta.append(item[2].activations)
        elif kind in ("davis", "evk4"):
            evs.append(item[1].events)
        elif kind in ("davis_aps", "webcam") and frames:
            frs.append((item[1], item[2]))
    full = default_geometry()[camera]
    w, h = rig.sensor_size(camera) if origin == (0, 0) else (full.width, full.height)
    b = rig.face_box(camera, 0.0)
    face_box = (b[0] + origin[0], b[1] + origin[1], b[2] + origin[0], b[3] + origin[1])
    return Clip(
        events=concat_events(evs) if evs else np.zeros(0, EVENT_DTYPE),
        width=w, height=h, au=au_num, label=au_index(au_num), camera=camera, action=tl.actions[0],
        face_box=face_box, duration_us=int(round(duration_s * 1e6)), lux=float(lux),
        subject_seed=int(subject_seed), seed=int(seed), frames=frs,
        truth_t_us=np.asarray(tt, np.int64), truth_au=np.asarray(ta, np.float32).reshape(-1, len(AUS)),
        origin=origin,
    )

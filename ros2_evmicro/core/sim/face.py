"""A 2-D parametric face that performs the 21 Action Units, rendered with OpenCV and numpy.

Geometry lives in *face units*: the face oval has a half-width of about 1 unit (:data:`UNIT_M` = 7.5 cm),
the origin is the face centre (between the eyes and the nose tip), ``x`` grows to the right of the image
and ``y`` downwards. A camera that sees the face at ``s`` pixels per unit renders a *head canvas* of the
frontal face at that scale (features drawn anti-aliased on uint8 with 1/16 pixel precision, then multiplied
by a float32 skin texture and soft static shading), then warps it into the sensor crop through a sphere
model of the head: an output pixel is cast onto a unit sphere (scaled to the head's half-axes), rotated
back by the head pose, and read from the frontal canvas. Head turns thus give shift, foreshortening and
feature shift (the nose moves more than the ears) from one analytic map; shading comes from the sphere's
normal under a fixed key light, so it stays put while the head turns.

Controls are one float vector of :data:`N_CONTROLS` entries: the 21 AU activations in [0, 1] in the order
of :data:`ros2_evmicro.core.au.AUS`, then the involuntary channels (spontaneous blink in [0, 1], head sway
yaw/pitch/roll in radians and shift in face units, micro-saccade gaze offset in units of the full gaze
range). Directions follow FACS: "left" is the subject's left, which a camera facing the subject sees on
the image's right (AU51 turns the nose towards +x, AU61 moves the irises towards +x).

Radiance is returned as linear-ish reflectance in [0, 1] (float32); the sensor models turn it into
photocurrent with the scene illuminance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import cv2
import numba
import numpy as np

from ros2_evmicro.core.au import AUS, au_index

__all__ = [
    "CONTROL_NAMES",
    "N_CONTROLS",
    "UNIT_M",
    "FaceRenderer",
    "HeadPose",
    "SimError",
    "Subject",
    "controls_zero",
    "pose_from_controls",
    "subject_from_seed",
]

UNIT_M = 0.075
"""Metres per face unit (face half-width)."""

N_AU = len(AUS)
C_BLINK, C_YAW, C_PITCH, C_ROLL, C_TX, C_TY, C_GX, C_GY = range(N_AU, N_AU + 8)
N_CONTROLS = N_AU + 8
CONTROL_NAMES: tuple[str, ...] = tuple(a.code for a in AUS) + (
    "blink", "sway_yaw_rad", "sway_pitch_rad", "sway_roll_rad", "sway_x_unit", "sway_y_unit",
    "saccade_x", "saccade_y",
)

MAX_YAW_RAD = math.radians(20.0)
MAX_PITCH_RAD = math.radians(14.0)
PIVOT_TO_FACE = np.array([0.0, -1.4, 0.9])
"""Vector from the neck pivot to the face centre, in face units (x right, y down, z towards camera)."""

# canvas extent of the head in face units (x: -CX..CX, y: -CY0..CY1)
CANVAS_X = 1.6
CANVAS_Y0 = 1.85
CANVAS_Y1 = 1.95

_I = {a.number: au_index(a.number) for a in AUS}
_POSE_CHANNELS = np.array([_I[51], _I[52], _I[53], _I[54], C_YAW, C_PITCH, C_ROLL, C_TX, C_TY])
"""Controls that only pose the head (render's warp), never change its drawing (head_canvas)."""
_SHIFT = 4
_ONE = 1 << _SHIFT


class SimError(ValueError):
    """A simulator input is out of range (controls, scale, timeline, camera name...)."""


def controls_zero() -> np.ndarray:
    """A neutral control vector (float32, all zeros: neutral face, frontal, eyes open and centred)."""
    return np.zeros(N_CONTROLS, dtype=np.float32)


# --------------------------------------------------------------------------------------------- subject
@dataclass(frozen=True)
class Subject:
    """The per-subject face parameters (face units, reflectances as BGR in [0, 1])."""

    seed: int
    ax: float
    ay: float
    jaw_taper: float
    skin: tuple[float, float, float]
    texture_amp: float
    hair: tuple[float, float, float]
    hair_style: str
    hairline_y: float
    brow_y: float
    brow_thick: float
    brow_arch: float
    brow_dark: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    eye_h_low: float
    eye_tilt: float
    iris_r: float
    iris: tuple[float, float, float]
    nose_tip_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_low: float
    lip: tuple[float, float, float]
    ear_y: float
    ear_h: float
    glasses: bool
    glasses_round: bool
    glasses_color: tuple[float, float, float]
    shirt: tuple[float, float, float]


def _mix(a, b, k: float) -> tuple[float, float, float]:
    return cast(tuple[float, float, float], tuple(float(x + (y - x) * k) for x, y in zip(a, b, strict=True)))


def _scale(a, k) -> tuple[float, float, float]:
    if np.isscalar(k):
        k = (k, k, k)
    return cast(tuple[float, float, float], tuple(float(min(1.0, x * m)) for x, m in zip(a, k, strict=True)))


def subject_from_seed(seed: int, *, glasses: bool | None = None) -> Subject:
    """Draw a subject (face shape, proportions, skin tone, hair, brows, glasses) from ``seed``.

    ``glasses`` forces glasses on or off; ``None`` draws them with probability 0.3.
    """
    if int(seed) < 0:
        raise SimError(f"subject seed must be >= 0, got {seed}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    u = rng.uniform
    tone = u(0.0, 1.0)
    light, dark = (0.60, 0.68, 0.84), (0.17, 0.24, 0.36)
    skin = _mix(light, dark, tone)
    skin = _scale(skin, (u(0.95, 1.05), u(0.96, 1.04), u(0.97, 1.03)))
    hair_kind = rng.choice(["black", "brown", "blond", "grey", "red"], p=[0.35, 0.35, 0.12, 0.1, 0.08])
    hair = {
        "black": (0.04, 0.04, 0.05),
        "brown": (0.08, 0.13, 0.2),
        "blond": (0.3, 0.45, 0.55),
        "grey": (0.45, 0.46, 0.47),
        "red": (0.08, 0.18, 0.38),
    }[str(hair_kind)]
    hair = _scale(hair, u(0.8, 1.2))
    style = str(rng.choice(["short", "long", "fringe", "bald"], p=[0.45, 0.3, 0.17, 0.08]))
    ay = u(1.24, 1.42)
    eye_y = u(-0.14, -0.05)
    iris_kind = rng.choice(3, p=[0.6, 0.25, 0.15])
    iris = [(0.06, 0.12, 0.2), (0.42, 0.33, 0.22), (0.2, 0.3, 0.25)][int(iris_kind)]
    mouth_y = u(0.66, 0.78)
    glasses_on = bool(rng.uniform() < 0.3) if glasses is None else bool(glasses)
    return Subject(
        seed=int(seed),
        ax=u(0.9, 1.04),
        ay=ay,
        jaw_taper=u(0.06, 0.2),
        skin=skin,
        texture_amp=u(0.04, 0.09),
        hair=hair,
        hair_style=style,
        hairline_y=u(-0.98, -0.78) if style != "bald" else -1.25,
        brow_y=eye_y - u(0.26, 0.33),
        brow_thick=u(0.06, 0.1),
        brow_arch=u(0.02, 0.06),
        brow_dark=u(0.7, 0.95),
        eye_x=u(0.35, 0.42),
        eye_y=eye_y,
        eye_w=u(0.16, 0.2),
        eye_h=u(0.07, 0.095),
        eye_h_low=u(0.045, 0.06),
        eye_tilt=u(-0.01, 0.03),
        iris_r=u(0.075, 0.09),
        iris=iris,
        nose_tip_y=u(0.3, 0.4),
        nose_w=u(0.14, 0.2),
        mouth_y=mouth_y,
        mouth_w=u(0.3, 0.38),
        lip_up=u(0.06, 0.09),
        lip_low=u(0.08, 0.12),
        lip=_scale(skin, (u(0.68, 0.78), u(0.55, 0.65), u(0.85, 0.95))),
        ear_y=eye_y + u(0.02, 0.1),
        ear_h=u(0.24, 0.3),
        glasses=glasses_on,
        glasses_round=bool(rng.uniform() < 0.5),
        glasses_color=_scale((0.05, 0.05, 0.06), u(1.0, 4.0)),
        shirt=(u(0.1, 0.7), u(0.1, 0.7), u(0.1, 0.7)),
    )


# ------------------------------------------------------------------------------------------------- pose
@dataclass(frozen=True)
class HeadPose:
    """Head pose: rotations in radians (yaw > 0 turns the nose to +x, pitch > 0 raises it), shift in units."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0

    def rotation(self) -> np.ndarray:
        """3x3 rotation (head frame -> view frame; x right, y down, z towards the camera)."""
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        return rz @ rx @ ry

    def offset_units(self) -> tuple[float, float]:
        """Image-plane shift of the face centre (units): sway plus the swing about the neck pivot."""
        d = self.rotation() @ PIVOT_TO_FACE - PIVOT_TO_FACE
        return float(d[0] + self.tx), float(d[1] + self.ty)


def pose_from_controls(c: np.ndarray) -> HeadPose:
    """Head pose of a control vector: AU51-54 (scaled to 20 deg yaw, 14 deg pitch) plus the sway channels."""
    yaw = MAX_YAW_RAD * (float(c[_I[51]]) - float(c[_I[52]])) + float(c[C_YAW])
    pitch = MAX_PITCH_RAD * (float(c[_I[53]]) - float(c[_I[54]])) + float(c[C_PITCH])
    return HeadPose(yaw, pitch, float(c[C_ROLL]), float(c[C_TX]), float(c[C_TY]))


# -------------------------------------------------------------------------------------------- kernels
@numba.njit(cache=True, fastmath=True)
def _head_maps(u0, v0, cx, cy, s, rx, ry, rt, tex_cx, tex_cy, lx, ly, lz, ambient, mapx, mapy, shade):
    """Fill the remap tables (output pixel -> head canvas pixel) and the Lambert shading of the head.

    ``(u0, v0)`` is the sensor pixel of the crop's top-left corner, ``(cx, cy)`` the sensor pixel of the
    face centre, ``s`` pixels per unit, ``rx, ry`` the half-axes (units) of the head ellipsoid, ``rt`` the
    inverse rotation (view -> head), ``(tex_cx, tex_cy)`` the canvas pixel of the face centre.
    """
    h, w = mapx.shape
    isx = 1.0 / (s * rx)
    isy = 1.0 / (s * ry)
    for j in range(h):
        y_n = (v0 + j - cy) * isy
        for i in range(w):
            x_n = (u0 + i - cx) * isx
            r2 = x_n * x_n + y_n * y_n
            if r2 < 1.0:
                xs = x_n
                ys = y_n
                z = math.sqrt(1.0 - r2)
                ex = 0.0
                ey = 0.0
            else:
                k = 1.0 / math.sqrt(r2)
                xs = x_n * k
                ys = y_n * k
                z = 0.0
                ex = x_n - xs
                ey = y_n - ys
            xh = rt[0, 0] * xs + rt[0, 1] * ys + rt[0, 2] * z
            yh = rt[1, 0] * xs + rt[1, 1] * ys + rt[1, 2] * z
            zh = rt[2, 0] * xs + rt[2, 1] * ys + rt[2, 2] * z
            if zh < 0.0:
                n = 1.0 / (math.sqrt(xh * xh + yh * yh) + 1e-9)
                xh *= n
                yh *= n
            mapx[j, i] = (xh + ex) * rx * s + tex_cx
            mapy[j, i] = (yh + ey) * ry * s + tex_cy
            # the face is flatter than a sphere: normals lean towards the camera (z weighted by 2)
            nz = 2.0 * z
            nd = (xs * lx + ys * ly + nz * lz) / math.sqrt(xs * xs + ys * ys + nz * nz)
            if nd < 0.0:
                nd = 0.0
            shade[j, i] = ambient + (1.0 - ambient) * nd


@numba.njit(cache=True)
def _composite(bg, head, shade, out):
    """out = bg * (1 - a) + head_rgb * shade, where a is the last channel of ``head`` (all float32).

    The head canvas is premultiplied: its anti-aliased outline was drawn over black with coverage ``a``.
    """
    h, w, c = out.shape
    for j in range(h):
        for i in range(w):
            a = head[j, i, c]
            if a > 1.0:
                a = 1.0
            sh = shade[j, i]
            for k in range(c):
                out[j, i, k] = bg[j, i, k] * (1.0 - a) + head[j, i, k] * sh


# ------------------------------------------------------------------------------------------- renderer
def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


class FaceRenderer:
    """Render one subject's head at ``scale`` pixels per face unit, grey (1 channel) or colour (BGR).

    :meth:`head_canvas` draws the frontal head for a control vector (float32, channels + alpha);
    :meth:`render` warps it by the head pose into a sensor crop over a background crop.
    """

    def __init__(self, subject: Subject, scale: float, *, color: bool = False) -> None:
        if not (2.0 <= float(scale) <= 2000.0):
            raise SimError(f"face scale must be within 2..2000 pixels per unit, got {scale}")
        self.subject = subject
        self.s = float(scale)
        self.color = bool(color)
        self.nch = 3 if color else 1
        self.width = int(math.ceil(2 * CANVAS_X * self.s))
        self.height = int(math.ceil((CANVAS_Y0 + CANVAS_Y1) * self.s))
        self.cx = CANVAS_X * self.s
        self.cy = CANVAS_Y0 * self.s
        self._fx_scale = self.s * _ONE
        self._fx_off = np.array([self.cx * _ONE, self.cy * _ONE])
        sub = subject
        self.rx = sub.ax * 1.08
        self.ry = sub.ay * 1.05
        self._base, self._alpha = self._draw_base()
        self._texture = self._make_texture()
        self._chin_dots = np.random.default_rng([sub.seed, 0xC41]).uniform(-1, 1, size=(7, 2))
        self._head = np.empty((self.height, self.width, self.nch + 1), np.float32)
        self._head_key: bytes | None = None  # the controls self._head was drawn for (see head_canvas)
        step = 8
        gxs = (np.arange(0, self.width + step, step) - self.cx) / self.s
        gys = (np.arange(0, self.height + step, step) - self.cy) / self.s
        self._grid = tuple(g.astype(np.float32) for g in np.meshgrid(gxs, gys))
        self._ix, self._iy = (g.astype(np.float32) for g in np.meshgrid(np.arange(self.width), np.arange(self.height)))

    # ---------------------------------------------------------------- drawing helpers (face units)
    def _fx(self, xy) -> np.ndarray:
        px = np.asarray(xy, dtype=np.float64).reshape(-1, 2) * self._fx_scale + self._fx_off
        return np.rint(px).astype(np.int32)

    def _col(self, bgr) -> tuple:
        b, g, r = (min(1.0, max(0.0, float(v))) for v in bgr)
        if self.color:
            return (b * 255.0, g * 255.0, r * 255.0)
        return (255.0 * (0.114 * b + 0.587 * g + 0.299 * r),)

    def _poly(self, img, xy, bgr) -> None:
        cv2.fillPoly(img, [self._fx(xy)], self._col(bgr), cv2.LINE_AA, _SHIFT)

    def _line(self, img, xy, bgr, thick_units: float, closed: bool = False) -> None:
        t = max(1, int(round(thick_units * self.s)))
        cv2.polylines(img, [self._fx(xy)], closed, self._col(bgr), t, cv2.LINE_AA, _SHIFT)

    def _ellipse(self, img, c, axes, angle_deg, bgr, thick_units: float = -1.0) -> None:
        cc = self._fx(c)[0]
        ax = (max(1, int(round(axes[0] * self.s * _ONE))), max(1, int(round(axes[1] * self.s * _ONE))))
        t = -1 if thick_units < 0 else max(1, int(round(thick_units * self.s)))
        cv2.ellipse(img, (int(cc[0]), int(cc[1])), ax, float(angle_deg), 0, 360, self._col(bgr), t,
                    cv2.LINE_AA, _SHIFT)

    def _egg(self, jaw_drop: float = 0.0, n: int = 96) -> np.ndarray:
        sub = self.subject
        th = np.linspace(0, 2 * np.pi, n, endpoint=False)
        st = np.sin(th)
        x = sub.ax * np.cos(th) * (1 - sub.jaw_taper * np.clip(st, 0, 1) ** 2 - 0.06 * np.clip(-st, 0, 1) ** 2)
        y = sub.ay * st
        if jaw_drop > 0:
            w = np.clip((y - 0.3) / (sub.ay - 0.3), 0, 1) ** 0.8
            y = y + jaw_drop * w
        return np.stack([x, y], 1)

    # ---------------------------------------------------------------- static base
    def _draw_base(self) -> tuple[np.ndarray, np.ndarray]:
        sub = self.subject
        img = np.zeros((self.height, self.width, self.nch), np.uint8)
        alpha = np.zeros((self.height, self.width), np.uint8)
        rng = np.random.default_rng([sub.seed, 0xBA5E])
        hair_c = sub.hair if sub.hair_style != "bald" else _scale(sub.skin, 0.92)
        # back hair (behind the head), long hair falls to the shoulders
        back_c, back_ax = (0.0, -0.42), (sub.ax * 1.1, sub.ay * 1.0)
        self._ellipse(img, back_c, back_ax, 0, hair_c)
        self._ellipse(alpha, back_c, back_ax, 0, (1, 1, 1))
        if sub.hair_style == "long":
            mane = [(-sub.ax * 1.1, -0.4), (sub.ax * 1.1, -0.4), (sub.ax * 1.2, 1.6), (-sub.ax * 1.2, 1.6)]
            self._poly(img, mane, hair_c)
            self._poly(alpha, mane, (1, 1, 1))
        # ears
        for side in (-1, 1):
            c = (side * sub.ax * 1.02, sub.ear_y)
            self._ellipse(img, c, (0.13, sub.ear_h), side * 8, _scale(sub.skin, 0.93))
            self._ellipse(alpha, c, (0.13, sub.ear_h), side * 8, (1, 1, 1))
            self._ellipse(img, (c[0] + side * 0.025, c[1]), (0.065, sub.ear_h * 0.7), side * 8,
                          _scale(sub.skin, 0.75), 0.018)
        # face
        egg = self._egg()
        self._poly(img, egg, sub.skin)
        self._poly(alpha, egg, (1, 1, 1))
        # front hair above the hairline
        if sub.hair_style != "bald":
            xs = np.linspace(-sub.ax * 1.02, sub.ax * 1.02, 40)
            bumps = sum(rng.uniform(-0.03, 0.03) * np.sin(k * xs + rng.uniform(0, 6)) for k in (3, 7, 13))
            yl = sub.hairline_y + 0.32 * (xs / sub.ax) ** 2 + bumps
            if sub.hair_style == "fringe":
                yl = yl + 0.3 * np.exp(-((xs - rng.uniform(-0.3, 0.3)) / 0.6) ** 2)
            top = [(x, -sub.ay * 1.45) for x in (sub.ax * 1.2, -sub.ax * 1.2)]
            flank = [(-sub.ax * 1.06, 0.0)] if sub.hair_style != "short" else [(-sub.ax * 1.02, -0.35)]
            pts = np.vstack([np.array(flank), np.stack([xs, yl], 1),
                             np.array([(-p[0], p[1]) for p in flank[::-1]]), np.array(top)])
            clip = np.zeros_like(alpha)
            self._ellipse(clip, back_c, (back_ax[0] * 1.01, back_ax[1] * 1.01), 0, (1, 1, 1))
            front = np.zeros_like(alpha)
            self._poly(front, pts, (1, 1, 1))
            m = (front & clip).astype(bool)
            img[m] = self._col(hair_c)
            # strands: short, low-contrast, combed back from the hairline
            strands = np.zeros_like(img)
            smask = np.zeros_like(alpha)
            for _ in range(int(150 * max(1.0, self.s / 60))):
                x0 = rng.uniform(-sub.ax * 1.05, sub.ax * 1.05)
                y0 = rng.uniform(-sub.ay * 1.3, sub.hairline_y + 0.05)
                ang = np.arctan2(y0 + 0.4, x0) + rng.uniform(-0.3, 0.3)
                ln = rng.uniform(0.06, 0.18)
                seg = [(x0, y0), (x0 + ln * np.cos(ang), y0 + ln * np.sin(ang))]
                self._line(strands, seg, _scale(hair_c, rng.uniform(0.8, 1.25)), 0.006)
                self._line(smask, seg, (1, 1, 1), 0.006)
            sm = smask.astype(bool) & m
            img[sm] = strands[sm]
        return img, alpha

    def _make_texture(self) -> np.ndarray:
        """Multiplicative skin texture and soft static shading (float32, ~1.0)."""
        sub = self.subject
        h, w, s = self.height, self.width, self.s
        rng = np.random.default_rng([sub.seed, 0x7E47])
        coarse = rng.normal(0, 1, (max(2, h // 12), max(2, w // 12))).astype(np.float32)
        tex = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) * (sub.texture_amp * 0.6)
        fine: np.ndarray = rng.normal(0, 1, (h, w)).astype(np.float32)
        fine = cv2.GaussianBlur(fine, (0, 0), max(0.5, 0.006 * s))
        tex += fine * (sub.texture_amp * 0.8 / max(0.2, float(fine.std())))
        tex += 1.0
        # freckles / moles
        for _ in range(int(rng.integers(0, 5))):
            c = (rng.uniform(-0.8, 0.8), rng.uniform(-0.6, 1.0))
            r = rng.uniform(0.008, 0.02)
            cv2.circle(tex, (int(c[0] * s + self.cx), int(c[1] * s + self.cy)), max(1, int(r * s)),
                       float(rng.uniform(0.6, 0.85)), -1)
        shade: np.ndarray = np.zeros((h, w), np.float32)

        def blob(c, axes, val, angle=0.0):
            cv2.ellipse(shade, (int(c[0] * s + self.cx), int(c[1] * s + self.cy)),
                        (max(1, int(axes[0] * s)), max(1, int(axes[1] * s))), angle, 0, 360, val, -1)

        for side in (-1, 1):
            blob((side * sub.eye_x, sub.eye_y - 0.02), (sub.eye_w * 1.45, 0.17), -0.13)  # eye socket
            blob((side * 0.12, sub.eye_y + 0.05), (0.05, 0.2), -0.08)  # nose side
            blob((side * 0.55, 0.15), (0.2, 0.12), 0.05)  # cheekbone highlight
            blob((side * sub.ax * 0.85, 0.6), (0.15, 0.5), -0.1)  # jaw side
        blob((0.0, sub.nose_tip_y + 0.12), (0.12, 0.035), -0.12)  # under the nose
        blob((0.0, sub.mouth_y + sub.lip_low + 0.06), (0.16, 0.04), -0.1)  # under the lower lip
        blob((0.0, sub.nose_tip_y - 0.05), (0.06, 0.12), 0.06)  # nose ridge highlight
        blob((0.0, sub.brow_y - 0.35), (0.5, 0.2), 0.04)  # forehead
        shade = cv2.GaussianBlur(shade, (0, 0), max(0.8, 0.06 * s))
        tex = tex * (1.0 + shade)
        return np.clip(tex, 0.3, 1.5).astype(np.float32) * np.float32(1.0 / 255.0)

    # ---------------------------------------------------------------- dynamic features
    def head_canvas(self, c: np.ndarray) -> np.ndarray:
        """Frontal head for controls ``c`` (float32 (H, W, channels + 1), radiance then alpha in [0, 1]).

        The returned array is reused by the next call (copy it to keep it). The head pose (AU51-54 and the sway
        channels) is applied by :meth:`render`, not here, so a call whose other controls equal the previous
        call's returns the previous drawing: between actions (most of a session) only the pose moves.
        """
        c = np.asarray(c, dtype=np.float32)
        if c.shape != (N_CONTROLS,):
            raise SimError(f"controls must have shape ({N_CONTROLS},), got {c.shape}")
        key = c.copy()
        key[_POSE_CHANNELS] = 0.0
        key_b = key.tobytes()
        if key_b == self._head_key:
            return self._head
        self._head_key = None  # set again once the new drawing is complete
        sub = self.subject
        a = {n: float(np.clip(c[i], 0.0, 1.0)) for n, i in _I.items()}
        img = self._base.copy()
        alpha = self._alpha
        skin = sub.skin

        # jaw drop (AU26): the lower face moves down over the neck
        jd = 0.26 * a[26]
        if jd > 1e-3:
            egg = self._egg(jd)
            low = egg[egg[:, 1] > 0.0]
            self._poly(img, low, skin)
            alpha = alpha.copy()
            self._poly(alpha, low, (1, 1, 1))

        # forehead wrinkles (AU2, a little with AU5), glabella lines (AU4)
        fw = 0.55 * a[2] + 0.15 * a[5]
        if fw > 0.02:
            for k in range(3):
                y0 = sub.brow_y - 0.2 - 0.1 * k - 0.05 * a[2]
                xs = np.linspace(-0.45, 0.45, 12)
                self._line(img, np.stack([xs, y0 + 0.05 * (xs / 0.45) ** 2], 1), _scale(skin, 1 - 0.25 * fw),
                           0.012)
        if a[4] > 0.02:
            for side in (-1, 1):
                xg = side * (0.045 + 0.01 * a[4])
                self._line(img, [(xg, sub.brow_y - 0.05), (xg * 0.8, sub.brow_y + 0.1)],
                           _scale(skin, 1 - 0.35 * a[4]), 0.014)

        # cheeks (AU6, pushed a little by AU12)
        ck = min(1.0, a[6] + 0.3 * a[12])
        for side in (-1, 1):
            cxk = side * 0.5
            self._ellipse(img, (cxk, 0.2 - 0.09 * ck), (0.22, 0.13), 0, _scale(skin, 1.03 + 0.04 * ck))
            xs = np.linspace(0.3, 0.72, 10)
            yy = 0.37 - 0.08 * ck + 0.06 * ((xs - 0.5) / 0.22) ** 2
            self._line(img, np.stack([side * xs, yy], 1), _scale(skin, 0.97 - 0.12 * ck), 0.02)

        # nose (AU9: wings and nostrils lift and flare, bridge wrinkles)
        n9 = a[9]
        tip = sub.nose_tip_y - 0.04 * n9
        nw = sub.nose_w * (1 + 0.25 * n9)
        for side in (-1, 1):
            ys = np.linspace(sub.eye_y + 0.02, tip - 0.02, 8)
            self._line(img, np.stack([side * (0.085 + 0.03 * (ys - ys[0]) / (ys[-1] - ys[0])), ys], 1),
                       _scale(skin, 0.93), 0.012)
            self._ellipse(img, (side * nw * 0.62, tip + 0.04), (nw * 0.42, 0.075), side * 20,
                          _scale(skin, 0.97))
            th = np.linspace(-0.6, 2.2, 12)
            arc = np.stack([side * (nw * 0.62 + nw * 0.42 * np.cos(th)), tip + 0.04 + 0.075 * np.sin(th)], 1)
            self._line(img, arc, _scale(skin, 0.78 - 0.1 * n9), 0.014)
            self._ellipse(img, (side * nw * 0.38, tip + 0.085), (0.045 * (1 + 0.3 * n9), 0.022),
                          side * 15, _scale(skin, 0.25))
        self._ellipse(img, (0.0, tip), (0.07, 0.06), 0, _scale(skin, 1.08))
        if n9 > 0.02:
            for k in range(3):
                y0 = sub.eye_y + 0.02 + 0.06 * k
                xs = np.linspace(-0.1, 0.1, 6)
                self._line(img, np.stack([xs, y0 - 0.03 * (xs / 0.1) ** 2], 1), _scale(skin, 1 - 0.35 * n9),
                           0.013)

        # mouth: corners (AU12 up/out, AU15 down, AU23 narrow), lips (AU23 thin, AU17 up, AU9 upper lift),
        # opening (AU26)
        mw = sub.mouth_w * (1 + 0.22 * a[12] - 0.14 * a[23] + 0.05 * a[15])
        ym = sub.mouth_y - 0.035 * a[17]
        cdy = -0.11 * a[12] + 0.1 * a[15] - 0.02 * a[17]
        thin = 1 - 0.6 * a[23]
        lu = sub.lip_up * thin * (1 - 0.3 * n9)
        ll = sub.lip_low * thin * (1 + 0.25 * a[17])
        gap = 0.9 * jd
        u = np.linspace(-1, 1, 25)
        yin = ym + cdy * np.abs(u) ** 2.2
        bow = (1 - u**2) ** 0.6 * (1 - 0.3 * np.exp(-((u / 0.16) ** 2)))
        y_uo = yin - lu * bow - 0.03 * n9 * (1 - u**2)
        y_li = yin + gap * (1 - u**2) ** 0.8
        y_lo = y_li + ll * (1 - u**2) ** 0.6 + 0.012 * (1 - u**2)
        x = u * mw
        # nasolabial folds (AU12, AU9, AU6)
        fold = min(1.0, 0.2 + 0.5 * a[12] + 0.45 * n9 + 0.2 * a[6] + 0.15 * a[15])
        for side in (-1, 1):
            t = np.linspace(0, 1, 10)
            fx0, fy0 = side * (nw * 0.95), tip + 0.0
            fx1, fy1 = side * (mw + 0.07), yin[-1] + 0.1 + 0.05 * a[15]
            bend = side * 0.06 * (1 + 0.5 * a[12])
            pts = np.stack([fx0 + (fx1 - fx0) * t + bend * np.sin(np.pi * t), fy0 + (fy1 - fy0) * t], 1)
            self._line(img, pts, _scale(skin, 1 - 0.28 * fold), 0.016 + 0.01 * fold)
        if gap > 0.004:
            inner = np.vstack([np.stack([x, yin], 1), np.stack([x[::-1], y_li[::-1]], 1)])
            self._poly(img, inner, (0.08, 0.08, 0.2))
            tg = min(gap * 0.45, 0.05)
            teeth = np.vstack([np.stack([x[4:-4] * 0.85, yin[4:-4] - 0.01], 1),
                               np.stack([x[4:-4][::-1] * 0.85, yin[4:-4][::-1] + tg], 1)])
            self._poly(img, teeth, (0.72, 0.78, 0.8))
        upper = np.vstack([np.stack([x, y_uo], 1), np.stack([x[::-1], yin[::-1]], 1)])
        lower = np.vstack([np.stack([x, y_li], 1), np.stack([x[::-1], y_lo[::-1]], 1)])
        self._poly(img, upper, _scale(sub.lip, 0.92))
        self._poly(img, lower, sub.lip)
        self._line(img, np.stack([x, yin], 1), _scale(sub.lip, 0.45 if gap < 0.004 else 0.3), 0.012)
        for side in (-1, 1):  # corner shadows
            self._ellipse(img, (side * (mw + 0.01), yin[-1]), (0.018, 0.012), 0, _scale(skin, 0.7))
        # mentolabial sulcus and chin boss (AU17), following the jaw
        ys = y_lo.max() + 0.07 - 0.03 * a[17]
        xs = np.linspace(-0.17, 0.17, 9)
        self._line(img, np.stack([xs, ys + 0.03 * (xs / 0.17) ** 2], 1), _scale(skin, 0.9 - 0.15 * a[17]), 0.02)
        chin_y = sub.ay - 0.2 + jd - 0.05 * a[17]
        self._ellipse(img, (0.0, chin_y), (0.2, 0.1), 0, _scale(skin, 1.04 + 0.03 * a[17]))
        if a[17] > 0.05:
            for dx, dy in self._chin_dots:
                self._ellipse(img, (0.13 * dx, chin_y + 0.06 * dy), (0.012, 0.01), 0,
                              _scale(skin, 1 - 0.2 * a[17]))

        # eyes and lids
        blink = max(a[45], float(np.clip(c[C_BLINK], 0, 1)))
        closure = _smoothstep(max(a[43], blink))
        gx = float(np.clip(a[61] - a[62] + c[C_GX], -1.2, 1.2))
        gy = float(np.clip(a[64] - a[63] + c[C_GY], -1.2, 1.2))
        up_open = (1 + 0.55 * a[5] - 0.6 * a[41] + 0.3 * max(0.0, -gy) - 0.35 * max(0.0, gy)
                   - 0.15 * a[4] - 0.1 * a[6])
        low_open = 1 - 0.55 * a[6] - 0.25 * n9 - 0.15 * a[12]
        for side in (-1, 1):
            self._eye(img, side, up_open, low_open, closure, gx, gy, a)

        # brows: AU2 raises the outer part, AU4 lowers and draws them together, AU9 lowers the inner end
        for side in (-1, 1):
            t = np.linspace(0, 1, 14)
            xi = 0.1 - 0.04 * a[4]
            xo = sub.eye_x + sub.eye_w * 1.25
            bx = xi + (xo - xi) * t
            by = (sub.brow_y - sub.brow_arch * np.sin(np.pi * np.clip(t * 1.15, 0, 1))
                  - 0.14 * a[2] * t**1.5 + 0.07 * a[4] * (1 - 0.5 * t) + 0.035 * n9 * (1 - t)
                  - 0.04 * a[5] - 0.02 * a[2] + 0.015 * a[4])
            th = sub.brow_thick * (1.1 - 0.6 * t)
            top = np.stack([side * bx, by - th / 2], 1)
            bot = np.stack([side * bx, by + th / 2], 1)
            self._poly(img, np.vstack([top, bot[::-1]]), _mix(skin, sub.hair, sub.brow_dark))

        if sub.glasses:
            self._glasses(img)

        head = self._head
        tex = self._deformed_texture(a, jd)
        if self.color:
            np.multiply(img, tex[..., None], out=head[..., :3], casting="unsafe")
        else:
            np.multiply(img[..., 0], tex, out=head[..., 0], casting="unsafe")
        np.multiply(alpha, np.float32(1.0 / 255.0), out=head[..., self.nch], casting="unsafe")
        self._head_key = key_b
        return head

    def _deformed_texture(self, a: dict[int, float], jd: float) -> np.ndarray:
        """The skin texture moved with the muscles: Gaussian displacement blobs per AU (face units)."""
        disp = []
        for side in (-1, 1):
            disp += [
                (a[12], side * 0.45, 0.45, 0.3, side * 0.06, -0.08),
                (a[6], side * 0.45, 0.12, 0.25, 0.0, -0.06),
                (a[15], side * 0.32, 0.85, 0.25, 0.0, 0.06),
                (a[2], side * 0.45, -0.65, 0.35, 0.0, -0.07),
                (a[4], side * 0.18, -0.45, 0.2, -side * 0.03, 0.05),
                (a[23], side * 0.25, 0.75, 0.2, -side * 0.03, 0.0),
            ]
        disp += [(a[17], 0.0, 1.05, 0.3, 0.0, -0.05), (a[9], 0.0, 0.05, 0.25, 0.0, -0.04),
                 (jd / 0.26, 0.0, 1.05, 0.45, 0.0, jd)]
        disp = [d for d in disp if d[0] > 1e-3]
        if not disp:
            return self._texture
        gh, gw = self._grid[0].shape
        dx = np.zeros((gh, gw), np.float32)
        dy = np.zeros((gh, gw), np.float32)
        gx, gy = self._grid
        for k, x0, y0, r, vx, vy in disp:
            w = k * np.exp(-((gx - x0) ** 2 + (gy - y0) ** 2) / (r * r))
            dx += w * vx
            dy += w * vy
        size = (self.width, self.height)
        mx = cv2.resize(dx, size, interpolation=cv2.INTER_LINEAR)
        my = cv2.resize(dy, size, interpolation=cv2.INTER_LINEAR)
        mx = self._ix - mx * np.float32(self.s)
        my = self._iy - my * np.float32(self.s)
        return cv2.remap(self._texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _eye(self, img, side, up_open, low_open, closure, gx, gy, a) -> None:
        sub = self.subject
        ex, ey, ew = side * sub.eye_x, sub.eye_y, sub.eye_w
        u = np.linspace(-1, 1, 17)
        xs = ex + u * ew
        tilt = -sub.eye_tilt * u * side
        shp = (1 - u**2) ** 0.7 * (1 + 0.12 * u * side)
        y_close = ey + 0.3 * sub.eye_h_low * shp + tilt
        y_up = ey - sub.eye_h * max(0.0, up_open) * shp + tilt
        y_lo = ey + sub.eye_h_low * max(0.05, low_open) * shp + tilt
        y_up = y_up + (y_close - y_up) * closure
        y_lo = y_lo + (y_close + 0.002 - y_lo) * closure
        crease = ey - (sub.eye_h + 0.05) * shp * (1 + 0.25 * a[5]) + tilt + 0.02 * a[4] + 0.01 * a[41]
        # lid skin between crease and lid edge
        self._poly(img, np.vstack([np.stack([xs, crease], 1), np.stack([xs[::-1], y_up[::-1]], 1)]),
                   _scale(sub.skin, 0.88))
        self._line(img, np.stack([xs, crease], 1), _scale(sub.skin, 0.72 + 0.15 * a[5]), 0.014)
        # under-eye furrow (AU6)
        self._line(img, np.stack([xs[3:-2], y_lo[3:-2] + 0.045 - 0.01 * a[6]], 1),
                   _scale(sub.skin, 0.92 - 0.18 * a[6]), 0.014)
        if a[6] > 0.05:  # crow's feet
            ox = ex + side * (ew + 0.03)
            for k in (-1, 0, 1):
                self._line(img, [(ox, ey + 0.03 * k), (ox + side * 0.09, ey + 0.055 * k - 0.01)],
                           _scale(sub.skin, 1 - 0.25 * a[6]), 0.011)
        # the eyeball seen through the opening
        s = self.s
        x0 = max(0, int((ex - ew - 0.05) * s + self.cx))
        x1 = min(self.width, int(math.ceil((ex + ew + 0.05) * s + self.cx)) + 1)
        y0 = max(0, int((ey - sub.eye_h * 2.0 - 0.05) * s + self.cy))
        y1 = min(self.height, int(math.ceil((ey + sub.eye_h_low * 1.6 + 0.05) * s + self.cy)) + 1)
        if closure < 0.995 and x1 > x0 and y1 > y0:
            roi = img[y0:y1, x0:x1]
            ball = np.empty_like(roi)
            ball[:] = self._col((0.74, 0.76, 0.78))
            off = np.array([x0, y0]) * _ONE
            ic = (ex + gx * ew * 0.5, ey + gy * sub.eye_h * 0.55 - 0.008)
            r = sub.iris_r

            def circ(cc, rr, col, t=-1):
                p = self._fx(cc)[0] - off
                cv2.circle(ball, (int(p[0]), int(p[1])), max(1, int(round(rr * s * _ONE))), self._col(col),
                           t if t < 0 else max(1, int(round(t * s))), cv2.LINE_AA, _SHIFT)

            circ(ic, r, _scale(sub.iris, 0.6))
            circ(ic, r * 0.82, sub.iris)
            circ(ic, r * 0.42, (0.02, 0.02, 0.02))
            circ((ic[0] - 0.3 * r, ic[1] - 0.3 * r), r * 0.18, (0.95, 0.95, 0.95))
            mask = np.zeros(roi.shape[:2], np.uint8)
            poly = self._fx(np.vstack([np.stack([xs, y_up], 1), np.stack([xs[::-1], y_lo[::-1]], 1)])) - off
            cv2.fillPoly(mask, [poly.astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
            # upper-lid shadow on the eyeball
            sh = np.zeros(roi.shape[:2], np.uint8)
            cv2.polylines(sh, [(self._fx(np.stack([xs, y_up], 1)) - off).astype(np.int32)], False, 90,
                          max(1, int(round(0.05 * s))), cv2.LINE_AA, _SHIFT)
            m = mask.astype(np.uint16)[..., None]
            b = ball.astype(np.uint16) * (255 - sh.astype(np.uint16)[..., None]) // 255
            roi[:] = ((roi.astype(np.uint16) * (255 - m) + b * m) // 255).astype(np.uint8)
        # lid margins and lashes
        self._line(img, np.stack([xs, y_lo], 1), _scale(sub.skin, 0.7), 0.01)
        self._line(img, np.stack([xs, y_up], 1), _scale(sub.hair, 0.5), 0.022 * (1 + 0.3 * closure))

    def _glasses(self, img) -> None:
        sub = self.subject
        col = sub.glasses_color
        for side in (-1, 1):
            cx, cy = side * sub.eye_x, sub.eye_y + 0.02
            if sub.glasses_round:
                self._ellipse(img, (cx, cy), (sub.eye_w + 0.08, 0.17), 0, col, 0.03)
            else:
                w, h = sub.eye_w + 0.1, 0.15
                pts = [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h * 0.9), (cx - w, cy + h)]
                self._line(img, pts, col, 0.03, closed=True)
            self._line(img, [(side * (sub.eye_x + sub.eye_w + 0.09), cy - 0.05), (side * sub.ax * 0.98, cy - 0.08)],
                       col, 0.03)
        self._line(img, [(-sub.eye_x + sub.eye_w + 0.06, sub.eye_y), (0.0, sub.eye_y - 0.03),
                         (sub.eye_x - sub.eye_w - 0.06, sub.eye_y)], col, 0.025)

    # ---------------------------------------------------------------- warp and composite
    def render(
        self,
        c: np.ndarray,
        center_px: tuple[float, float],
        background: np.ndarray,
        origin_px: tuple[int, int] = (0, 0),
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Render the posed head over ``background`` (float32 (h, w, channels), a crop of the sensor).

        ``center_px`` is the sensor pixel of the face centre of the unposed head, ``origin_px`` the
        sensor pixel of the crop's top-left corner. Returns float32 (h, w, channels) radiance in [0, 1].
        """
        if background.ndim != 3 or background.shape[2] != self.nch or background.dtype != np.float32:
            raise SimError(f"background must be float32 (h, w, {self.nch}), got {background.dtype} "
                           f"{background.shape}")
        head = self.head_canvas(c)
        pose = pose_from_controls(c)
        dx, dy = pose.offset_units()
        h, w = background.shape[:2]
        mapx = np.empty((h, w), np.float32)
        mapy = np.empty((h, w), np.float32)
        shade = np.empty((h, w), np.float32)
        rt = np.ascontiguousarray(pose.rotation().T)
        light = np.array([-0.35, -0.45, 1.0])
        light /= np.linalg.norm(light)
        _head_maps(float(origin_px[0]), float(origin_px[1]), center_px[0] + dx * self.s,
                   center_px[1] + dy * self.s, self.s, self.rx, self.ry, rt, self.cx, self.cy,
                   light[0], light[1], light[2], 0.5, mapx, mapy, shade)
        warped = cv2.remap(head, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if warped.ndim == 2:
            warped = warped[..., None]
        if out is None:
            out = np.empty_like(background)
        _composite(background, warped, shade, out)
        return out

    def face_box(self, c: np.ndarray, center_px: tuple[float, float]) -> tuple[float, float, float, float]:
        """Ground-truth face box (x0, y0, x1, y1) in sensor pixels: the posed face oval, hairline to chin."""
        sub = self.subject
        pose = pose_from_controls(c)
        egg = self._egg(0.26 * float(np.clip(c[_I[26]], 0, 1)), 32)
        egg[:, 1] = np.maximum(egg[:, 1], sub.hairline_y if sub.hair_style != "bald" else -sub.ay)
        xn, yn = egg[:, 0] / self.rx, egg[:, 1] / self.ry
        z = np.sqrt(np.clip(1 - xn**2 - yn**2, 0, 1))
        p = pose.rotation() @ np.stack([xn, yn, z])
        dx, dy = pose.offset_units()
        x = (p[0] * self.rx + dx) * self.s + center_px[0]
        y = (p[1] * self.ry + dy) * self.s + center_px[1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    def extent_px(self) -> tuple[float, float, float, float]:
        """Reach of the head around the face centre in pixels (left, up, right, down), motion included."""
        s = self.s
        return (CANVAS_X + 0.35) * s, (CANVAS_Y0 + 0.3) * s, (CANVAS_X + 0.35) * s, (CANVAS_Y1 + 0.3) * s

"""Sensor models on one scene clock: event cameras (DAVIS346, EVK4), the DAVIS346 APS and IMU, a webcam.

Event camera (per pixel, in log intensity, after ESIM/v2e)::

    I      = radiance * lux / 1000                       photocurrent, 1 = white paper at 1000 lux
    L      = log(I + dark)                               dark current compresses contrast in low light
    Lp    += a * (L - Lp),  a = 1 - exp(-2 pi f_c dt)    photoreceptor low-pass, f_c = cutoff_hz * I
    ref   -= leak_rate_hz * C_on * dt                    leak: slow ON events in the dark
    while Lp - ref >= C_on:  ref += C_on; ON event       C_on, C_off ~ N(mean, sigma) per pixel
    while ref - Lp >= C_off: ref -= C_off; OFF event

Crossing times are interpolated linearly between two rendered instants (so a 250 Hz render gives
microsecond timestamps); a crossing within ``refractory_us`` of the pixel's previous event is dropped.
Background activity is Poisson per pixel, with a log-normal per-pixel rate spread, at
``ba_rate_hz * (1000 / lux) ** ba_lux_exponent`` events per pixel per second; hot pixels fire at
``hot_rate_hz``. Every random draw comes from a Generator seeded by the caller.

Frame cameras (APS, webcam) integrate radiance over the exposure (the caller averages sub-frames),
apply gain, shot and read noise and fixed-pattern noise, and quantise to 8 bits (the webcam also
gamma-encodes to sRGB). Lower light means longer exposure and more gain, hence more noise and blur.

Geometry: pinhole cameras side by side (parallel optical axes, x right, y down, z forward, metres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numba
import numpy as np

from ros2_evmicro.core.events import EVENT_DTYPE
from ros2_evmicro.core.sim.face import SimError

__all__ = [
    "DAVIS346_PARAMS",
    "EVK4_PARAMS",
    "ApsParams",
    "ApsSensor",
    "CameraGeometry",
    "EventSensor",
    "EventSensorParams",
    "ImuModel",
    "WebcamParams",
    "WebcamSensor",
    "default_geometry",
    "homography",
]

LUX_RANGE = (1.0, 100000.0)


def _check_lux(lux: float) -> float:
    lux = float(lux)
    if not (LUX_RANGE[0] <= lux <= LUX_RANGE[1]):
        raise SimError(f"illuminance must be within {LUX_RANGE[0]}..{LUX_RANGE[1]} lux, got {lux}")
    return lux


# ----------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class CameraGeometry:
    """A pinhole camera: sensor size (px), focal lengths and principal point (px), centre (m)."""

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def project(self, p_m) -> tuple[float, float]:
        """Pixel of a world point (metres); the camera looks down +z from ``position_m``."""
        x, y, z = (float(a) - float(b) for a, b in zip(p_m, self.position_m, strict=True))
        if z <= 0:
            raise SimError(f"point {tuple(p_m)} is behind camera {self.name}")
        return self.fx * x / z + self.cx, self.fy * y / z + self.cy

    def px_per_m(self, depth_m: float) -> float:
        """Pixels per metre on a fronto-parallel plane at ``depth_m`` from the camera's plane."""
        return self.fx / (float(depth_m) - self.position_m[2])


def default_geometry() -> dict[str, CameraGeometry]:
    """The rig: DAVIS346 (10 mm lens) in the middle, EVK4 (8 mm) 9 cm to its right, webcam (70 deg HFOV)
    9 cm to its left, all on one bar, parallel optical axes."""
    return {
        "davis": CameraGeometry("davis", 346, 260, 540.0, 540.0, 173.0, 130.0, (0.0, 0.0, 0.0)),
        "evk4": CameraGeometry("evk4", 1280, 720, 1646.0, 1646.0, 640.0, 360.0, (0.09, 0.004, 0.0)),
        "webcam": CameraGeometry("webcam", 1920, 1080, 1371.0, 1371.0, 960.0, 540.0, (-0.09, -0.008, 0.0)),
    }


def homography(src: CameraGeometry, dst: CameraGeometry, depth_m: float) -> np.ndarray:
    """3x3 homography mapping pixels of ``src`` to pixels of ``dst`` for points on the fronto-parallel plane
    at ``depth_m`` (the face plane): exact for parallel pinhole cameras."""
    if depth_m <= max(src.position_m[2], dst.position_m[2]):
        raise SimError(f"plane depth {depth_m} m must lie in front of both cameras")
    zs = depth_m - src.position_m[2]
    zd = depth_m - dst.position_m[2]
    # pixel -> metres on the plane (world) -> pixel
    back = np.array([[zs / src.fx, 0, -src.cx * zs / src.fx + src.position_m[0]],
                     [0, zs / src.fy, -src.cy * zs / src.fy + src.position_m[1]],
                     [0, 0, 1.0]])
    fwd = np.array([[dst.fx / zd, 0, dst.cx - dst.fx * dst.position_m[0] / zd],
                    [0, dst.fy / zd, dst.cy - dst.fy * dst.position_m[1] / zd],
                    [0, 0, 1.0]])
    return fwd @ back


# ------------------------------------------------------------------------------------------ event sensor
@dataclass(frozen=True)
class EventSensorParams:
    """An event camera's pixel array (thresholds are log-intensity steps; rates in Hz)."""

    name: str
    width: int
    height: int
    frame_id: str
    c_on: float = 0.25
    c_off: float = 0.25
    c_sigma: float = 0.03
    c_min: float = 0.05
    refractory_us: float = 300.0
    ba_rate_hz: float = 0.1
    ba_lux_exponent: float = 0.8
    ba_spread: float = 0.5
    ba_on_fraction: float = 0.55
    hot_fraction: float = 1e-4
    hot_rate_hz: float = 30.0
    leak_rate_hz: float = 0.05
    cutoff_hz: float = 3000.0
    dark: float = 0.004


DAVIS346_PARAMS = EventSensorParams(
    "DAVIS346", 346, 260, "davis346_optical", c_on=0.22, c_off=0.28, c_sigma=0.035, refractory_us=500.0,
    ba_rate_hz=0.15, ba_lux_exponent=0.9, ba_on_fraction=0.6, hot_fraction=3e-4, hot_rate_hz=40.0,
    leak_rate_hz=0.1, cutoff_hz=2000.0, dark=0.006,
)
"""DAVIS346: 18.5 um pixels, noisy in dim light (about 0.15 Hz/pixel at 1000 lux, 0.8 Hz at 150 lux)."""

EVK4_PARAMS = EventSensorParams(
    "EVK4", 1280, 720, "evk4_optical", c_on=0.2, c_off=0.2, c_sigma=0.02, refractory_us=100.0,
    ba_rate_hz=0.02, ba_lux_exponent=0.7, ba_on_fraction=0.5, hot_fraction=2e-5, hot_rate_hz=60.0,
    leak_rate_hz=0.02, cutoff_hz=5000.0, dark=0.002,
)
"""Prophesee EVK4 (IMX636): 4.86 um pixels, lower thresholds and much lower background activity."""


@numba.njit(cache=True)
def _dvs_step(new_log, alpha, lp, ref, c_on, c_off, last_t, leak, t0, t1, refr, x0, y0, row0, bx, by, bp, bt, n):
    """Advance the pixels of rows ``row0..`` from t0 to t1 (us, float) and append their events.

    Stops before a row whose events might not fit in the buffers (an upper bound from the log change
    and the thresholds); returns ``(n, next_row, dropped)``: the caller grows the buffers and resumes at
    ``next_row`` (== height when done). ``dropped`` stays 0 unless rounding beats the bound.
    """
    h, w = lp.shape
    cap = bx.shape[0]
    dt = t1 - t0
    dropped = 0
    for j in range(row0, h):
        bound = 0.0
        for i in range(w):
            l1 = lp[j, i] + alpha[j, i] * (new_log[j, i] - lp[j, i])
            bound += abs(l1 - ref[j, i] + leak[j, i]) / min(c_on[j, i], c_off[j, i]) + 2.0
        if cap - n < bound:
            return n, j, dropped
        for i in range(w):
            l0 = lp[j, i]
            l1 = l0 + alpha[j, i] * (new_log[j, i] - l0)
            lp[j, i] = l1
            r = ref[j, i] - leak[j, i]
            d = l1 - l0
            con = c_on[j, i]
            coff = c_off[j, i]
            while l1 - r >= con or r - l1 >= coff:
                on = l1 - r >= con
                if on:
                    r += con
                else:
                    r -= coff
                frac = 1.0
                if abs(d) > 1e-12:
                    frac = min(1.0, max(0.0, (r - l0) / d))
                t = t0 + frac * dt
                if t - last_t[j, i] >= refr:
                    last_t[j, i] = t
                    if n < cap:
                        bx[n] = x0 + i
                        by[n] = y0 + j
                        bp[n] = 1 if on else 0
                        bt[n] = int(math.floor(t))
                        n += 1
                    else:
                        dropped += 1
            ref[j, i] = r
    return n, h, dropped


class EventSensor:
    """The state of an event camera's pixels in a fixed region (the face crop) plus sensor-wide noise.

    Call :meth:`reset` with the first radiance frame of the region, then :meth:`step` with each next
    frame; :meth:`noise` draws background activity and hot-pixel events over the whole sensor.
    """

    def __init__(
        self,
        params: EventSensorParams,
        region: tuple[int, int, int, int],
        *,
        lux: float = 600.0,
        seed: int = 0,
    ) -> None:
        x0, y0, w, h = (int(v) for v in region)
        if w <= 0 or h <= 0 or x0 < 0 or y0 < 0 or x0 + w > params.width or y0 + h > params.height:
            raise SimError(f"region {region} is not inside the {params.width}x{params.height} sensor "
                           f"of {params.name}")
        self.params = params
        self.region = (x0, y0, w, h)
        self.lux = _check_lux(lux)
        self.rng = np.random.default_rng([int(seed), 0xE7E47])
        p = params
        self.c_on = np.maximum(self.rng.normal(p.c_on, p.c_sigma, (h, w)), p.c_min).astype(np.float64)
        self.c_off = np.maximum(self.rng.normal(p.c_off, p.c_sigma, (h, w)), p.c_min).astype(np.float64)
        self.leak_rate = np.abs(self.rng.normal(p.leak_rate_hz, p.leak_rate_hz * 0.5, (h, w)))
        npix = p.width * p.height
        rate = self.rng.lognormal(0.0, p.ba_spread, npix)
        rate *= p.ba_rate_hz * (1000.0 / self.lux) ** p.ba_lux_exponent / rate.mean()
        self.ba_rate_total = float(rate.sum())
        self._ba_cdf = np.cumsum(rate) / rate.sum() if self.ba_rate_total > 0 else np.ones(npix)
        n_hot = int(self.rng.binomial(npix, p.hot_fraction))
        self.hot_idx = np.sort(self.rng.choice(npix, n_hot, replace=False)) if n_hot else np.zeros(0, np.int64)
        self.hot_rate = self.rng.uniform(0.3, 1.7, n_hot) * p.hot_rate_hz
        self.hot_on = self.rng.uniform(0, 1, n_hot)
        self.lp = np.zeros((h, w))
        self.ref = np.zeros((h, w))
        self.last_t = np.full((h, w), -1e18)
        self.t_us: float | None = None
        self.dropped = 0
        cap = max(4096, w * h)
        # x, y, p, t scratch columns for the kernel (grown by doubling)
        self._buf: tuple[np.ndarray, ...] = (np.empty(cap, np.uint16), np.empty(cap, np.uint16),
                                             np.empty(cap, np.int8), np.empty(cap, np.int64))

    def log_intensity(self, radiance: np.ndarray) -> np.ndarray:
        """Log photocurrent of a radiance frame (float64)."""
        return np.log(radiance.astype(np.float64) * (self.lux / 1000.0) + self.params.dark)

    def _alpha(self, radiance: np.ndarray, dt_s: float) -> np.ndarray:
        fc = self.params.cutoff_hz * np.maximum(radiance * (self.lux / 1000.0), 0.002)
        return 1.0 - np.exp(-2 * np.pi * fc * dt_s)

    def _check(self, radiance: np.ndarray) -> np.ndarray:
        r = radiance[..., 0] if radiance.ndim == 3 else radiance
        if r.shape != self.lp.shape:
            raise SimError(f"radiance frame has shape {r.shape}, the region is {self.lp.shape}")
        return r

    def reset(self, radiance: np.ndarray, t_us: float) -> None:
        """Start at ``t_us`` with the pixels adapted to ``radiance`` (random reference within a threshold)."""
        r = self._check(radiance)
        self.lp = self.log_intensity(r)
        u = self.rng.uniform(0, 1, self.lp.shape)
        self.ref = self.lp + (u - 0.5) * np.minimum(self.c_on, self.c_off)
        self.last_t[:] = -1e18
        self.t_us = float(t_us)

    def step(self, radiance: np.ndarray, t_us: float) -> np.ndarray:
        """Signal events of the region between the previous instant and ``t_us`` (EVENT_DTYPE, unsorted)."""
        if self.t_us is None:
            raise SimError("EventSensor.step called before reset")
        r = self._check(radiance)
        t1 = float(t_us)
        if t1 < self.t_us:
            raise SimError(f"time goes backwards: step to {t1} us after {self.t_us} us")
        dt_s = (t1 - self.t_us) * 1e-6
        leak = self.leak_rate * self.c_on * dt_s
        new_log, alpha = self.log_intensity(r), self._alpha(r, dt_s)
        n, row = 0, 0
        while True:
            bx, by, bp, bt = self._buf
            n, row, lost = _dvs_step(new_log, alpha, self.lp, self.ref, self.c_on, self.c_off, self.last_t,
                                     leak, self.t_us, t1, float(self.params.refractory_us), self.region[0],
                                     self.region[1], row, bx, by, bp, bt, n)
            self.dropped += int(lost)
            if row >= self.lp.shape[0]:
                break
            m = 2 * bx.size
            self._buf = tuple(np.concatenate([b[:n], np.empty(m - n, b.dtype)]) for b in self._buf)
        self.t_us = t1
        ev = np.zeros(n, EVENT_DTYPE)
        ev["x"] = bx[:n]
        ev["y"] = by[:n]
        ev["p"] = bp[:n]
        ev["t"] = bt[:n]
        return ev

    def noise(self, t0_us: int, t1_us: int) -> np.ndarray:
        """Background-activity and hot-pixel events in ``[t0_us, t1_us)`` over the whole sensor (unsorted)."""
        dt_s = max(0, int(t1_us) - int(t0_us)) * 1e-6
        w = self.params.width
        n = int(self.rng.poisson(self.ba_rate_total * dt_s))
        idx = np.searchsorted(self._ba_cdf, self.rng.uniform(0, 1, n), side="right")
        idx = np.minimum(idx, self._ba_cdf.size - 1)
        pol = (self.rng.uniform(0, 1, n) < self.params.ba_on_fraction).astype(np.int8)
        counts = self.rng.poisson(self.hot_rate * dt_s) if self.hot_idx.size else np.zeros(0, np.int64)
        hidx = np.repeat(self.hot_idx, counts)
        hpol = (self.rng.uniform(0, 1, hidx.size) < np.repeat(self.hot_on, counts)).astype(np.int8)
        allidx = np.concatenate([idx, hidx])
        ev = np.zeros(allidx.size, EVENT_DTYPE)
        ev["x"] = allidx % w
        ev["y"] = allidx // w
        ev["p"] = np.concatenate([pol, hpol])
        ev["t"] = self.rng.integers(int(t0_us), max(int(t0_us) + 1, int(t1_us)), allidx.size)
        return ev


# -------------------------------------------------------------------------------------- frame sensors
@dataclass(frozen=True)
class ApsParams:
    """DAVIS346 APS (global shutter, linear, mono8)."""

    fps: float = 25.0
    exposure_us: float | None = None
    sensitivity: float = 40.0
    read_noise_dn: float = 2.0
    shot_dn: float = 0.5
    column_fpn_dn: float = 2.0
    pixel_fpn: float = 0.02
    n_sub: int = 3


class ApsSensor:
    """Turns exposure-averaged radiance into DAVIS346 mono8 frames.

    ``DN = sensitivity * radiance * lux * exposure_s * (1 + pixel FPN) + column FPN + noise``; with
    ``exposure_us=None`` the exposure is chosen so that a white surface reaches about 230 DN, capped at
    the frame period and at 40 ms (auto-exposure).
    """

    def __init__(self, width: int, height: int, params: ApsParams = ApsParams(), *, lux: float = 600.0,
                 seed: int = 0) -> None:
        if not (0 < params.fps <= 40.0):
            raise SimError(f"DAVIS346 APS runs at up to 40 fps, got {params.fps}")
        self.params = params
        self.lux = _check_lux(lux)
        self.width, self.height = int(width), int(height)
        self.rng = np.random.default_rng([int(seed), 0xA95])
        cap = min(1e6 / params.fps, 40000.0)
        exp = params.exposure_us
        if exp is None:
            exp = 230.0 / (params.sensitivity * self.lux) * 1e6
        self.exposure_us = float(min(max(exp, 10.0), cap))
        self.gain = params.sensitivity * self.lux * self.exposure_us * 1e-6
        self.col_fpn = self.rng.normal(0, params.column_fpn_dn, width).astype(np.float32)
        self.pix_fpn = (1 + self.rng.normal(0, params.pixel_fpn, (height, width))).astype(np.float32)
        self._bg: np.ndarray | None = None

    def set_background(self, radiance: np.ndarray) -> None:
        """Static full-sensor radiance (float32 (H, W)) that the face crop is pasted onto."""
        self._bg = radiance.astype(np.float32).reshape(self.height, self.width)

    def frame(self, crop: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """mono8 (H, W) frame from an exposure-averaged radiance crop at ``origin`` (x0, y0)."""
        if self._bg is None:
            raise SimError("ApsSensor.frame called before set_background")
        rad = self._bg.copy()
        c = crop[..., 0] if crop.ndim == 3 else crop
        x0, y0 = origin
        rad[y0:y0 + c.shape[0], x0:x0 + c.shape[1]] = c
        dn = rad * self.pix_fpn * np.float32(self.gain)
        p = self.params
        noise = self.rng.standard_normal((self.height, self.width), dtype=np.float32)
        dn += noise * np.sqrt(p.read_noise_dn**2 + p.shot_dn * np.maximum(dn, 0)) + self.col_fpn
        return np.clip(dn + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class WebcamParams:
    """A 1080p USB webcam (rolling-shutter effects ignored)."""

    width: int = 1920
    height: int = 1080
    fps: float = 30.0
    sensitivity: float = 0.12
    read_noise: float = 0.006
    n_sub: int = 3
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)


class WebcamSensor:
    """Turns exposure-averaged BGR radiance into bgr8 frames (auto exposure, gain, noise, sRGB gamma).

    Auto exposure aims at ``radiance 1 -> full scale``: exposure grows as the light drops until it reaches
    the frame period, then the gain rises (and with it the noise). Noise is drawn once into a bank of
    frames and a random shifted window of it is added to each frame (fast at 1920x1080).
    """

    N_BANK = 3
    PAD = 64

    def __init__(self, params: WebcamParams = WebcamParams(), *, lux: float = 600.0, seed: int = 0) -> None:
        if not (1 <= params.fps <= 120):
            raise SimError(f"webcam fps must be within 1..120, got {params.fps}")
        self.params = params
        self.lux = _check_lux(lux)
        self.rng = np.random.default_rng([int(seed), 0x3EBC])
        period_s = 1.0 / params.fps
        want_s = 1.0 / (params.sensitivity * self.lux)
        self.exposure_us = float(min(want_s, period_s * 0.95) * 1e6)
        self.gain = float(want_s / (self.exposure_us * 1e-6))
        sigma = 255.0 * params.read_noise * self.gain * 1.6
        h, w = params.height + self.PAD, params.width + self.PAD
        bank = self.rng.normal(0, sigma, (self.N_BANK, h, w, 3))
        self._noise_pos = np.clip(bank, 0, 255).astype(np.uint8)
        self._noise_neg = np.clip(-bank, 0, 255).astype(np.uint8)
        self._lut = (np.clip(np.linspace(0, 1, 4096), 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
        self._bg: np.ndarray | None = None

    def _encode(self, radiance: np.ndarray) -> np.ndarray:
        wb = np.asarray(self.params.white_balance, np.float32)
        v = radiance * wb * np.float32(4095.0)
        idx = np.clip(v, 0, 4095).astype(np.int32)
        return self._lut[idx]

    def set_background(self, radiance_bgr: np.ndarray) -> None:
        """Static full-frame BGR radiance (float32 (H, W, 3)) that the face crop is pasted onto."""
        p = self.params
        if radiance_bgr.shape != (p.height, p.width, 3):
            raise SimError(f"webcam background must be ({p.height}, {p.width}, 3), got {radiance_bgr.shape}")
        self._bg = self._encode(radiance_bgr)

    def frame(self, crop_bgr: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """bgr8 (H, W, 3) frame from an exposure-averaged BGR radiance crop at ``origin`` (x0, y0)."""
        if self._bg is None:
            raise SimError("WebcamSensor.frame called before set_background")
        img = self._bg.copy()
        x0, y0 = origin
        h, w = crop_bgr.shape[:2]
        img[y0:y0 + h, x0:x0 + w] = self._encode(crop_bgr)
        p = self.params
        k = int(self.rng.integers(0, self.N_BANK))
        oy, ox = (int(v) for v in self.rng.integers(0, self.PAD, 2))
        cv2.add(img, self._noise_pos[k, oy:oy + p.height, ox:ox + p.width], dst=img)
        cv2.subtract(img, self._noise_neg[k, oy:oy + p.height, ox:ox + p.width], dst=img)
        return img


# ------------------------------------------------------------------------------------------------- IMU
@dataclass
class ImuModel:
    """The DAVIS346 IMU on a still tripod: gravity (m/s^2) seen through a small tilt, biases and white noise.

    The camera does not move with the head, so the samples carry only gravity, bias and noise (plus a faint
    table vibration); ``accel`` in m/s^2 and ``gyro`` in rad/s, the units of ``sensor_msgs/Imu``.
    """

    seed: int = 0
    rate_hz: float = 1000.0
    tilt_rad: tuple[float, float] = (0.03, -0.01)
    accel_noise: float = 0.02
    gyro_noise: float = 0.0015
    _rng: np.random.Generator = field(init=False, repr=False)
    _bias: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (1.0 <= self.rate_hz <= 10000.0):
            raise SimError(f"IMU rate must be within 1..10000 Hz, got {self.rate_hz}")
        self._rng = np.random.default_rng([int(self.seed), 0x1A0])
        self._bias = np.concatenate([self._rng.normal(0, 0.05, 3), self._rng.normal(0, 0.003, 3)])

    def samples(self, t0_us: int, t1_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples with timestamps in ``[t0_us, t1_us)``: (t_us int64 (n,), accel (n, 3), gyro (n, 3))."""
        period = 1e6 / self.rate_hz
        k0 = int(math.ceil(int(t0_us) / period))
        k1 = int(math.ceil(int(t1_us) / period))
        t = np.round(np.arange(k0, k1) * period).astype(np.int64)
        n = t.size
        ax, az = self.tilt_rad
        g = 9.80665 * np.array([math.sin(az), -math.cos(ax) * math.cos(az), math.sin(ax)])
        vib = 0.01 * np.sin(2 * np.pi * 47.0 * t * 1e-6)
        accel = g + self._bias[:3] + self._rng.normal(0, self.accel_noise, (n, 3))
        accel[:, 2] += vib
        gyro = self._bias[3:] + self._rng.normal(0, self.gyro_noise, (n, 3))
        return t, accel, gyro


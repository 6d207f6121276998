"""When the face moves: performed actions with onset-apex-offset envelopes, co-activations, and the
involuntary background (spontaneous blinks, head sway, micro-saccades) that every clip carries.

A :class:`Timeline` maps scene time (seconds) to the control vector of :mod:`.face`. Performed actions
are labelled; co-activations (AU6 with AU12, ...) and the background are not. The background is drawn in
10 s blocks from ``(seed, block)``, so a timeline is unbounded (live demo) yet deterministic, and a clip
of any length sees the same involuntary movements at the same times.

Speeds follow micro-expressions: an action lasts 170-500 ms from onset to offset (a blink 100-150 ms,
closing faster than it reopens; a *performed* blink take 100-500 ms, see :func:`take_duration_range_s`);
spontaneous blinks come at about 17 per minute, micro-saccades at about
1.5 per second (25 ms each, about a tenth of the gaze range), and the head sways by a few tenths of a
degree at 0.1-0.8 Hz.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros2_evmicro.core.au import AUS, au_index
from ros2_evmicro.core.sim.face import (
    C_BLINK,
    C_GX,
    C_GY,
    C_PITCH,
    C_ROLL,
    C_TX,
    C_TY,
    C_YAW,
    N_CONTROLS,
    SimError,
)

__all__ = [
    "CO_ACTIVATIONS",
    "Action",
    "Background",
    "Protocol",
    "Segment",
    "Timeline",
    "clip_timeline",
    "duration_range_s",
    "protocol_timeline",
    "random_take",
    "take_duration_range_s",
]

AU_NUMBERS: tuple[int, ...] = tuple(a.number for a in AUS)

CO_ACTIVATIONS: dict[int, tuple[tuple[int, float, float], ...]] = {
    12: ((6, 0.5, 0.7),),
    9: ((4, 0.35, 0.5), (6, 0.25, 0.3)),
    15: ((17, 0.35, 0.4),),
    5: ((2, 0.3, 0.3),),
    23: ((17, 0.25, 0.3),),
    4: ((41, 0.2, 0.2),),
    26: ((5, 0.2, 0.2),),
}
"""Performed AU -> (partner AU, relative intensity, probability): natural co-activations (unlabelled)."""

_DURATIONS: dict[int, tuple[float, float]] = {45: (0.10, 0.15), 43: (0.35, 0.5)}
_TAKE_DURATIONS: dict[int, tuple[float, float]] = {45: (0.10, 0.50)}
_LOG_UNIFORM_TAKES = frozenset({45})
_ENVELOPE_FRACS: dict[int, tuple[float, float]] = {45: (0.35, 0.6), 43: (0.2, 0.25)}


def duration_range_s(au: int) -> tuple[float, float]:
    """Range of natural durations (onset to offset, seconds) of an action of ``au`` (spontaneous blinks
    of the background are drawn from it)."""
    return _DURATIONS.get(int(au), (0.17, 0.5))


def take_duration_range_s(au: int) -> tuple[float, float]:
    """Range of durations of a performed take of ``au`` (:func:`random_take`).

    The natural range, except for the blink: a performed AU45 lasts 100-500 ms, drawn log-uniformly (median
    about 220 ms), so the takes span brisk blinks (100-150 ms, as the spontaneous ones) and the slow blinks of
    a drowsy driver (400 ms and more; ``config/driver_monitor.yaml`` ``long_blink_ms``). A classifier trained
    only on 100-150 ms blinks never sees the slow lid closure of the drowsy segment of the demo.
    """
    au = int(au)
    return _TAKE_DURATIONS.get(au, duration_range_s(au))


def _check_au(au) -> int:
    try:
        idx = au_index(au)
    except ValueError as err:
        raise SimError(str(err)) from None
    return AUS[idx].number


@dataclass(frozen=True)
class Action:
    """One action: ``au`` rises from ``t_start_s`` to ``intensity``, holds, and falls back by
    ``t_start_s + duration_s``. ``onset_frac``/``offset_frac`` are the rise/fall shares of the duration."""

    t_start_s: float
    au: int
    intensity: float
    duration_s: float
    onset_frac: float = 0.35
    offset_frac: float = 0.4
    performed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "au", _check_au(self.au))
        if not (0.0 <= self.intensity <= 1.0):
            raise SimError(f"intensity of AU{self.au} must be in [0, 1], got {self.intensity}")
        if not (0.0 < self.duration_s <= 600.0):
            raise SimError(f"duration of AU{self.au} must be in (0, 600] s, got {self.duration_s}")
        if self.onset_frac <= 0 or self.offset_frac <= 0 or self.onset_frac + self.offset_frac > 1.0:
            raise SimError(f"onset/offset fractions must be > 0 and sum to <= 1, got "
                           f"{self.onset_frac}, {self.offset_frac}")

    @property
    def t_end_s(self) -> float:
        return self.t_start_s + self.duration_s

    @property
    def t_apex_s(self) -> float:
        return self.t_start_s + self.onset_frac * self.duration_s

    def envelope(self, t_s) -> np.ndarray:
        """Activation at times ``t_s`` (seconds): raised-cosine rise, flat apex, raised-cosine fall."""
        t = (np.asarray(t_s, dtype=np.float64) - self.t_start_s) / self.duration_s
        on, off = self.onset_frac, self.offset_frac
        rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / on, 0, 1))
        fall = 0.5 - 0.5 * np.cos(np.pi * np.clip((1 - t) / off, 0, 1))
        env = np.minimum(rise, fall)
        env[(t <= 0) | (t >= 1)] = 0.0
        return env * self.intensity


@dataclass(frozen=True)
class Background:
    """Involuntary movements present in every clip (set ``enabled=False`` for a perfectly still face)."""

    enabled: bool = True
    blink_rate_hz: float = 0.28
    sway_rad: float = 0.006
    sway_units: float = 0.012
    saccade_rate_hz: float = 1.5
    saccade_amp: float = 0.1
    block_s: float = 10.0


@dataclass
class _Block:
    blinks: list[Action]
    saccade_t: np.ndarray
    saccade_xy: np.ndarray


class Timeline:
    """Scene time -> control vector: performed actions, their co-activations, and the background.

    ``actions`` are :class:`Action` objects or ``(t_start_s, au, intensity, duration_s)`` tuples.
    """

    SACCADE_S = 0.025

    def __init__(
        self,
        actions: Iterable[Action | Sequence] = (),
        *,
        background: Background | None = None,
        seed: int = 0,
        coactivate: bool = True,
    ) -> None:
        acts: list[Action] = []
        for a in actions:
            if isinstance(a, Action):
                acts.append(a)
            else:
                try:
                    t0, au, inten, dur = a
                except (TypeError, ValueError):
                    raise SimError(f"an action must be Action or (t_start_s, au, intensity, duration_s), "
                                   f"got {a!r}") from None
                on, off = _ENVELOPE_FRACS.get(_check_au(au), (0.35, 0.4))
                acts.append(Action(float(t0), au, float(inten), float(dur), on, off))
        self.actions: tuple[Action, ...] = tuple(sorted(acts, key=lambda x: x.t_start_s))
        self.background = background or Background()
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 0xC0])
        co: list[Action] = []
        if coactivate:
            for a in self.actions:
                if not a.performed:
                    continue
                for partner, rel, prob in CO_ACTIVATIONS.get(a.au, ()):
                    draw = rng.uniform(size=4)
                    if draw[0] < prob:
                        co.append(Action(a.t_start_s + (draw[1] - 0.3) * 0.08, partner,
                                         min(1.0, a.intensity * rel * (0.7 + 0.4 * draw[2])),
                                         a.duration_s * (0.9 + 0.2 * draw[3]), a.onset_frac, a.offset_frac,
                                         performed=False))
        self.coactions: tuple[Action, ...] = tuple(co)
        srng = np.random.default_rng([self.seed, 0x5A])
        # 3 sinusoids per sway channel: (channel, amplitude, frequency Hz, phase)
        self._sway = [(ch, srng.uniform(0.3, 1.0) / 3, srng.uniform(0.1, 0.8), srng.uniform(0, 2 * np.pi))
                      for ch in (C_YAW, C_PITCH, C_ROLL, C_TX, C_TY) for _ in range(3)]
        self._blocks: dict[int, _Block] = {}

    @property
    def duration_s(self) -> float:
        """End of the last performed or co-activated action (0 for an empty timeline)."""
        ends = [a.t_end_s for a in self.actions + self.coactions]
        return max(ends) if ends else 0.0

    def _block(self, k: int) -> _Block:
        if k in self._blocks:
            return self._blocks[k]
        bg = self.background
        rng = np.random.default_rng([self.seed, 0xB6, k + (1 << 20)])
        t0 = k * bg.block_s
        n_b = rng.poisson(bg.blink_rate_hz * bg.block_s)
        blinks = []
        for tb in np.sort(rng.uniform(t0, t0 + bg.block_s, n_b)):
            lo, hi = duration_range_s(45)
            blinks.append(Action(float(tb), 45, float(rng.uniform(0.75, 1.0)), float(rng.uniform(lo, hi)),
                                 0.35, 0.6, performed=False))
        n_s = rng.poisson(bg.saccade_rate_hz * bg.block_s)
        st = np.sort(rng.uniform(t0, t0 + bg.block_s, n_s))
        sxy = rng.normal(0, bg.saccade_amp / 2, (n_s, 2))
        blk = _Block(blinks, st, sxy)
        if len(self._blocks) > 64:
            self._blocks.clear()
        self._blocks[k] = blk
        return blk

    def controls(self, t_s) -> np.ndarray:
        """Control vectors at times ``t_s`` (seconds): float32 (N_CONTROLS,) for a scalar, (n, N_CONTROLS)
        for an array."""
        t = np.asarray(t_s, dtype=np.float64)
        scalar = t.ndim == 0
        t = np.atleast_1d(t)
        out = np.zeros((t.size, N_CONTROLS), dtype=np.float64)
        for a in self.actions + self.coactions:
            if t.size and (a.t_end_s < t.min() or a.t_start_s > t.max()):
                continue
            i = au_index(a.au)
            out[:, i] = np.maximum(out[:, i], a.envelope(t))
        bg = self.background
        if bg.enabled and t.size:
            for ch, amp, f, ph in self._sway:
                scale = bg.sway_rad if ch in (C_YAW, C_PITCH, C_ROLL) else bg.sway_units
                out[:, ch] += scale * amp * np.sin(2 * np.pi * f * t + ph)
            k0 = int(math.floor(t.min() / bg.block_s)) - 1
            k1 = int(math.floor(t.max() / bg.block_s))
            prev_xy = np.zeros(2)
            sac_t, sac_xy = [], []
            for k in range(k0, k1 + 1):
                blk = self._block(k)
                for b in blk.blinks:
                    if b.t_end_s >= t.min() and b.t_start_s <= t.max():
                        out[:, C_BLINK] = np.maximum(out[:, C_BLINK], b.envelope(t))
                sac_t.append(blk.saccade_t)
                sac_xy.append(blk.saccade_xy)
            st = np.concatenate(sac_t)
            sxy = np.concatenate(sac_xy)
            if st.size:
                idx = np.searchsorted(st, t, side="right") - 1
                cur = np.where(idx[:, None] >= 0, sxy[np.maximum(idx, 0)], prev_xy)
                prv = np.where(idx[:, None] >= 1, sxy[np.maximum(idx - 1, 0)], prev_xy)
                since = np.where(idx >= 0, t - st[np.maximum(idx, 0)], np.inf)
                w = 0.5 - 0.5 * np.cos(np.pi * np.clip(since / self.SACCADE_S, 0, 1))
                out[:, C_GX] = prv[:, 0] + (cur[:, 0] - prv[:, 0]) * w
                out[:, C_GY] = prv[:, 1] + (cur[:, 1] - prv[:, 1]) * w
        out = out.astype(np.float32)
        return out[0] if scalar else out

    def performed_at(self, t_s: float) -> tuple[int, ...]:
        """AU numbers of the performed (labelled) actions active at ``t_s``."""
        return tuple(a.au for a in self.actions if a.performed and a.t_start_s < t_s < a.t_end_s)


def random_take(au: int, rng: np.random.Generator, window_s: tuple[float, float]) -> Action:
    """One take of ``au`` with random intensity (0.6-1), a duration in :func:`take_duration_range_s` and
    onset inside ``window_s``."""
    au = _check_au(au)
    lo, hi = take_duration_range_s(au)
    if au in _LOG_UNIFORM_TAKES:
        dur = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    else:
        dur = float(rng.uniform(lo, hi))
    w0, w1 = window_s
    if w1 - w0 < lo:
        raise SimError(f"window {window_s} s is shorter than the shortest take of AU{au} ({lo:.3f} s)")
    # a take fits its perform window: a compressed protocol (time_scale << 1) shortens the slow ones
    dur = min(dur, w1 - w0)
    on, off = _ENVELOPE_FRACS.get(au, (0.35, 0.4))
    jit = rng.uniform(-0.05, 0.05, 2)
    return Action(float(rng.uniform(w0, w1 - dur)), au, float(rng.uniform(0.6, 1.0)), dur,
                  on + jit[0] * on, off + jit[1] * off)


def clip_timeline(au: int, duration_s: float = 2.5, seed: int = 0, *,
                  background: Background | None = None, margin_s: float | None = None) -> Timeline:
    """Timeline of one clip: one random take of ``au`` inside ``[margin_s, duration_s - margin_s]``
    (default margin: 0.25 s, less when the clip is too short to hold the longest take of ``au``)."""
    longest = take_duration_range_s(_check_au(au))[1]
    if margin_s is None:
        margin_s = min(0.25, max(0.0, (duration_s - longest) / 2))
    if duration_s <= 2 * margin_s or duration_s <= longest:
        raise SimError(f"clip of {duration_s} s is too short for margins of {margin_s} s and a take of "
                       f"AU{au} (up to {longest} s)")
    rng = np.random.default_rng([int(seed), _check_au(au), 0xC11])
    act = random_take(au, rng, (margin_s, duration_s - margin_s))
    return Timeline([act], background=background, seed=seed)


# --------------------------------------------------------------------------------------------- protocol
PHASES = ("demo", "countdown", "perform", "rest")


@dataclass(frozen=True)
class Segment:
    """One protocol phase of one trial of one AU, ``[t_start_s, t_end_s)`` in scene time."""

    au: int
    trial: int
    phase: str
    t_start_s: float
    t_end_s: float
    segment: str


@dataclass
class Protocol:
    """The protocol's segments, the timeline that performs it, and its marker messages."""

    segments: list[Segment]
    timeline: Timeline
    subject: str = "S01"
    session: str = "sim"
    run: str = "main"
    actions: list[Action] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.segments[-1].t_end_s if self.segments else 0.0

    def segment_at(self, t_s: float) -> Segment | None:
        """The segment that covers ``t_s``, or None outside the protocol."""
        for s in self.segments:
            if s.t_start_s <= t_s < s.t_end_s:
                return s
        return None

    def markers(self, t0_ns: int = 0) -> list[dict]:
        """One ``protocol/marker`` JSON object per phase change (plus a final ``done``), stamped at
        ``t0_ns`` + the phase start."""
        out = [
            {"stamp_ns": int(t0_ns + round(s.t_start_s * 1e9)), "session": self.session,
             "subject": self.subject, "run": self.run, "au": s.au, "trial": s.trial, "phase": s.phase,
             "segment": s.segment}
            for s in self.segments
        ]
        if self.segments:
            last = self.segments[-1]
            out.append({"stamp_ns": int(t0_ns + round(last.t_end_s * 1e9)), "session": self.session,
                        "subject": self.subject, "run": self.run, "au": last.au, "trial": last.trial,
                        "phase": "done", "segment": last.segment})
        return out


def protocol_timeline(
    aus: Iterable[int] | None = None,
    *,
    perform_s: float = 2.5,
    rest_s: float = 2.0,
    demo_s: float = 2.0,
    countdown_s: float = 1.0,
    trials: int = 1,
    seed: int = 0,
    start_s: float = 0.5,
    subject: str = "S01",
    session: str = "sim",
    run: str = "main",
    background: Background | None = None,
) -> Protocol:
    """The recording protocol: for each AU (all 21 by default) and trial, phases demo -> countdown ->
    perform -> rest; one random take of the AU inside each perform phase. Phases of length 0 are left out.
    """
    aus = AU_NUMBERS if aus is None else tuple(_check_au(a) for a in aus)
    if trials < 1:
        raise SimError(f"trials must be >= 1, got {trials}")
    if min(perform_s, rest_s, demo_s, countdown_s) < 0 or perform_s <= 0:
        raise SimError("phase durations must be >= 0 s and perform_s > 0")
    rng = np.random.default_rng([int(seed), 0x9207])
    t = float(start_s)
    segs: list[Segment] = []
    acts: list[Action] = []
    for au in aus:
        for trial in range(1, trials + 1):
            name = f"{subject}_AU{au}_t{trial}"
            for phase, d in zip(PHASES, (demo_s, countdown_s, perform_s, rest_s), strict=True):
                if d <= 0:
                    continue
                segs.append(Segment(au, trial, phase, t, t + d, name))
                if phase == "perform":
                    margin = min(0.2, 0.1 * d)
                    acts.append(random_take(au, rng, (t + margin, t + d - margin)))
                t += d
    tl = Timeline(acts, background=background, seed=seed)
    return Protocol(segs, tl, subject=subject, session=session, run=run, actions=acts)

"""Driver monitoring from the Action Unit stream: drowsiness and distraction levels with hysteresis.

Pure logic (no ROS): :class:`DriverMonitor` is fed one AU score vector per frame (``update(t_ns, scores)``,
about 30 Hz) and returns the events of that step; :meth:`DriverMonitor.status` gives the two assessments
(``drowsiness``, ``distraction``) with their indicator values. ``docs/driver_monitor.md`` explains every rule
and the commonly used values the default thresholds follow.

Three layers:

1. :class:`AuActivity` turns the noisy scores into AU activations: an AU becomes active when its score
   reaches ``on_threshold`` (in ``argmax`` mode it must also lead the runner-up by ``argmax_margin``), stays
   active until the score falls below ``off_threshold`` (hysteresis), and counts only after
   ``min_active_frames`` consecutive active samples (debounce of one-frame spikes).
   The lid-closing AUs (``closure_aus``: AU41 lid droop, AU43 eyes closed, AU45 blink) are also summed
   (at most 1) into one *eye-closure* channel with the same hysteresis. FACS tells these AUs apart by how
   long and how far the lid closes; an event camera sees the lid move down and back up and little in
   between, and a window classifier spreads its votes over the three (measured: docs/driver_monitor.md).
   The monitor measures the duration itself, on the pooled channel.
2. Indicators over a sliding window (``window_s``): blink rate (eye-closure activations per minute), mean
   blink duration, long-blink rate, PERCLOS-like eye-closure fraction (eye-closure channel active),
   lid-droop fraction (AU41), the fraction with a supporting AU active (AU2, AU15, AU17, AU9), the ongoing
   eye closure, and for distraction the ongoing head-away (AU51-54) and gaze-away (AU61-64) times and the
   total away time.
3. Each indicator is normalised so that 1 = its WARN threshold and 2 = its ERROR threshold (linear in
   between, proportional below); a monitor's score is the largest normalised indicator (drowsiness adds
   ``support_weight`` per piece of supporting evidence). :class:`LevelTracker` turns the score into
   OK / WARN / ERROR: a level is entered as soon as the score reaches it, left only when the score falls
   ``level_hysteresis`` below its entry value and the level has been held ``level_hold_s``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros2_evmicro.core.au import AU_CODES, AU_NAMES, AUS, NUM_AUS, au_index
from ros2_evmicro.core.params import ParamError, ParamValues

__all__ = [
    "LEVELS",
    "Activation",
    "Assessment",
    "AuActivity",
    "DriverMonitor",
    "LevelTracker",
    "MonitorError",
    "Onset",
    "au_label",
    "format_event",
    "normalise",
]

LEVELS: tuple[str, ...] = ("OK", "WARN", "ERROR")
"""Level names; the index is the level (0 = OK, 1 = WARN, 2 = ERROR), as in diagnostic_msgs."""

_I_AU41 = au_index(41)
_HEAD = np.array([au_index(a) for a in (51, 52, 53, 54)])
_GAZE = np.array([au_index(a) for a in (61, 62, 63, 64)])


class MonitorError(ValueError):
    """Bad input to the driver monitor (scores of the wrong shape, NaN) or inconsistent thresholds."""


# -- AU activations ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Onset:
    """An activation that has just been confirmed (``min_active_frames`` samples): AU class index ``index``,
    first active sample at ``start_ns``, confirmed at ``t_ns`` with ``score``."""

    index: int
    start_ns: int
    t_ns: int
    score: float

    @property
    def code(self) -> str:
        return AU_CODES[self.index]

    @property
    def name(self) -> str:
        return AUS[self.index].name


@dataclass(frozen=True)
class Activation:
    """A finished activation of AU class ``index``: first active sample ``start_ns``, first sample below
    the off threshold ``end_ns`` (ns, same clock as the input), highest score ``peak``."""

    index: int
    start_ns: int
    end_ns: int
    peak: float

    @property
    def code(self) -> str:
        return AU_CODES[self.index]

    @property
    def name(self) -> str:
        return AUS[self.index].name

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class AuActivity:
    """Hysteresis tracker of the 21 AUs (see the module docstring, layer 1), or of ``channels`` other scores.

    ``update`` returns the onsets confirmed and the activations finished at that sample; ``active`` is the
    raw state (including not yet confirmed activations), ``start_ns`` its start times.
    """

    def __init__(self, on_threshold: float = 0.5, off_threshold: float = 0.35, min_active_frames: int = 2,
                 onset_mode: str = "threshold", argmax_margin: float = 0.1, channels: int = NUM_AUS):
        if not 0.0 <= off_threshold <= on_threshold <= 1.0:
            raise MonitorError(f"need 0 <= off_threshold <= on_threshold <= 1, got off={off_threshold}, "
                               f"on={on_threshold}")
        if onset_mode not in ("threshold", "argmax"):
            raise MonitorError(f"onset_mode must be 'threshold' or 'argmax', got {onset_mode!r}")
        if min_active_frames < 1:
            raise MonitorError(f"min_active_frames must be >= 1, got {min_active_frames}")
        if channels < (2 if onset_mode == "argmax" else 1):
            raise MonitorError(f"need at least {2 if onset_mode == 'argmax' else 1} channels, got {channels}")
        self.channels = int(channels)
        self.on_threshold = float(on_threshold)
        self.off_threshold = float(off_threshold)
        self.min_active_frames = int(min_active_frames)
        self.onset_mode = onset_mode
        self.argmax_margin = float(argmax_margin)
        self.reset()

    def reset(self) -> None:
        n = self.channels
        self.active = np.zeros(n, dtype=bool)
        self.confirmed = np.zeros(n, dtype=bool)
        self.start_ns = np.zeros(n, dtype=np.int64)
        self.peak = np.zeros(n, dtype=np.float64)
        self.run = np.zeros(n, dtype=np.int64)

    def update(self, t_ns: int, scores: np.ndarray) -> tuple[list[Onset], list[Activation]]:
        """One sample: ``scores`` (channels,) in [0, 1] at time ``t_ns``. Returns (onsets, finished activations)."""
        s = scores
        onsets: list[Onset] = []
        ended: list[Activation] = []
        ending = self.active & (s < self.off_threshold)
        for i in np.flatnonzero(ending):
            if self.confirmed[i]:
                ended.append(Activation(int(i), int(self.start_ns[i]), int(t_ns), float(self.peak[i])))
        self.active[ending] = False
        self.confirmed[ending] = False
        self.run[ending] = 0
        cont = self.active
        self.peak[cont] = np.maximum(self.peak[cont], s[cont])
        self.run[cont] += 1
        if self.onset_mode == "argmax":
            can = np.zeros(self.channels, dtype=bool)
            order = np.argsort(s)
            top = int(order[-1])
            if s[top] >= self.on_threshold and s[top] - s[order[-2]] >= self.argmax_margin:
                can[top] = True
        else:
            can = s >= self.on_threshold
        start = can & ~self.active & ~ending
        self.active[start] = True
        self.start_ns[start] = t_ns
        self.peak[start] = s[start]
        self.run[start] = 1
        confirm = self.active & ~self.confirmed & (self.run >= self.min_active_frames)
        for i in np.flatnonzero(confirm):
            onsets.append(Onset(int(i), int(self.start_ns[i]), int(t_ns), float(s[i])))
        self.confirmed |= confirm
        return onsets, ended

    def flush(self, t_ns: int) -> list[Activation]:
        """Close every confirmed activation at ``t_ns`` (end of input) and reset."""
        out = [Activation(int(i), int(self.start_ns[i]), int(t_ns), float(self.peak[i]))
               for i in np.flatnonzero(self.active & self.confirmed)]
        self.reset()
        return out


# -- levels -----------------------------------------------------------------------------------------------

def normalise(value: float, warn: float, error: float) -> float:
    """Indicator value -> score: ``value / warn`` below ``warn``, then linear so that ``error`` gives 2.

    NaN (indicator not available) gives 0. ``0 < warn < error`` is required.
    """
    if value != value:
        return 0.0
    if value < warn:
        return max(value, 0.0) / warn
    return 1.0 + (value - warn) / (error - warn)


class LevelTracker:
    """OK(0) / WARN(1) / ERROR(2) from a score (1 = WARN entry, 2 = ERROR entry) with hysteresis and hold.

    A higher level is entered at once; a level is left only when the score is below its entry value minus
    ``hysteresis`` and the current level has lasted ``hold_s``; it then falls to the level the score
    supports (with the same hysteresis), possibly straight from ERROR to OK.
    """

    def __init__(self, hysteresis: float = 0.2, hold_s: float = 3.0):
        self.hysteresis = float(hysteresis)
        self.hold_ns = int(hold_s * 1e9)
        self.level = 0
        self.since_ns: int | None = None

    def update(self, t_ns: int, score: float) -> int | None:
        """Feed the score at ``t_ns``; returns the new level when it changed, else None."""
        if self.since_ns is None:
            self.since_ns = t_ns
        target = 2 if score >= 2.0 else 1 if score >= 1.0 else 0
        if target > self.level:
            self.level, self.since_ns = target, t_ns
            return target
        if target < self.level and t_ns - self.since_ns >= self.hold_ns:
            h = self.hysteresis
            keep = 2 if score >= 2.0 - h else 1 if score >= 1.0 - h else 0
            new = min(self.level, keep)
            if new < self.level:
                self.level, self.since_ns = new, t_ns
                return new
        return None


@dataclass
class Assessment:
    """One monitor's state: ``level`` (OK/WARN/ERROR), ``score`` (1 = WARN, 2 = ERROR), the indicator behind
    the score (``reason``) and every indicator value (units in the names)."""

    level: str
    score: float
    reason: str
    values: dict[str, float] = field(default_factory=dict)

    @property
    def level_index(self) -> int:
        return LEVELS.index(self.level)

    @property
    def message(self) -> str:
        return "ok" if self.level == "OK" and self.score < 1.0 else f"{self.level.lower()}: {self.reason}"


# -- the monitor ------------------------------------------------------------------------------------------

_CLOSED, _DROOP, _SUPPORT, _AWAY = 0, 1, 2, 3


@dataclass
class _Episode:
    """A head- or gaze-away episode: first and last active sample, the AU, whether its event went out."""

    start_ns: int
    last_ns: int
    index: int
    reported: bool = False


class DriverMonitor:
    """Drowsiness and distraction from AU scores (see the module docstring and docs/driver_monitor.md).

    ``params``: values of :data:`ros2_evmicro.specs.driver_monitor.SPEC` (a mapping of overrides or the
    node's :class:`ParamValues`); missing ones take the defaults.
    """

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.p = self._check(params)
        self.activity = self._activity(self.p)
        self.closure = self._closure_activity(self.p)
        self.drowsy = LevelTracker(self.p.level_hysteresis, self.p.level_hold_s)
        self.distract = LevelTracker(self.p.level_hysteresis, self.p.level_hold_s)
        self.reset()

    # -- configuration --------------------------------------------------------------------------------
    @staticmethod
    def _check(params: Mapping[str, Any] | None) -> ParamValues:
        from ros2_evmicro.specs.driver_monitor import SPEC

        try:
            p = SPEC.values(dict(params or {}))
        except ParamError as err:
            raise MonitorError(str(err)) from None
        pairs = [("off_threshold", "on_threshold"), ("blink_ms_warn", "blink_ms_error"),
                 ("long_blinks_warn_per_min", "long_blinks_error_per_min"), ("perclos_warn", "perclos_error"),
                 ("eyes_closed_warn_s", "eyes_closed_error_s"), ("droop_warn", "droop_error"),
                 ("away_warn_s", "away_error_s"), ("away_total_warn_s", "away_total_error_s")]
        bad = [f"{a}={p[a]} must be below {b}={p[b]}" for a, b in pairs if not p[a] < p[b]]
        bad += [f"{a} must be > 0" for a, _ in pairs[1:] if p[a] <= 0]
        for name in ("support_aus", "closure_aus"):
            try:
                [au_index(a) for a in p[name]]
            except ValueError as err:
                bad.append(f"{name}: {err}")
        if not p.closure_aus:
            bad.append("closure_aus must name at least one AU (e.g. [45])")
        if bad:
            raise MonitorError("driver monitor thresholds: " + "; ".join(bad))
        return p

    @staticmethod
    def _activity(p: ParamValues) -> AuActivity:
        return AuActivity(p.on_threshold, p.off_threshold, p.min_active_frames, p.onset_mode, p.argmax_margin)

    @staticmethod
    def _closure_activity(p: ParamValues) -> AuActivity:
        return AuActivity(p.on_threshold, p.off_threshold, p.min_active_frames, "threshold", channels=1)

    def configure(self, params: Mapping[str, Any]) -> None:
        """Apply new parameter values (runtime change) keeping the history; raises :class:`MonitorError`."""
        p = self._check(params)
        act, cl = self._activity(p), self._closure_activity(p)
        for new, old in ((act, self.activity), (cl, self.closure)):
            new.active, new.confirmed, new.start_ns = old.active, old.confirmed, old.start_ns
            new.peak, new.run = old.peak, old.run
        self.p, self.activity, self.closure = p, act, cl
        for tr in (self.drowsy, self.distract):
            tr.hysteresis, tr.hold_ns = p.level_hysteresis, int(p.level_hold_s * 1e9)
        self._support = np.array([au_index(a) for a in p.support_aus])
        self._closure_idx = np.array([au_index(a) for a in p.closure_aus])

    def reset(self) -> None:
        """Forget all history (levels back to OK)."""
        self.activity.reset()
        self.closure.reset()
        self.drowsy.level, self.drowsy.since_ns = 0, None
        self.distract.level, self.distract.since_ns = 0, None
        self._support = np.array([au_index(a) for a in self.p.support_aus])
        self._closure_idx = np.array([au_index(a) for a in self.p.closure_aus])
        self.closure_score = 0.0
        self.t0_ns: int | None = None
        self.last_ns: int | None = None
        self._samples: deque[tuple[int, int, int]] = deque()  # (t_ns, dt_ns, flag bits)
        self._sums = np.zeros(4, dtype=np.int64)  # ns with each flag, in the window
        self._covered_ns = 0
        self._blinks: deque[tuple[int, float]] = deque()  # (end_ns, duration_ms)
        self._long: deque[int] = deque()
        self._closure_reported = False
        self._closure_ep: tuple[int, int, float] | None = None  # the open eye closure: start, end, peak
        self._away: dict[str, _Episode | None] = {"head": None, "gaze": None}
        self.n_samples = 0
        self._drowsy_a = Assessment("OK", 0.0, "no input")
        self._distract_a = Assessment("OK", 0.0, "no input")

    # -- feeding --------------------------------------------------------------------------------------
    def update(self, t_ns: int, scores: Sequence[float] | np.ndarray) -> list[dict[str, Any]]:
        """One AU sample (21 scores in Table 1 order at ``t_ns``); returns the events of this step.

        A sample not later than the previous one is ignored; a jump back of more than 1 s (a looped bag)
        resets the monitor and emits a ``reset`` event. Scores are clipped to [0, 1].
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.shape[0] != NUM_AUS:
            raise MonitorError(f"AU scores must have {NUM_AUS} values, got {s.shape[0]}")
        if not np.all(np.isfinite(s)):
            raise MonitorError(f"AU scores must be finite, got {s.tolist()}")
        s = np.clip(s, 0.0, 1.0)
        t_ns = int(t_ns)
        events: list[dict[str, Any]] = []
        if self.last_ns is not None and t_ns <= self.last_ns:
            if self.last_ns - t_ns <= 1_000_000_000:
                return events
            back = (self.last_ns - t_ns) / 1e9
            self.reset()
            events.append(self._event(t_ns, "reset", f"time went back by {back:.1f} s: monitor reset"))
        if self.t0_ns is None:
            self.t0_ns = t_ns
        dt = 0 if self.last_ns is None else min(t_ns - self.last_ns, int(self.p.max_gap_ms * 1e6))
        self.last_ns = t_ns
        self.n_samples += 1
        p = self.p
        act = self.activity
        act.update(t_ns, s)
        # the eye-closure channel: the lid-closing AUs pooled (module docstring)
        cl = self.closure
        self.closure_score = min(1.0, float(s[self._closure_idx].sum()))
        _, closures = cl.update(t_ns, np.array([self.closure_score]))

        # eye closures: the channel's activations bridged over silent gaps up to closure_gap_ms (an event
        # camera sees the lid close and reopen, and little while it stays shut), finished once no activation
        # has followed for that long; a finished closure is a blink
        gap_ns = int(p.closure_gap_ms * 1e6)
        for a in closures:
            cep = self._closure_ep
            if cep is not None and a.start_ns - cep[1] <= gap_ns:
                self._closure_ep = (cep[0], a.end_ns, max(cep[2], a.peak))
            else:
                if cep is not None:
                    self._finish_closure(t_ns, cep, events)
                self._closure_ep = (a.start_ns, a.end_ns, a.peak)
        cep = self._closure_ep
        joining = bool(cl.active[0]) and cep is not None and int(cl.start_ns[0]) - cep[1] <= gap_ns
        if cep is not None and not joining and t_ns - cep[1] > gap_ns:
            self._finish_closure(t_ns, cep, events)
            self._closure_ep = cep = None
        # ongoing eye closure: the current activation, from the start of the closure it continues
        closed_s = 0.0
        if cl.active[0]:
            start = cep[0] if joining and cep is not None else int(cl.start_ns[0])
            closed_s = max((t_ns - start) / 1e9 - p.closure_spread_ms / 1e3, 0.0)
        if not cl.active[0] and self._closure_ep is None:
            self._closure_reported = False
        elif closed_s >= p.eyes_closed_warn_s and not self._closure_reported:
            self._closure_reported = True
            events.append(self._event(t_ns, "eyes_closed", f"eyes closed for {closed_s:.1f} s",
                                      duration_s=closed_s))
        # head / gaze away episodes
        away_now = {}
        for group, idx in (("head", _HEAD), ("gaze", _GAZE)):
            ep = self._away[group]
            on = act.active[idx]
            if on.any():
                best = int(idx[np.argmax(np.where(on, s[idx], -1.0))])
                if ep is None:
                    ep = self._away[group] = _Episode(t_ns, t_ns, best)
                ep.last_ns, ep.index = t_ns, best
            elif ep is not None and t_ns - ep.last_ns > p.away_gap_ms * 1e6:
                ep = self._away[group] = None
            dur = (ep.last_ns - ep.start_ns) / 1e9 if ep is not None else 0.0
            away_now[group] = dur
            if ep is not None and dur >= p.away_warn_s and not ep.reported:
                ep.reported = True
                code = AU_CODES[ep.index]
                events.append(self._event(t_ns, "look_away",
                                          f"{group} away ({code} {AUS[ep.index].name}) for {dur:.1f} s",
                                          source=group, au=code, duration_s=dur))

        # window bookkeeping
        flags = ((int(cl.active[0]) << _CLOSED)
                 | (int(act.active[_I_AU41]) << _DROOP)
                 | (int(act.active[self._support].any()) << _SUPPORT)
                 | (int(act.active[_HEAD].any() or act.active[_GAZE].any()) << _AWAY))
        self._samples.append((t_ns, dt, flags))
        self._covered_ns += dt
        for b in range(4):
            if flags >> b & 1:
                self._sums[b] += dt
        lo = t_ns - int(p.window_s * 1e9)
        while self._samples and self._samples[0][0] <= lo:
            _, d, f = self._samples.popleft()
            self._covered_ns -= d
            for b in range(4):
                if f >> b & 1:
                    self._sums[b] -= d
        while self._blinks and self._blinks[0][0] <= lo:
            self._blinks.popleft()
        while self._long and self._long[0] <= lo:
            self._long.popleft()

        # indicators -> scores -> levels
        self._drowsy_a = self._assess_drowsiness(closed_s)
        self._distract_a = self._assess_distraction(away_now)
        for name, tracker, asm in (("drowsiness", self.drowsy, self._drowsy_a),
                                   ("distraction", self.distract, self._distract_a)):
            prev = tracker.level
            new = tracker.update(t_ns, asm.score)
            asm.level = LEVELS[tracker.level]
            if new is not None:
                events.append(self._event(t_ns, name, f"{LEVELS[prev]} -> {LEVELS[new]}: {asm.reason}",
                                          level=LEVELS[new], previous=LEVELS[prev], score=asm.score,
                                          reason=asm.reason))
        return events

    def _finish_closure(self, t_ns: int, ep: tuple[int, int, float], events: list[dict[str, Any]]) -> None:
        """Count a finished eye closure ``(start_ns, end_ns, peak)`` as a blink (less the stream's spread)."""
        p = self.p
        active_ms = (ep[1] - ep[0]) / 1e6
        dur = max(active_ms - p.closure_spread_ms, 0.0)
        self._blinks.append((ep[1], dur))
        events.append(self._event(t_ns, "blink", f"blink {dur:.0f} ms", duration_ms=dur, peak=ep[2],
                                  active_ms=active_ms))
        if dur > p.long_blink_ms:
            self._long.append(ep[1])
            events.append(self._event(t_ns, "long_blink", f"long blink {dur:.0f} ms", duration_ms=dur,
                                      peak=ep[2], active_ms=active_ms))

    def _event(self, t_ns: int, kind: str, message: str, **extra: Any) -> dict[str, Any]:
        t0 = self.t0_ns if self.t0_ns is not None else t_ns
        return {"t_ns": int(t_ns), "t": (t_ns - t0) / 1e9, "kind": kind, "message": message, **extra}

    def _denominator_s(self) -> float:
        return max(self._covered_ns / 1e9, self.p.warmup_s, 1e-9)

    def _assess_drowsiness(self, closed_s: float) -> Assessment:
        p = self.p
        den = self._denominator_s()
        n_blinks = len(self._blinks)
        rate = n_blinks / den * 60.0
        mean_ms = float(np.mean([d for _, d in self._blinks])) if n_blinks >= p.min_blinks else float("nan")
        long_rate = len(self._long) / den * 60.0
        perclos = float(self._sums[_CLOSED]) / 1e9 / den
        droop = float(self._sums[_DROOP]) / 1e9 / den
        support = float(self._sums[_SUPPORT]) / 1e9 / den
        values = {"blink_rate_per_min": rate, "blink_ms_mean": mean_ms, "blinks_in_window": float(n_blinks),
                  "long_blinks_per_min": long_rate, "perclos": perclos, "eyes_closed_s": closed_s,
                  "droop_fraction": droop, "support_fraction": support, "closure_score": self.closure_score,
                  "window_covered_s": self._covered_ns / 1e9}
        primary = {
            "perclos": (normalise(perclos, p.perclos_warn, p.perclos_error),
                        f"eye closure {perclos:.0%} of the window (warn {p.perclos_warn:.0%})"),
            "long_blinks": (normalise(long_rate, p.long_blinks_warn_per_min, p.long_blinks_error_per_min),
                            f"{long_rate:.1f} long blinks/min (warn {p.long_blinks_warn_per_min:g})"),
            "blink_ms": (normalise(mean_ms, p.blink_ms_warn, p.blink_ms_error),
                         f"mean blink {mean_ms:.0f} ms (warn {p.blink_ms_warn:g})"),
            "eyes_closed": (normalise(closed_s, p.eyes_closed_warn_s, p.eyes_closed_error_s),
                            f"eyes closed {closed_s:.1f} s (warn {p.eyes_closed_warn_s:g} s)"),
            "droop": (normalise(droop, p.droop_warn, p.droop_error),
                      f"lid droop {droop:.0%} of the window (warn {p.droop_warn:.0%})"),
        }
        key = max(primary, key=lambda k: primary[k][0])
        score, reason = primary[key]
        support_notes = []
        if rate >= p.blink_rate_high_per_min:
            support_notes.append(f"blink rate {rate:.0f}/min")
        if support >= p.support_fraction:
            support_notes.append(f"drowsiness AUs {support:.0%}")
        score += p.support_weight * len(support_notes)
        if support_notes:
            reason += " + " + ", ".join(support_notes)
        values["score"] = score
        return Assessment(LEVELS[self.drowsy.level], float(score), reason, values)

    def _assess_distraction(self, away_now: Mapping[str, float]) -> Assessment:
        p = self.p
        total = float(self._sums[_AWAY]) / 1e9
        ep_head, ep_gaze = self._away["head"], self._away["gaze"]
        values = {"head_away_s": away_now["head"], "gaze_away_s": away_now["gaze"], "away_total_s": total}
        cands = {}
        for group, ep in (("head", ep_head), ("gaze", ep_gaze)):
            what = f"{AU_CODES[ep.index]} {AUS[ep.index].name}" if ep is not None else group
            cands[group] = (normalise(away_now[group], p.away_warn_s, p.away_error_s),
                            f"{group} away {away_now[group]:.1f} s ({what}; warn {p.away_warn_s:g} s)")
        cands["total"] = (normalise(total, p.away_total_warn_s, p.away_total_error_s),
                          f"away {total:.1f} s of the last {p.window_s:g} s (warn {p.away_total_warn_s:g} s)")
        key = max(cands, key=lambda k: cands[k][0])
        score, reason = cands[key]
        values["score"] = score
        return Assessment(LEVELS[self.distract.level], float(score), reason, values)

    # -- state ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Assessment]:
        """The current assessments: ``{'drowsiness': Assessment, 'distraction': Assessment}``."""
        return {"drowsiness": self._drowsy_a, "distraction": self._distract_a}

    @property
    def levels(self) -> dict[str, str]:
        return {"drowsiness": LEVELS[self.drowsy.level], "distraction": LEVELS[self.distract.level]}


def format_event(event: Mapping[str, Any]) -> str:
    """One line for a log or the dashboard: ``t=12.3s long_blink: long blink 520 ms``."""
    t = event.get("t")
    head = f"t={t:.1f}s " if isinstance(t, int | float) and math.isfinite(t) else ""
    msg = event.get("message") or ""
    return f"{head}{event.get('kind', '?')}: {msg}" if msg else f"{head}{event.get('kind', '?')}"


def au_label(index: int) -> str:
    """``'AU12 Lip Corner Puller'`` for class index ``index``."""
    a = AUS[index]
    return f"{a.code} {AU_NAMES[a.number]}"

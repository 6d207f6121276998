"""The recording protocol: its definition (``config/protocol.yaml``) and a pure state machine.

Definition
    For each of the 21 Action Units of Table 1 (in output order): a demo clip (a video path, or empty for the
    built-in illustration: the face region, an arrow and the instruction text), how many times the demo is
    shown (``demo_reps``), and the lengths of the countdown, the perform window and the rest (seconds). A run
    (``demo``: a short rehearsal; ``main``: every AU, about 7 minutes) selects AUs and may override any
    duration. :func:`load_protocol` checks everything and raises :class:`ProtocolError` with the reason.

State machine
    :class:`ProtocolStateMachine` walks one run on a clock it is given (``tick(now_ns)``), so the ROS node, a
    test and an offline replay drive it the same way. Each AU goes through the phases ``demo`` (skipped when
    ``demo_reps`` is 0) -> ``countdown`` -> ``perform`` -> ``rest``; after the last AU comes ``done``. Every
    phase change yields one marker dict of the interface contract::

        {"stamp_ns", "session", "subject", "run", "au", "trial", "phase", "segment"}

    with ``segment = "<subject>_AU<au>_t<trial>"``. Phase boundaries are scheduled (each phase starts when
    the previous one was due), so the markers' stamps do not drift with the tick rate; a late tick emits
    every boundary it passed, with their scheduled stamps.

    Operator controls (each returns the markers it causes):

    - ``pause``: marker ``paused``; the clock stops.
    - ``resume``: the interrupted phase restarts from its beginning (a perform window restarts with its
      countdown, so the subject performs for a full window after a cue); its marker is emitted again.
    - ``redo``: the current take is bad: marker ``redo`` (current trial), then the AU restarts with
      trial + 1 at ``redo_from`` (countdown by default). Works while paused too.
    - ``skip``: the AU is abandoned; the next AU starts (or ``done``).
    - ``abort``: marker ``done``; the run ends (``aborted`` is true).

    ``time_scale`` multiplies every duration (tests use 0.01).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ros2_evmicro.core.au import AU_NAMES, AUS, au_index

__all__ = [
    "PHASES",
    "AUStep",
    "ProtocolDefinition",
    "ProtocolError",
    "ProtocolStateMachine",
    "RunDefinition",
    "load_protocol",
    "parse_protocol",
    "segment_name",
]

PHASES = ("demo", "countdown", "perform", "rest", "paused", "redo", "done")
_CYCLE = ("demo", "countdown", "perform", "rest")
_DURATIONS = ("demo_clip_s", "countdown_s", "perform_s", "rest_s")
_ARROWS = ("up", "down", "left", "right", "in", "out", "none")
_DEFAULTS = {"demo_reps": 3, "demo_clip_s": 2.0, "countdown_s": 3.0, "perform_s": 5.0, "rest_s": 6.0}
_INSTRUCTIONS = {
    "demo": "Watch: {name} ({code})",
    "countdown": "Get ready: {name}",
    "perform": "NOW: {name}",
    "rest": "Relax",
    "paused": "Paused",
    "done": "Thank you, the session is complete",
}


class ProtocolError(ValueError):
    """The protocol definition is invalid, or a control was used in a state that does not allow it."""


@dataclass(frozen=True)
class AUStep:
    """One AU of a run, with its resolved timing (seconds) and presentation."""

    au: int
    clip: str  # absolute path of a video, or "" for the built-in illustration
    instruction: str
    arrow: str
    demo_reps: int
    demo_clip_s: float
    countdown_s: float
    perform_s: float
    rest_s: float

    @property
    def code(self) -> str:
        return f"AU{self.au}"

    @property
    def name(self) -> str:
        return AU_NAMES[self.au]

    @property
    def region(self) -> str:
        return AUS[au_index(self.au)].region

    def duration_s(self, phase: str) -> float:
        """Scheduled length of a phase of this AU (``demo`` = reps x clip length)."""
        if phase == "demo":
            return self.demo_reps * self.demo_clip_s
        return float(getattr(self, f"{phase}_s"))

    @property
    def total_s(self) -> float:
        return sum(self.duration_s(p) for p in _CYCLE)


@dataclass(frozen=True)
class RunDefinition:
    name: str
    steps: tuple[AUStep, ...]

    @property
    def duration_s(self) -> float:
        return sum(s.total_s for s in self.steps)


@dataclass(frozen=True)
class ProtocolDefinition:
    name: str
    version: int
    runs: dict[str, RunDefinition]
    instructions: dict[str, str]
    redo_from: str = "countdown"
    source: str = ""

    def run(self, name: str) -> RunDefinition:
        try:
            return self.runs[name]
        except KeyError:
            raise ProtocolError(
                f"protocol {self.name} has no run {name!r}; runs: {', '.join(self.runs)}"
            ) from None

    def instruction(self, phase: str, step: AUStep | None) -> str:
        text = self.instructions.get(phase, "")
        if step is None:
            return text
        return text.format(name=step.name, code=step.code, au=step.au, instruction=step.instruction)


def segment_name(subject: str, au: int, trial: int) -> str:
    """The contract's segment id, e.g. ``S01_AU12_t1``."""
    return f"{subject}_AU{au}_t{trial}"


# -- parsing -------------------------------------------------------------------------------------------------


def _number(where: str, key: str, v: Any, *, integer: bool = False) -> float | int:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ProtocolError(f"{where}: {key} must be a number, got {v!r}")
    if integer and (isinstance(v, float) and not v.is_integer()):
        raise ProtocolError(f"{where}: {key} must be an integer, got {v!r}")
    if v < 0:
        raise ProtocolError(f"{where}: {key} must not be negative, got {v}")
    return int(v) if integer else float(v)


def _timing(where: str, d: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k in ("demo_reps", *_DURATIONS):
        if k in d:
            out[k] = _number(where, k, d[k], integer=(k == "demo_reps"))
    return out


def _check_keys(where: str, d: dict, allowed: set[str]) -> None:
    if not isinstance(d, dict):
        raise ProtocolError(f"{where} must be a mapping, got {type(d).__name__}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise ProtocolError(f"{where}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def _au_number(where: str, v: Any) -> int:
    try:
        return AUS[au_index(v)].number
    except (ValueError, TypeError):
        raise ProtocolError(
            f"{where}: unknown Action Unit {v!r}; Table 1 has {', '.join(str(a.number) for a in AUS)}"
        ) from None


def parse_protocol(
    doc: dict, base_dir: str | os.PathLike = ".", *, check_clips: bool = True, source: str = ""
) -> ProtocolDefinition:
    """Build a :class:`ProtocolDefinition` from a parsed YAML document (``{"protocol": {...}}``)."""
    if not isinstance(doc, dict) or "protocol" not in doc:
        raise ProtocolError(f"{source or 'protocol'}: the top level must hold a 'protocol' mapping")
    p = doc["protocol"]
    where = source or "protocol"
    _check_keys(
        where, p, {"name", "version", "clips_dir", "redo_from", "defaults", "instructions", "aus", "runs"}
    )
    defaults = _timing(f"{where}: defaults", p.get("defaults") or {}, _DEFAULTS)
    _check_keys(f"{where}: defaults", p.get("defaults") or {}, {"demo_reps", *_DURATIONS})
    redo_from = p.get("redo_from", "countdown")
    if redo_from not in ("countdown", "demo"):
        raise ProtocolError(f"{where}: redo_from must be 'countdown' or 'demo', got {redo_from!r}")
    instr = dict(_INSTRUCTIONS)
    instr_doc = p.get("instructions") or {}
    _check_keys(f"{where}: instructions", instr_doc, set(_INSTRUCTIONS))
    instr.update({k: str(v) for k, v in instr_doc.items()})
    clips_dir = Path(base_dir) / str(p.get("clips_dir") or "")
    aus_doc = p.get("aus")
    if not isinstance(aus_doc, list) or not aus_doc:
        raise ProtocolError(f"{where}: 'aus' must be a non-empty list of AU entries")
    per_au: dict[int, AUStep] = {}
    for i, a in enumerate(aus_doc):
        w = f"{where}: aus[{i}]"
        _check_keys(w, a, {"au", "clip", "instruction", "arrow", "demo_reps", *_DURATIONS})
        if "au" not in a:
            raise ProtocolError(f"{w}: missing 'au'")
        num = _au_number(w, a["au"])
        if num in per_au:
            raise ProtocolError(f"{w}: AU{num} is listed twice")
        clip = str(a.get("clip") or "")
        if clip:
            path = Path(clip) if Path(clip).is_absolute() else clips_dir / clip
            if check_clips and not path.is_file():
                raise ProtocolError(f"{w}: demo clip for AU{num} not found: {path}")
            clip = str(path)
        arrow = str(a.get("arrow", "none"))
        if arrow not in _ARROWS:
            raise ProtocolError(f"{w}: arrow must be one of {list(_ARROWS)}, got {arrow!r}")
        t = _timing(w, a, defaults)
        per_au[num] = AUStep(num, clip, str(a.get("instruction") or AU_NAMES[num]), arrow, **t)
    table_order = [a.number for a in AUS]
    runs_doc = p.get("runs")
    if not isinstance(runs_doc, dict) or not runs_doc:
        raise ProtocolError(f"{where}: 'runs' must map run names (demo, main) to run definitions")
    runs: dict[str, RunDefinition] = {}
    for rname, r in runs_doc.items():
        w = f"{where}: runs.{rname}"
        _check_keys(w, r, {"aus", "demo_reps", *_DURATIONS})
        sel = r.get("aus", "all")
        if sel == "all":
            nums = [n for n in table_order if n in per_au]
        elif isinstance(sel, list) and sel:
            nums = [_au_number(w, v) for v in sel]
            if len(set(nums)) != len(nums):
                raise ProtocolError(f"{w}: an AU is listed twice in {sel}")
        else:
            raise ProtocolError(f"{w}: aus must be 'all' or a non-empty list of AU numbers, got {sel!r}")
        missing = [n for n in nums if n not in per_au]
        if missing:
            raise ProtocolError(f"{w}: AU{missing[0]} has no entry in 'aus'")
        over = _timing(w, r, {})
        steps = tuple(replace(per_au[n], **over) for n in nums)
        runs[str(rname)] = RunDefinition(str(rname), steps)
    for rname, run in runs.items():
        for s in run.steps:
            if s.perform_s <= 0:
                raise ProtocolError(f"{where}: runs.{rname}: AU{s.au} has a zero perform window")
    return ProtocolDefinition(
        str(p.get("name", "protocol")), int(p.get("version", 1)), runs, instr, redo_from, source
    )


def load_protocol(path: str | os.PathLike, *, check_clips: bool = True) -> ProtocolDefinition:
    """Read and check a protocol YAML file (see ``config/protocol.yaml``)."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ProtocolError(f"protocol file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ProtocolError(f"protocol file {path} is not valid YAML: {err}") from None
    return parse_protocol(doc, path.parent, check_clips=check_clips, source=str(path))


# -- the state machine ---------------------------------------------------------------------------------------


@dataclass
class _State:
    index: int = 0  # step index in the run
    phase: str = ""  # one of _CYCLE, or "" before start / "done"
    start_ns: int = 0
    deadline_ns: int = 0
    paused: bool = False
    trials: dict[int, int] = field(default_factory=dict)


class ProtocolStateMachine:
    """One run of a protocol, advanced by :meth:`tick` on a clock the caller owns (int ns)."""

    def __init__(
        self, definition: ProtocolDefinition, run: str, subject: str, session: str, *, time_scale: float = 1.0
    ):
        if not time_scale > 0:
            raise ProtocolError(f"time_scale must be positive, got {time_scale}")
        self.definition = definition
        self.run = definition.run(run)
        self.subject = str(subject)
        self.session = str(session)
        self.time_scale = float(time_scale)
        self.s = _State()
        self.started = False
        self.done = False
        self.aborted = False
        self.history: list[dict] = []

    # -- state ------------------------------------------------------------------------------------------
    @property
    def step(self) -> AUStep | None:
        return self.run.steps[self.s.index] if not self.done and self.s.index < len(self.run.steps) else None

    @property
    def phase(self) -> str:
        if self.done:
            return "done"
        return "paused" if self.s.paused else self.s.phase

    @property
    def paused(self) -> bool:
        return self.s.paused

    @property
    def trial(self) -> int:
        st = self.step
        return self.s.trials.get(st.au, 1) if st is not None else 0

    @property
    def segment(self) -> str:
        st = self.step
        return segment_name(self.subject, st.au, self.trial) if st is not None else ""

    @property
    def progress(self) -> tuple[int, int]:
        """(index of the current AU, number of AUs in the run)."""
        return self.s.index, len(self.run.steps)

    def phase_elapsed_s(self, now_ns: int) -> float:
        return max(0, now_ns - self.s.start_ns) / 1e9 if self.started and not self.s.paused else 0.0

    def remaining_s(self, now_ns: int) -> float:
        """Seconds left in the current phase (0 when paused or done)."""
        if not self.started or self.done or self.s.paused:
            return 0.0
        return max(0, self.s.deadline_ns - now_ns) / 1e9

    def duration_ns(self, step: AUStep, phase: str) -> int:
        return int(round(step.duration_s(phase) * self.time_scale * 1e9))

    # -- markers ----------------------------------------------------------------------------------------
    def _marker(self, phase: str, stamp_ns: int) -> dict:
        st = self.step
        if phase == "done" or st is None:
            au, trial, seg = 0, 0, ""
        else:
            au, trial, seg = st.au, self.trial, self.segment
        m = {
            "stamp_ns": int(stamp_ns),
            "session": self.session,
            "subject": self.subject,
            "run": self.run.name,
            "au": au,
            "trial": trial,
            "phase": phase,
            "segment": seg,
        }
        self.history.append(m)
        return m

    def _enter(self, phase: str, start_ns: int) -> list[dict]:
        """Enter ``phase`` of the current step at ``start_ns`` (skipping zero-length demo phases)."""
        st = self.step
        if st is None:
            return self._finish(start_ns)
        if phase == "demo" and self.duration_ns(st, "demo") == 0:
            phase = "countdown"
        self.s.phase = phase
        self.s.start_ns = start_ns
        self.s.deadline_ns = start_ns + self.duration_ns(st, phase)
        return [self._marker(phase, start_ns)]

    def _finish(self, stamp_ns: int) -> list[dict]:
        self.s.phase = "done"
        self.done = True
        return [self._marker("done", stamp_ns)]

    def _next_step(self, stamp_ns: int) -> list[dict]:
        self.s.index += 1
        if self.s.index >= len(self.run.steps):
            return self._finish(stamp_ns)
        return self._enter("demo", stamp_ns)

    # -- clock ------------------------------------------------------------------------------------------
    def start(self, now_ns: int) -> list[dict]:
        if self.started:
            raise ProtocolError("the protocol run has already started")
        self.started = True
        return self._enter("demo", int(now_ns))

    def tick(self, now_ns: int) -> list[dict]:
        """Advance to ``now_ns``; returns the markers of every phase boundary passed (scheduled stamps)."""
        now_ns = int(now_ns)
        if not self.started:
            return self.start(now_ns)
        out: list[dict] = []
        while not self.done and not self.s.paused and now_ns >= self.s.deadline_ns:
            due = self.s.deadline_ns
            i = _CYCLE.index(self.s.phase)
            out += self._enter(_CYCLE[i + 1], due) if i + 1 < len(_CYCLE) else self._next_step(due)
        return out

    # -- operator controls ------------------------------------------------------------------------------
    def _require_running(self, what: str) -> None:
        if not self.started:
            raise ProtocolError(f"cannot {what}: the protocol has not started")
        if self.done:
            raise ProtocolError(f"cannot {what}: the protocol is {'aborted' if self.aborted else 'done'}")

    def pause(self, now_ns: int) -> list[dict]:
        self._require_running("pause")
        if self.s.paused:
            raise ProtocolError("cannot pause: already paused")
        out = self.tick(now_ns)
        if self.done:
            return out
        self.s.paused = True
        return out + [self._marker("paused", int(now_ns))]

    def resume(self, now_ns: int) -> list[dict]:
        self._require_running("resume")
        if not self.s.paused:
            raise ProtocolError("cannot resume: not paused")
        self.s.paused = False
        phase = "countdown" if self.s.phase == "perform" else self.s.phase
        return self._enter(phase, int(now_ns))

    def redo(self, now_ns: int) -> list[dict]:
        self._require_running("redo")
        out = [] if self.s.paused else self.tick(now_ns)
        if self.done:
            return out
        st = self.step
        if st is None:
            raise ProtocolError("cannot redo: no current AU step")
        out.append(self._marker("redo", int(now_ns)))
        self.s.trials[st.au] = self.trial + 1
        self.s.paused = False
        return out + self._enter(self.definition.redo_from, int(now_ns))

    def skip(self, now_ns: int) -> list[dict]:
        self._require_running("skip")
        out = [] if self.s.paused else self.tick(now_ns)
        if self.done:
            return out
        self.s.paused = False
        return out + self._next_step(int(now_ns))

    def abort(self, now_ns: int) -> list[dict]:
        if self.done:
            raise ProtocolError("cannot abort: the protocol is already done")
        self.started = True
        self.aborted = True
        self.s.paused = False
        return self._finish(int(now_ns))

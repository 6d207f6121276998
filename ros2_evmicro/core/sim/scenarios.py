"""Scripted scenarios for the simulated rig: what the simulated driver does in the live demo.

``demo``: a sequence of clearly performed Action Units (each in its own perform segment, with rests), then a
scripted *drowsy* segment (repeated long blinks, a lid droop and an eyes-closed episode), so the demo shows both
AU recognition in order and a blink-based drowsiness alert. ``protocol``: the recording protocol of the paper
(all 21 AUs, see :func:`~ros2_evmicro.core.sim.timeline.protocol_timeline`). ``idle``: background movements only.

Scenarios are :class:`~ros2_evmicro.core.sim.timeline.Protocol` objects, so they come with their segments and
``protocol/marker`` messages (phase ``perform`` at each performed action, ``rest`` after it, ``done`` at the end).
"""

from __future__ import annotations

import numpy as np

from ros2_evmicro.core.sim.face import SimError
from ros2_evmicro.core.sim.timeline import Action, Background, Protocol, Segment, Timeline, protocol_timeline

__all__ = ["DEMO_AUS", "DROWSY_AUS", "SCENARIOS", "demo_scenario", "make_scenario"]

DEMO_AUS: tuple[int, ...] = (12, 26, 4, 51, 2, 61, 52, 17, 45, 53, 62, 9)
"""The AUs the demo performs, in order, before its drowsy segment."""
DROWSY_AUS: tuple[int, ...] = (45, 45, 41, 45, 45, 43, 45, 45)
"""The drowsy segment: long blinks (AU45, 550-850 ms: drowsy blinks last half a second and more), a lid droop
(AU41) and eyes closed (AU43, 1.6 s)."""
SCENARIOS = ("demo", "protocol", "idle")


def demo_scenario(seed: int = 0, *, lead_s: float = 1.0, perform_s: float = 1.3, rest_s: float = 1.2,
                  aus: tuple[int, ...] = DEMO_AUS, drowsy: bool = True, subject: str = "S01") -> Protocol:
    """The live demo's script (about 50 s): performed AUs in order, then a drowsy segment."""
    rng = np.random.default_rng([int(seed), 0xDE30])
    t = float(lead_s)
    segs: list[Segment] = []
    acts: list[Action] = []

    def perform(au: int, trial: int, dur_s: float, intensity: float, window_s: float) -> None:
        nonlocal t
        name = f"{subject}_AU{au}_t{trial}"
        start = t + 0.15 + float(rng.uniform(0, 0.15))
        on, off = (0.3, 0.5) if au in (45, 43, 41) else (0.35, 0.4)
        acts.append(Action(start, au, intensity, dur_s, on, off))
        segs.append(Segment(au, trial, "perform", t, t + window_s, name))
        t += window_s

    def rest(au: int, trial: int, d: float) -> None:
        nonlocal t
        segs.append(Segment(au, trial, "rest", t, t + d, f"{subject}_AU{au}_t{trial}"))
        t += d

    for au in aus:
        dur = 0.13 if au == 45 else float(rng.uniform(0.35, 0.5))
        perform(au, 1, dur, float(rng.uniform(0.85, 1.0)), perform_s)
        rest(au, 1, rest_s)
    if drowsy:
        counts: dict[int, int] = {}
        for au in DROWSY_AUS:
            counts[au] = counts.get(au, 1) + 1
            if au == 45:
                perform(au, counts[au], float(rng.uniform(0.55, 0.85)), 1.0, 1.2)
            elif au == 43:
                perform(au, counts[au], 1.6, 1.0, 2.2)
            else:
                perform(au, counts[au], 0.9, 0.8, 1.4)
            rest(au, counts[au], 0.5)
    # fewer spontaneous blinks than a rested person, so the scripted ones stand out in the demo
    tl = Timeline(acts, background=Background(blink_rate_hz=0.1), seed=seed)
    return Protocol(segs, tl, subject=subject, session="demo", run="demo", actions=acts)


def make_scenario(name: str, seed: int = 0, *, time_scale: float = 1.0, subject: str = "S01") -> Protocol:
    """A scenario by name (``demo``, ``protocol``, ``idle``); ``time_scale`` < 1 shortens the protocol."""
    if name == "demo":
        return demo_scenario(seed, subject=subject)
    if name == "protocol":
        s = float(time_scale)
        return protocol_timeline(perform_s=2.5 * s, rest_s=2.0 * s, demo_s=2.0 * s, countdown_s=1.0 * s,
                                 seed=seed, subject=subject)
    if name == "idle":
        return Protocol([], Timeline([], seed=seed), subject=subject, session="idle", run="idle")
    raise SimError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")

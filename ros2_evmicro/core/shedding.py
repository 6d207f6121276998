"""Load shedding for a live consumer that falls behind its input: which windows to count, window by window.

A live pipeline on a machine too small for its input rate (an EVK4 at 20 Mev/s on two cores) otherwise falls
further behind with every window, seconds after a few seconds: every frame it scores is stale. The slicer node
instead drops whole windows (no frame; counted) so that the ones it does count are current. The input it
watches is its backlog: how long a message waited between its publish and the callback (the DDS source
timestamp against the wall clock), which grows only when the process cannot keep up, whatever the source's
own clock does (a simulation running slower than real time, a bag replay).

:class:`LoadShedder` decides, from the backlog seen at each message, whether a window is counted:

- **Over the limit** (backlog > ``max_backlog_ms``): a run of such messages is an episode. On its own it is a
  stall (the backlog falls again once the stall is over: another node's long callback on the same executor, a
  busy moment of the host): nothing is shed, the late windows are still counted, so a machine that keeps up
  loses nothing. The load is more than the machine does (an overload) when the backlog still rises at three
  window starts in a row within an episode. Once overloaded, a window with a message over the limit is shed,
  whatever was counted of it, and each new episode raises ``every``.
- **Overload**: only every ``every``-th window is counted (window index ``k % every == 0``). Each overload raises
  ``every`` by one, as do two counted windows in a row that start with a backlog over the calm threshold
  (``max_backlog_ms / 5``), up to ``max_every``.
- **Probing**: once the counted windows have started calm for ``probe_after_s``, ``every`` is lowered by one.
  If a counted window then starts over the calm threshold within ``probe_s``, ``every`` goes back up and the
  next probe waits twice as long (up to ``probe_max_s``); otherwise the probe succeeded and the wait is reset.

For the first ``grace_s`` of event time (0.2 s) nothing counts as over the limit: the first calls of a freshly
started pipeline are slow, and that backlog drains by itself. The slicer node does not consult the shedder at
all for packets published before its first callback (the queue of a pipeline still being built).

So the counted windows start with a backlog under the calm threshold, the shed fraction follows the machine's
capacity, and a machine that keeps up loses nothing, even through a stall or its own start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ShedStats:
    windows_decided: int = 0
    windows_shed: int = 0  # windows not counted (every reason)
    shed_over_limit: int = 0  # windows shed because a message of theirs came over the limit
    overloads: int = 0  # times `every` was raised
    probes: int = 0
    probes_failed: int = 0


class LoadShedder:
    """Window-by-window count/shed decisions from the input backlog (see the module docstring).

    Args:
        max_backlog_ms: the limit (> 0): a backlog that keeps rising over it is an overload, and once overloaded a
            window with a message over it is shed.
        window_ms: the windows' length (turns the times below into window counts).
        grace_s: event time after the first message in which nothing is taken for an overload: the first calls
            of a freshly started pipeline are slow, and the backlog they make drains by itself (a window of it
            that comes over the limit is still counted). The packets queued before the consumer ran at all
            should not be given to the shedder (the slicer node does not).
        probe_after_s: calm time before ``every`` is lowered again (doubles after each failed probe).
        probe_max_s: longest wait between probes.
        probe_s: how long a lowered ``every`` must stay calm for the probe to succeed.
        max_every: most windows per counted window (1 of ``max_every`` counted at worst).
    """

    def __init__(self, max_backlog_ms: float, window_ms: float, *, grace_s: float = 0.2, probe_after_s: float = 1.0,
                 probe_max_s: float = 30.0, probe_s: float = 1.0, max_every: int = 8) -> None:
        if not (max_backlog_ms > 0 and math.isfinite(max_backlog_ms)):
            raise ValueError(f"max_backlog_ms must be a positive number, got {max_backlog_ms}")
        if not window_ms > 0:
            raise ValueError(f"window_ms must be > 0, got {window_ms}")
        if int(max_every) < 1:
            raise ValueError(f"max_every must be >= 1, got {max_every}")
        self.max_backlog_ms = float(max_backlog_ms)
        self.calm_ms = self.max_backlog_ms / 5.0
        per_s = 1000.0 / float(window_ms)

        def windows(s: float) -> int:
            return max(1, int(round(s * per_s)))

        self.grace_windows = max(0, int(round(grace_s * per_s)))
        self.probe_base = windows(probe_after_s)
        self.probe_max = max(self.probe_base, windows(probe_max_s))
        self.probe_windows = windows(probe_s)
        self.max_every = int(max_every)
        self.every = 1
        self.stats = ShedStats()
        self._first_k: int | None = None  # the first message's window (start of the grace)
        self._last_k: int | None = None  # newest window decided
        self._shed: set[int] = set()  # decided (or later) shed, still open
        self._in_episode = False  # the last message was over the limit too
        self._rising: list[float] = []  # backlog at the last window starts of the episode
        self._calm = 0  # window starts in a row under the calm threshold
        self._busy_counted = 0  # counted window starts in a row over the calm threshold
        self._probe_after = self.probe_base
        self._probe_left = 0  # window starts left in a running probe (0 = none)

    def on_message(self, k_first: int, k_last: int, backlog_ms: float) -> list[int]:
        """A message holding events of windows ``k_first..k_last`` waited ``backlog_ms``; returns the windows to
        shed now (newly decided, or open ones the message makes late), oldest first."""
        out: list[int] = []
        if self._first_k is None:
            self._first_k = k_first
        # in the start-up grace nothing is over the limit: the burst drains by itself
        over = backlog_ms > self.max_backlog_ms and k_last >= self._first_k + self.grace_windows
        opens = self._last_k is None or k_last > self._last_k
        if over:
            self._over(k_last, backlog_ms, opens)
        else:
            self._in_episode = False
        if opens:
            lo = k_first if self._last_k is None else max(k_first, self._last_k + 1)
            # the windows a message opens; a long jump in time decides only its last few
            for k in range(max(lo, k_last - 8), k_last + 1):
                if not self._decide(k, backlog_ms):
                    out.append(k)
            self._last_k = k_last
            if len(self._shed) > 64:  # the windows long gone
                self._shed = {j for j in self._shed if j >= k_first - 8}
        if over and self.every > 1:  # overloaded: a window this late is not worth finishing
            for k in range(max(k_first, k_last - 8), k_last + 1):
                if k not in self._shed:
                    self._shed.add(k)
                    self.stats.windows_shed += 1
                    self.stats.shed_over_limit += 1
                    out.append(k)
        return sorted(set(out))

    # -- the policy ------------------------------------------------------------------------------
    def _over(self, k: int, backlog_ms: float, opens: bool) -> None:
        """A message over the limit. Consecutive ones are one episode. An episode is a stall of the machine (the
        backlog falls once it is over; another node's long callback on the same executor, a busy moment of the
        host): nothing is shed, the late windows are still counted. It is an overload when the backlog still
        rises at three window starts in a row within the episode."""
        if not self._in_episode:
            self._in_episode = True
            self._rising = [backlog_ms]
            if self._probe_left:
                self._fail_probe()
            elif self.every > 1:  # already shedding, and not enough
                self._raise()
        elif opens:
            self._rising = [*self._rising[-2:], backlog_ms]
            r = self._rising
            if len(r) == 3 and r[0] < r[1] < r[2]:  # still climbing: the machine does not keep up
                self._raise()
                self._rising = [backlog_ms]
        self._calm = 0

    def _raise(self) -> None:
        if self.every < self.max_every:
            self.every += 1
            self.stats.overloads += 1
        self._busy_counted = 0

    def _fail_probe(self) -> None:
        self._probe_left = 0
        self.stats.probes_failed += 1
        self._probe_after = min(self._probe_after * 2, self.probe_max)
        self._raise()

    def _decide(self, k: int, backlog_ms: float) -> bool:
        """Count window ``k`` (True) or shed it, from the backlog at its first message. The calm and busy
        counts look at the counted windows only: the backlog at their start is what their frames inherit."""
        self.stats.windows_decided += 1
        # over the limit but not overloaded (every == 1): a stall or the start-up burst, the window is still counted
        count = (backlog_ms <= self.max_backlog_ms or self.every == 1) and k % self.every == 0
        if count:
            if backlog_ms <= self.calm_ms:
                self._calm += 1
                self._busy_counted = 0
                if self._probe_left:
                    self._probe_left = max(0, self._probe_left - self.every)
                    if self._probe_left == 0:  # the lower rate held: next time probe as early again
                        self._probe_after = self.probe_base
                elif self.every > 1 and self._calm * self.every >= self._probe_after:
                    self.every -= 1
                    self.stats.probes += 1
                    self._probe_left = self.probe_windows
                    self._calm = 0
            else:
                self._calm = 0
                if self._probe_left:
                    self._fail_probe()
                elif self.every > 1:
                    self._busy_counted += 1
                    if self._busy_counted >= 2:  # counting 1 of `every` does not drain the backlog either
                        self._raise()
                count = k % self.every == 0
        if not count:
            self._shed.add(k)
            self.stats.windows_shed += 1
        return count

"""Benchmark harness: time a callable, print a table, append the figures to docs/benchmarks.md.

Every figure is recorded with the command that produced it, the machine, the date, and the anchor
measured in the same run, as a ratio (figure / anchor for rates, anchor / figure for latencies
where ``lower_is_better``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass
class Row:
    """One measured figure and, where the issue names one, its anchor from the same run."""

    figure: str
    value: float
    unit: str
    anchor: str = ""
    anchor_value: float | None = None
    lower_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.anchor_value is None or self.anchor_value == 0 or self.value == 0:
            return None
        return self.anchor_value / self.value if self.lower_is_better else self.value / self.anchor_value


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, memory, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def best_rate(fn, n_items: float, repeat: int = 5, warmup: int = 1) -> float:
    """Items per second of ``fn()`` (best of ``repeat`` after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_items / best


def percentiles(samples, qs=(50, 99)) -> list[float]:
    """Percentiles of a list of numbers (nearest-rank on the sorted samples)."""
    s = sorted(samples)
    if not s:
        return [float("nan")] * len(qs)
    out = []
    for q in qs:
        k = max(0, min(len(s) - 1, int(round(q / 100 * (len(s) - 1)))))
        out.append(s[k])
    return out


def median(samples) -> float:
    return statistics.median(samples) if samples else float("nan")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v != v:  # nan
        return "nan"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def report(title: str, rows: list[Row], *, command: str | None = None, write: bool = True) -> str:
    """Print the rows as a markdown table and append them to docs/benchmarks.md."""
    command = command or "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    date = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"### {title}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- date: {date}",
        "",
        "| figure | value | unit | anchor (same run) | anchor value | ratio | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r.ratio
        lines.append(
            f"| {r.figure} | {_fmt(r.value)} | {r.unit} | {r.anchor or '-'} | {_fmt(r.anchor_value)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | {r.note} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if write and os.environ.get("EVMICRO_BENCH_NO_WRITE") != "1":
        DOC.parent.mkdir(parents=True, exist_ok=True)
        if not DOC.exists():
            DOC.write_text(
                "# Benchmarks\n\nFigures appended by the scripts under `bench/` (`python -m bench.<name>`). "
                "Each block names its command, machine and date; anchors are measured in the same run.\n\n"
            )
        with DOC.open("a") as fh:
            fh.write("\n" + text)
    return text

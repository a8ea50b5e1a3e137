"""``workbench bench startup``: how long the ``workbench`` command takes to start, against ``import polars``.

Each command is timed as a fresh process, interleaved with the baseline in the same
run (the machine is noisy: only the ratio means something), ``repeat`` times; the
median of each is reported. Targets (issue 15): ``workbench --help`` at most 0.6× the
baseline, ``workbench replay --help`` at most 1.2×.

Examples
--------
>>> report = bench_startup(repeat=1, commands={"--help": 0.6})
>>> sorted(report["commands"]["--help"])
['median_s', 'ratio', 'target', 'target_met']
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "bench_startup"]

#: command line → the largest allowed ratio to the baseline
TARGETS: dict[str, float] = {
    "--help": 0.6,
    "replay --help": 1.2,
    "query --help": 1.2,
    "simulate --help": 1.2,
    "serve --help": 1.2,
}

BASELINE = "import polars"


def _workbench() -> list[str]:
    """The installed console script beside this interpreter (else on PATH), else ``python -m workbench.cli``."""
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script)]
    found = shutil.which("workbench")
    return [found] if found else [sys.executable, "-m", "workbench.cli"]


def _time(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_startup(*, repeat: int = 7, commands: dict[str, float] | None = None) -> dict[str, Any]:
    """Median start-up time of each command and of ``python -c "import polars"``, and their ratios."""
    commands = TARGETS if commands is None else commands
    exe = _workbench()
    base: list[float] = []
    times: dict[str, list[float]] = {c: [] for c in commands}
    _time([sys.executable, "-c", BASELINE])  # warm the file cache for both sides
    for command in commands:
        _time([*exe, *command.split()])
    for _ in range(repeat):
        base.append(_time([sys.executable, "-c", BASELINE]))
        for command in commands:
            times[command].append(_time([*exe, *command.split()]))
    baseline = statistics.median(base)
    out: dict[str, Any] = {}
    for command, target in commands.items():
        median = statistics.median(times[command])
        ratio = median / baseline
        out[command] = {
            "median_s": round(median, 4),
            "ratio": round(ratio, 3),
            "target": target,
            "target_met": ratio <= target,
        }
    return {
        "baseline": {"command": f'python -c "{BASELINE}"', "median_s": round(baseline, 4)},
        "repeat": repeat,
        "commands": out,
        "all_met": all(v["target_met"] for v in out.values()),
    }

"""Settings and duration parsing: small, explicit, frozen, no import-time I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from workbench.errors import ConfigError

__all__ = ["Settings", "format_duration", "parse_duration"]

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: str | float | timedelta, *, what: str = "duration") -> int:
    """Parse a duration into whole milliseconds.

    Accepts ``"250ms"``, ``"10s"``, ``"1m30s"``, ``"2h"``, ``"1d"``, a number of
    seconds, or a ``timedelta``.

    Examples
    --------
    >>> parse_duration("1m30s")
    90000
    >>> parse_duration(0.25)
    250
    >>> parse_duration("ten", what="window 'w' size")
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: window 'w' size: expected a duration like '10s', '1m30s' or '250ms', not 'ten'
    """
    if isinstance(value, timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a duration, not {value!r}")
    if isinstance(value, int | float):
        return round(float(value) * 1000)
    text = str(value).strip().replace(" ", "")
    pos, total, matched = 0, 0.0, False
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_MS[m.group(2)]
        pos, matched = m.end(), True
    if not matched or pos != len(text):
        raise ConfigError(f"{what}: expected a duration like '10s', '1m30s' or '250ms', not {value!r}")
    return round(total)


def format_duration(ms: int) -> str:
    """Format milliseconds compactly.

    Examples
    --------
    >>> format_duration(90_000)
    '1m30s'
    >>> format_duration(250)
    '250ms'
    """
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return sign + "".join(parts)


@dataclass(frozen=True)
class Settings:
    """Where Workbench keeps its files, and how often it checkpoints.

    Build with :meth:`from_env` to read ``WORKBENCH_*`` variables; the constructor
    itself reads nothing.

    Examples
    --------
    >>> Settings.from_env({"WORKBENCH_LAKE": "/tmp/lake"}).lake
    PosixPath('/tmp/lake')
    """

    lake: Path = field(default_factory=lambda: Path("data/lake"))
    checkpoints: Path = field(default_factory=lambda: Path("data/checkpoints"))
    checkpoint_every_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``WORKBENCH_LAKE``, ``WORKBENCH_CHECKPOINTS``, ``WORKBENCH_CHECKPOINT_EVERY``."""
        env = os.environ if environ is None else environ
        base = cls()
        every = env.get("WORKBENCH_CHECKPOINT_EVERY")
        return cls(
            lake=Path(env.get("WORKBENCH_LAKE", base.lake)),
            checkpoints=Path(env.get("WORKBENCH_CHECKPOINTS", base.checkpoints)),
            checkpoint_every_s=(
                parse_duration(every, what="WORKBENCH_CHECKPOINT_EVERY") / 1000 if every else base.checkpoint_every_s
            ),
        )

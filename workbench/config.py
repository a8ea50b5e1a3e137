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
_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(value: str | float | timedelta, *, what: str = "duration") -> int:
    """Parse a duration into whole milliseconds.

    Accepts ``"250ms"``, ``"10s"``, ``"1m30s"``, ``"2h"``, ``"1d"``, a number of
    seconds (also as a string: ``"0.5"``, as a command line gives it), or a ``timedelta``.

    Examples
    --------
    >>> parse_duration("1m30s")
    90000
    >>> parse_duration(0.25), parse_duration("0.25"), parse_duration("2")
    (250, 250, 2000)
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
    if _SECONDS.fullmatch(text):
        return round(float(text) * 1000)
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


def _number(env: Mapping[str, str], name: str, default: float, *, low: float = 0.0) -> float:
    """``WORKBENCH_<name>`` as a number >= ``low`` (a message naming the variable otherwise)."""
    text = env.get(f"WORKBENCH_{name}")
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"WORKBENCH_{name}: expected a number, not {text!r}") from None
    if value < low:
        raise ConfigError(f"WORKBENCH_{name}: must be >= {low:g}, not {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where Workbench keeps its files, how often it checkpoints, and what the served app runs.

    Build with :meth:`from_env` to read ``WORKBENCH_*`` variables; the constructor
    itself reads nothing. Every value is checked once, here: a wrong one is a
    message that names the variable and the value.

    Examples
    --------
    >>> Settings.from_env({"WORKBENCH_LAKE": "/tmp/lake"}).lake
    PosixPath('/tmp/lake')
    >>> s = Settings.from_env({"WORKBENCH_RATE": "1000", "WORKBENCH_WINDOW": "10s"})
    >>> s.rate, s.window, s.hosts
    (1000.0, '10s', 120)
    >>> Settings.from_env({"WORKBENCH_RULES": "/srv/rules.yaml"}).rules
    PosixPath('/srv/rules.yaml')
    >>> Settings.from_env({"WORKBENCH_HOSTS": "many"})
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: WORKBENCH_HOSTS: expected a number, not 'many'
    """

    lake: Path = field(default_factory=lambda: Path("data/lake"))
    checkpoints: Path = field(default_factory=lambda: Path("data/checkpoints"))
    checkpoint_every_s: float = 10.0
    #: the served app's source: a URL (``workbench serve --source``), else the simulator
    source: str | None = None
    #: simulated hosts, events/s and seed
    hosts: int = 120
    rate: float = 600.0
    seed: int = 0
    #: window size, allowed lateness and dedupe horizon (default: lateness + 1 min)
    window: str = "5s"
    lateness: str = "2s"
    dedupe_ttl: str | None = None
    #: longest a record waits for its batch, in seconds
    max_delay_s: float = 0.5
    #: seconds without a batch before the health check says "stale"
    stale_after_s: float = 10.0
    #: evaluate the demo alert rules
    alerts: bool = True
    #: an alert rules file evaluated instead of the demo rules (``workbench serve --rules``)
    rules: Path | None = None
    #: schema of a non-Prometheus source URL
    schema: str = "server_metrics"
    #: Prometheus source: the metric names scraped (a regex; default: the node exporter's
    #: CPU, memory, network and load) and the scrape interval in seconds
    match: str | None = None
    interval_s: float = 1.0
    #: where the served app records alert history, feedback and silences: a DuckDB file or
    #: ``postgresql://…[?schema=name]`` (none: kept in memory and in checkpoints only)
    alert_store: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the ``WORKBENCH_*`` variables (each field's name in capitals; durations as text).

        ``WORKBENCH_LAKE``, ``WORKBENCH_CHECKPOINTS``, ``WORKBENCH_CHECKPOINT_EVERY``,
        ``WORKBENCH_SOURCE``, ``WORKBENCH_HOSTS``, ``WORKBENCH_RATE``, ``WORKBENCH_SEED``,
        ``WORKBENCH_WINDOW``, ``WORKBENCH_LATENESS``, ``WORKBENCH_DEDUPE_TTL``,
        ``WORKBENCH_MAX_DELAY``, ``WORKBENCH_STALE_AFTER``, ``WORKBENCH_ALERTS`` (``0``: none),
        ``WORKBENCH_RULES`` (a rules file), ``WORKBENCH_SCHEMA``, ``WORKBENCH_MATCH``,
        ``WORKBENCH_INTERVAL``, ``WORKBENCH_ALERT_STORE``.
        """
        env = os.environ if environ is None else environ
        base = cls()
        every = env.get("WORKBENCH_CHECKPOINT_EVERY")
        durations = {}
        for name in ("WINDOW", "LATENESS", "DEDUPE_TTL"):
            text = env.get(f"WORKBENCH_{name}") or None
            if text is not None:
                parse_duration(text, what=f"WORKBENCH_{name}")
            durations[name.lower()] = text
        return cls(
            lake=Path(env.get("WORKBENCH_LAKE", base.lake)),
            checkpoints=Path(env.get("WORKBENCH_CHECKPOINTS", base.checkpoints)),
            checkpoint_every_s=(
                parse_duration(every, what="WORKBENCH_CHECKPOINT_EVERY") / 1000 if every else base.checkpoint_every_s
            ),
            source=env.get("WORKBENCH_SOURCE") or None,
            hosts=int(_number(env, "HOSTS", base.hosts, low=1)),
            rate=_number(env, "RATE", base.rate),
            seed=int(_number(env, "SEED", base.seed)),
            window=durations["window"] or base.window,
            lateness=durations["lateness"] or base.lateness,
            dedupe_ttl=durations["dedupe_ttl"],
            max_delay_s=_number(env, "MAX_DELAY", base.max_delay_s),
            stale_after_s=_number(env, "STALE_AFTER", base.stale_after_s),
            alerts=env.get("WORKBENCH_ALERTS", "1") != "0",
            rules=Path(env["WORKBENCH_RULES"]) if env.get("WORKBENCH_RULES") else None,
            schema=env.get("WORKBENCH_SCHEMA") or base.schema,
            match=env.get("WORKBENCH_MATCH") or None,
            interval_s=_number(env, "INTERVAL", base.interval_s),
            alert_store=env.get("WORKBENCH_ALERT_STORE") or None,
        )

"""What ``workbench alerts …`` does (the CLI, :mod:`workbench.alerts.cli`, only parses arguments)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.alerts.backtest import backtest, compare
from workbench.alerts.loader import load_config
from workbench.clock import parse_time
from workbench.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from workbench.schema import Schema

__all__ = ["backtest_report", "check_rules"]


def check_rules(
    path: str | Path,
    *,
    schema: str | Schema | None = None,
    aggs: Sequence[pl.Expr] | None = None,
    by: Sequence[str] | None = None,
    every: str | float | timedelta | None = None,
    against: str | None = None,
) -> str:
    """Validate a rules file and the names its rules read; a description of what it holds.

    Every metric and label a rule names must be a column or a label of the windows of
    ``schema`` (default: the built-in ``server_metrics``, and the output says so) with
    ``aggs`` (default: the schema's) keyed ``by`` (default: its entity); otherwise a
    :class:`~workbench.errors.ConfigError` lists each unknown name and the known ones.
    ``every`` (the windows' period) adds a warning for absence rules that would always match.
    ``against`` names where the schema came from (a project file).
    """
    from workbench.alerts.names import too_short_absences, unknown_names, window_names
    from workbench.schema import get_schema

    cfg = load_config(path)
    s = get_schema(schema if schema is not None else "server_metrics")
    metrics, labels = window_names(s, aggs=aggs, by=by)
    problems = unknown_names(cfg, metrics, labels)
    if problems:
        hint = ""
        if s.extra == "keep-numeric" and against is None:
            hint = (
                f" (schema {s.name!r} keeps undeclared numeric fields found in the data: declare them, "
                "or check with --project, whose file source is read)"
            )
        raise ConfigError(f"{path}: " + "; ".join(problems) + hint)
    kinds = sorted({r.kind for r in cfg.rules})
    where = against or (f"schema {s.name!r}" if schema is not None else "the built-in default schema 'server_metrics'")
    lines = [
        f"{path}: {len(cfg.rules)} rules ({', '.join(kinds)}), {len(cfg.routes)} routes, "
        f"{len(cfg.inhibit)} inhibit rules, {len(cfg.receivers)} receivers",
        f"every metric and label checked against the windows of {where}: "
        f"{len(metrics)} metrics, labels {', '.join(labels)}",
    ]
    if schema is None and against is None:
        lines[-1] += " (no --schema or --project given)"
    lines += [f"warning: {w}" for w in too_short_absences(cfg, every)] if every is not None else []
    return "\n".join(lines)


def _when(text: str | None) -> datetime | None:
    return parse_time(text, what="backtest: --from/--to")


def backtest_report(
    rules: str | Path,
    *,
    lake: str | Path,
    other: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
    labels: str | Path | None = None,
) -> dict[str, Any]:
    """Backtest a rules file (and another one to compare) over a lake; a JSON-ready report."""
    kw: dict[str, Any] = {"start": _when(start), "end": _when(end), "labels": labels}
    first = backtest(rules, lake, name=Path(rules).stem, **kw)
    out: dict[str, Any] = {"rules": _result(first)}
    if other is not None:
        second = backtest(other, lake, name=Path(other).stem, **kw)
        out["other"] = _result(second)
        out["compare"] = compare(first, second).to_dicts()
    return out


def _result(result: Any) -> dict[str, Any]:
    fired = [] if result.fired is None else result.fired.to_dicts()
    for row in fired:  # label sets differ by rule: one dict per alert, not a struct column
        row["labels"] = json.loads(row["labels"]) if row["labels"] else {}
    out = {"overall": result.overall(), "summary": result.summary().to_dicts(), "fired": fired}
    if result.labels is not None:
        out["by_kind"] = result.by_kind().to_dicts()
    return out

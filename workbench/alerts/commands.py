"""What ``workbench alerts …`` does (the CLI, :mod:`workbench.alerts.cli`, only parses arguments)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.alerts.backtest import backtest, compare
from workbench.alerts.loader import load_config
from workbench.clock import parse_time

__all__ = ["backtest_report", "check_rules"]


def check_rules(path: str | Path) -> str:
    """Validate a rules file; a one-line description of what it holds."""
    cfg = load_config(path)
    kinds = sorted({r.kind for r in cfg.rules})
    return (
        f"{path}: {len(cfg.rules)} rules ({', '.join(kinds)}), {len(cfg.routes)} routes, "
        f"{len(cfg.inhibit)} inhibit rules, {len(cfg.receivers)} receivers"
    )


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
    out = {"overall": result.overall(), "summary": result.summary().to_dicts()}
    if result.labels is not None:
        out["by_kind"] = result.by_kind().to_dicts()
    return out

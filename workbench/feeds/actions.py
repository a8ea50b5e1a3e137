"""Every state-changing action a user can take from a view, one small function each.

Views never change an alert manager or a model directly: a button calls one of these
with the acting ``user`` first (the signed-in user, or ``"anonymous"`` without
authentication — see :func:`who`), then the action's arguments. Keeping them here, in
one place, is what lets a serving profile check the user's role and audit each action
by wrapping these functions, without touching a view. Nothing here imports Panel.

Examples
--------
>>> import polars as pl
>>> from workbench.alerts.manager import AlertManager
>>> from workbench.alerts.rules import Threshold
>>> am = AlertManager([Threshold("hot", metric="cpu_mean", value=90)])
>>> _ = am.process(pl.DataFrame({"host": ["a"], "window_end": [60_000], "cpu_mean": [95.0]}))
>>> acknowledge("ana", am, "hot/a", note="looking")
>>> am.feedback["hot/a"][-1]["by"], am.feedback["hot/a"][-1]["note"]
('ana', 'looking')
>>> s = silence("ana", am, 'alertname="hot", host="a"', duration="1h", comment="maintenance")
>>> s.created_by, s.comment, [str(m) for m in s.matchers]
('ana', 'maintenance', ['alertname="hot"', 'host="a"'])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from workbench.alerts.manager import AlertManager
from workbench.alerts.matchers import Silence

__all__ = ["ACTIONS", "acknowledge", "expire_silence", "mark", "silence", "tune", "who"]


def who(user: str | None) -> str:
    """The acting user's name: the signed-in user, else ``"anonymous"``."""
    return user.strip() if user and user.strip() else "anonymous"


def acknowledge(user: str, manager: AlertManager, fingerprint: str, *, note: str = "") -> None:
    """Acknowledge a firing alert (no repeat notifications); recorded with ``user`` and ``note``."""
    manager.acknowledge(fingerprint, by=who(user), note=note)


def mark(user: str, manager: AlertManager, fingerprint: str, label: str, *, note: str = "") -> None:
    """Label an alert ``true_positive`` or ``false_positive`` (feedback for precision and models)."""
    manager.mark(fingerprint, label, by=who(user), note=note)


def silence(
    user: str,
    manager: AlertManager,
    matchers: str | Sequence[str],
    *,
    duration: str | float | timedelta = "1h",
    comment: str = "",
) -> Silence:
    """Silence the alerts whose labels match ``matchers`` from now for ``duration``; created by ``user``."""
    return manager.silence(matchers, duration=duration, by=who(user), comment=comment)


def expire_silence(user: str, manager: AlertManager, silence_id: str) -> None:
    """End a silence now (``user`` is recorded by the audit wrapper, when serving has one)."""
    who(user)
    manager.expire_silence(silence_id)


def tune(user: str, target: Any, **values: Any) -> None:
    """Set live parameters on ``target`` (a detector's :class:`~workbench.models.tuning.DetectorParams`)."""
    who(user)
    if hasattr(target, "tune"):
        target.tune(**values)
    else:
        target.param.update(**values)


#: The actions by name (what a role check or an audit log wraps).
ACTIONS = {
    "acknowledge": acknowledge,
    "mark": mark,
    "silence": silence,
    "expire_silence": expire_silence,
    "tune": tune,
}

"""Alertmanager as a receiver: alerts POSTed to ``/api/v2/alerts`` the way Prometheus sends them.

Prometheus does not send *notifications* to Alertmanager; after every rule evaluation
it sends the *alerts* that need sending, and Alertmanager groups, silences, inhibits
and notifies. :class:`PrometheusSender` is that part of Prometheus (``rules/manager.go``
``SendAlerts``, ``rules/alerting.go`` ``sendAlerts``/``needsSending``), in event time:

- a *firing* alert is sent when it starts firing and then again every
  ``resend_delay`` (1 m) while it fires, with ``startsAt`` = when it fired and
  ``endsAt`` = now + 4 × max(``resend_delay``, evaluation interval) — so Alertmanager
  resolves it by itself if the sender goes away;
- a *resolved* alert is sent at once with ``endsAt`` = when it resolved, and re-sent
  every ``resend_delay`` for ``resolved_retention`` (15 m);
- pending alerts are never sent;
- each alert carries its labels, annotations and a ``generatorURL``.

:class:`AlertmanagerNotifier` is the receiver kind ``alertmanager`` (``url`` = the
Alertmanager's base URL). An :class:`~workbench.alerts.manager.AlertManager` whose
outbox has one hands it these sends after every evaluation, through the outbox (a
persisted log, retries): an Alertmanager that restarts mid-run gets what it missed.
Alertmanager does the routing: such a receiver is not named in Workbench's routes.

Examples
--------
>>> import polars as pl
>>> from workbench.alerts.rules import Threshold
>>> from workbench.alerts.lifecycle import STATE_SCHEMA, TRANSITION_SCHEMA
>>> sender = PrometheusSender([Threshold("hot", metric="cpu", value=90)], lambda r: ("host",), interval_ms=60_000)
>>> state = pl.DataFrame({"rule": [0], "entity": ["a"], "state": ["firing"], "active_at": [0], "fired_at": [0],
...                       "last_match": [0], "keep_since": [None], "value": [95.0]}, schema=STATE_SCHEMA)
>>> [a["labels"]["host"] for a in sender.step(0, state, pl.DataFrame(schema=TRANSITION_SCHEMA))]
['a']
>>> sender.step(30_000, state, pl.DataFrame(schema=TRANSITION_SCHEMA))  # resent only after resend_delay
[]
>>> sender.step(60_000, state, pl.DataFrame(schema=TRANSITION_SCHEMA))[0]["endsAt"]
'1970-01-01T00:05:00.000Z'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import polars as pl

from workbench.alerts.events import EventBuilder
from workbench.alerts.notifiers import WebhookNotifier
from workbench.alerts.rules import Rule
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["AlertmanagerNotifier", "PrometheusSender", "connect_alertmanagers", "rfc3339"]


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as the RFC 3339 time Alertmanager reads (UTC, milliseconds, ``Z``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertmanagerNotifier(WebhookNotifier):
    """POST a list of alerts to an Alertmanager's ``/api/v2/alerts`` (retries as every webhook).

    Parameters
    ----------
    url
        The Alertmanager's base URL, e.g. ``http://127.0.0.1:9093``.
    **kwargs
        :class:`~workbench.alerts.notifiers.WebhookNotifier` settings (timeout, retries, backoff, headers).
    """

    kind = "alertmanager"

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url.rstrip("/") + "/api/v2/alerts", **kwargs)

    def send(self, message: dict[str, Any]) -> None:  # noqa: D102
        body = json.dumps(message["alerts"], separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "workbench-alerts", **self.headers}
        self.post(body, headers)


class PrometheusSender:
    """Which alerts Prometheus would send to Alertmanager after each evaluation, and how.

    Parameters
    ----------
    rules
        The rules (their numbers index the evaluator's state).
    entity_labels
        Rule → the label columns of its series (the evaluator's ``entity_labels``).
    interval_ms
        The evaluation interval.
    resend_delay
        How often a firing (or recently resolved) alert is sent again (Prometheus'
        ``--rules.alert.resend-delay``, 1 m).
    resolved_retention
        How long a resolved alert keeps being sent (15 m in Prometheus).
    generator_url
        Base of each alert's ``generatorURL`` (``<base>/alerts/<rule name>``).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        entity_labels: Callable[[Rule], tuple[str, ...]],
        *,
        interval_ms: int,
        resend_delay: str | float = "1m",
        resolved_retention: str | float = "15m",
        generator_url: str = "http://workbench",
    ) -> None:
        self.rules = list(rules)
        self.entity_labels = entity_labels
        self.resend_ms = parse_duration(resend_delay, what="alertmanager: resend_delay")
        self.retention_ms = parse_duration(resolved_retention, what="alertmanager: resolved_retention")
        self.valid_ms = 4 * max(self.resend_ms, interval_ms)
        self.generator_url = generator_url.rstrip("/")
        self._builder = EventBuilder(self.rules, entity_labels)
        self.last_sent: dict[str, int] = {}
        self.firing: dict[str, dict[str, Any]] = {}  # key → the alert as last built while firing
        self.resolved: dict[str, tuple[dict[str, Any], int]] = {}  # key → (resolved alert, resolved at)

    def _alert(self, rule: Rule, entity: str, value: float, fired_at: int) -> dict[str, Any]:
        cols = self.entity_labels(rule)
        series = json.loads(entity) if len(cols) > 1 else {cols[0]: entity}
        labels = {**series, **self._builder.labels_of(rule)}
        notes = rule.render_annotations({**series, "__name__": rule.column} if rule.column else series, value)
        return {
            "labels": labels,
            "annotations": notes,
            "startsAt": rfc3339(fired_at),
            "generatorURL": f"{self.generator_url}/alerts/{quote(rule.name)}",
        }

    def step(self, t: int, state: pl.DataFrame, transitions: pl.DataFrame) -> list[dict[str, Any]]:
        """The alerts to send after the evaluation at ``t`` (Alertmanager's JSON objects)."""
        out: list[dict[str, Any]] = []
        firing = state.filter(pl.col("state") == "firing").select("rule", "entity", "value", "fired_at")
        for rule_no, entity, value, fired_at in firing.iter_rows():
            key = f"{rule_no}/{entity}"
            self.resolved.pop(key, None)
            alert = self._alert(self.rules[rule_no], entity, value, fired_at)
            self.firing[key] = alert
            last = self.last_sent.get(key)
            if last is None or last + self.resend_ms <= t:
                out.append({**alert, "endsAt": rfc3339(t + self.valid_ms)})
                self.last_sent[key] = t
        done = transitions.filter((pl.col("from_state") == "firing") & (pl.col("to_state") == "resolved"))
        for rule_no, entity in done.select("rule", "entity").iter_rows():
            key = f"{rule_no}/{entity}"
            was = self.firing.pop(key) if key in self.firing else None
            if was is not None:
                resolved = {**was, "endsAt": rfc3339(t)}
                self.resolved[key] = (resolved, t)
                out.append(resolved)
                self.last_sent[key] = t
        for key, (resolved, at) in list(self.resolved.items()):
            if t - at > self.retention_ms:
                del self.resolved[key]
                self.last_sent.pop(key, None)
            elif at != t and self.last_sent[key] + self.resend_ms <= t:
                out.append(resolved)
                self.last_sent[key] = t
        return out

    def snapshot(self) -> dict[str, Any]:
        """What was sent when (copies)."""
        return json.loads(json.dumps({"last_sent": self.last_sent, "firing": self.firing, "resolved": self.resolved}))

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        state = json.loads(json.dumps(state))
        self.last_sent = state["last_sent"]
        self.firing = state["firing"]
        self.resolved = {k: (v[0], v[1]) for k, v in state["resolved"].items()}


def connect_alertmanagers(manager: Any, *, resend_delay: str | float = "1m") -> PrometheusSender | None:
    """Give a manager's Alertmanager receivers (in its outbox) every alert after each evaluation.

    Returns the sender (its state goes into the manager's snapshot), or ``None`` when
    the outbox has no Alertmanager receiver.
    """
    names = sorted(
        n for n, x in getattr(manager.outbox, "notifiers", {}).items() if isinstance(x, AlertmanagerNotifier)
    )
    if not names:
        return None
    for route in manager.dispatcher.routes:
        routed = sorted(set(route.receivers) & set(names))
        if routed:
            raise ConfigError(
                f"alert routes: receiver(s) {routed} are Alertmanagers: they get every alert and route "
                "them themselves; leave them out of routes"
            )
    evaluator = manager.evaluator
    sender = PrometheusSender(
        manager.rules, evaluator.entity_labels, interval_ms=evaluator.interval_ms, resend_delay=resend_delay
    )

    def send(t: int, state: pl.DataFrame, transitions: pl.DataFrame) -> None:
        alerts = sender.step(t, state, transitions)
        for name in names if alerts else ():
            manager.outbox.put({"id": f"{name}/prometheus/{t}", "receiver": name, "at": t, "alerts": alerts})

    evaluator.on_evaluation = send
    return sender

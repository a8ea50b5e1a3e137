"""Routing, grouping, inhibition, silences and acknowledgements: alerts → notifications.

Alertmanager's model, driven by event time (epoch ms from the evaluations):

- A :class:`Route` picks alerts by matchers and groups them by ``group_by`` labels;
  the first matching route takes an alert (unless ``continue_`` is set).
- A new group waits ``group_wait`` before its first notification (so alerts firing
  together go out together); afterwards the group is looked at every
  ``group_interval`` and notified when its set of alerts changed, or again after
  ``repeat_interval`` while something still fires (unless every firing alert is
  acknowledged).
- One notification per group and receiver; it lists the group's firing alerts and
  those resolved since the last notification. A resolved alert is announced only if
  its firing was.
- :class:`Inhibit` mutes target alerts while a firing source alert with equal
  ``equal`` labels exists; a :class:`~workbench.alerts.matchers.Silence` mutes
  matching alerts while active. Muted alerts stay active, they just are not sent.

Notification ids are deterministic (``receiver/group/seq``): a replay after a restart
produces the same ids, which the outbox uses to drop repeats.

Examples
--------
>>> d = Dispatcher([Route(receivers=("ops",), group_wait="10s")])
>>> alert = {"fingerprint": "hot/a", "labels": {"alertname": "hot", "host": "a"}, "summary": "hot a",
...          "severity": "critical", "value": 95.0, "active_at": 0}
>>> d.fire(alert, at=0)
>>> d.advance(5_000), [n["status"] for n in d.advance(10_000)]
([], ['firing'])
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workbench.alerts.matchers import Matcher, Silence, matches_all, parse_matchers
from workbench.alerts.rules import SEVERITIES
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["Dispatcher", "Inhibit", "Route"]

Duration = str | float


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an ISO-8601 UTC string."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass(frozen=True)
class Route:
    """Which alerts go to which receivers, grouped how, and how often.

    Parameters
    ----------
    receivers
        Names of the notifiers that get this route's notifications.
    matchers
        Label matchers (all must match; none: every alert).
    group_by
        Labels whose values form a group (``("...",)``: every label, one group per alert).
    group_wait, group_interval, repeat_interval
        Durations, as in Alertmanager.
    continue_
        Keep looking at later routes after this one matched.
    """

    receivers: tuple[str, ...] = ()
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: Duration = "30s"
    group_interval: Duration = "5m"
    repeat_interval: Duration = "4h"
    continue_: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "receivers", tuple(self.receivers))
        object.__setattr__(self, "group_by", tuple(self.group_by))
        object.__setattr__(self, "matchers", parse_matchers(self.matchers, what="route matchers"))
        for name in ("group_wait", "group_interval", "repeat_interval"):
            ms = parse_duration(getattr(self, name), what=f"route {list(self.receivers)}: {name}")
            if ms < 0 or (ms == 0 and name != "group_wait"):
                raise ConfigError(f"route {list(self.receivers)}: {name} must be > 0, not {getattr(self, name)!r}")

    @property
    def wait_ms(self) -> int:  # noqa: D102
        return parse_duration(self.group_wait)

    @property
    def interval_ms(self) -> int:  # noqa: D102
        return parse_duration(self.group_interval)

    @property
    def repeat_ms(self) -> int:  # noqa: D102
        return parse_duration(self.repeat_interval)

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that name an alert's group on this route."""
        if self.group_by == ("...",):
            return dict(sorted(labels.items()))
        return {k: labels.get(k, "") for k in self.group_by}


@dataclass(frozen=True)
class Inhibit:
    """While a firing alert matches ``source``, mute alerts matching ``target`` with the same ``equal`` labels."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", parse_matchers(self.source, what="inhibit source"))
        object.__setattr__(self, "target", parse_matchers(self.target, what="inhibit target"))
        object.__setattr__(self, "equal", tuple(self.equal))
        if not self.source or not self.target:
            raise ConfigError(f"inhibit: source and target need matchers, not {self.source!r} / {self.target!r}")

    def mutes(self, target: Mapping[str, str], source: Mapping[str, str]) -> bool:
        """Whether ``source`` (a firing alert's labels) inhibits ``target``."""
        return (
            matches_all(self.target, target)
            and matches_all(self.source, source)
            and all(target.get(k, "") == source.get(k, "") for k in self.equal)
        )


@dataclass
class _Group:
    route: int
    key: str
    labels: dict[str, str]
    next_flush: int
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent_firing: frozenset[str] = frozenset()  # fingerprints firing in the last notification
    announced: set[str] = field(default_factory=set)  # fingerprints notified as firing
    last_sent: int | None = None
    seq: int = 0


class Dispatcher:
    """Groups firing and resolved alerts per route and produces notifications on timers."""

    def __init__(self, routes: Sequence[Route] | None = None, inhibit: Sequence[Inhibit] = ()) -> None:
        self.routes = list(routes) if routes else [Route()]
        self.inhibit = list(inhibit)
        self.groups: dict[str, _Group] = {}
        self.firing: dict[str, dict[str, Any]] = {}
        self.silences: dict[str, Silence] = {}
        self.acks: dict[str, dict[str, Any]] = {}

    # -- alerts in ------------------------------------------------------------------
    def _routes_for(self, labels: Mapping[str, str]) -> list[int]:
        out = []
        for i, route in enumerate(self.routes):
            if matches_all(route.matchers, labels):
                out.append(i)
                if not route.continue_:
                    break
        return out

    def fire(self, alert: dict[str, Any], *, at: int) -> None:
        """An alert started firing (or fires on): put it in its groups."""
        alert = {**alert, "status": "firing", "starts_at": alert.get("starts_at", at), "ends_at": None}
        self.firing[alert["fingerprint"]] = alert
        for i in self._routes_for(alert["labels"]):
            route = self.routes[i]
            glabels = route.group_labels(alert["labels"])
            key = f"{i}:" + ",".join(f"{k}={v}" for k, v in glabels.items())
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = _Group(i, key, glabels, next_flush=at + route.wait_ms)
            group.alerts[alert["fingerprint"]] = alert

    def resolve(self, fingerprint: str, *, at: int, value: float | None = None) -> None:
        """A firing alert resolved: mark it in its groups (announced at their next flush)."""
        self.firing.pop(fingerprint, None)
        self.acks.pop(fingerprint, None)
        for group in self.groups.values():
            if fingerprint in group.alerts:
                resolved = {**group.alerts[fingerprint], "status": "resolved", "ends_at": at}
                if value is not None:
                    resolved["value"] = value
                group.alerts[fingerprint] = resolved

    # -- muting ---------------------------------------------------------------------
    def muted(self, alert: Mapping[str, Any], *, at: int) -> str | None:
        """Why an alert is muted at ``at`` (``"silenced"``, ``"inhibited"``) or ``None``."""
        labels = alert["labels"]
        if any(s.mutes(labels, at=at) for s in self.silences.values()):
            return "silenced"
        for rule in self.inhibit:
            for fp, source in self.firing.items():
                if fp != alert["fingerprint"] and rule.mutes(labels, source["labels"]):
                    return "inhibited"
        return None

    def add_silence(self, silence: Silence) -> None:
        """Add (or replace) a silence."""
        self.silences[silence.silence_id] = silence

    def expire_silence(self, silence_id: str, *, at: int) -> None:
        """End a silence now."""
        s = self.silences.get(silence_id)
        if s is None:
            raise ConfigError(f"silence {silence_id!r}: no such silence; known: {sorted(self.silences)}")
        self.silences[silence_id] = Silence(
            s.silence_id, s.matchers, s.starts_at, max(at, s.starts_at + 1), s.created_by, s.comment
        )

    def acknowledge(self, fingerprint: str, *, by: str, at: int, note: str = "") -> None:
        """Acknowledge a firing alert: no repeat notifications for it while it fires."""
        if fingerprint not in self.firing:
            raise ConfigError(f"acknowledge: alert {fingerprint!r} is not firing; firing: {sorted(self.firing)[:10]}")
        self.acks[fingerprint] = {"by": by, "at": at, "note": note}

    # -- timers ---------------------------------------------------------------------
    def advance(self, at: int) -> list[dict[str, Any]]:
        """Flush every group whose timer is due at ``at``; the notifications, in group order."""
        out: list[dict[str, Any]] = []
        for key in sorted(self.groups):
            group = self.groups[key]
            if group.next_flush <= at:
                out.extend(self._flush(group, at))
                route = self.routes[group.route]
                if group.alerts:
                    group.next_flush = at + route.interval_ms
                else:
                    del self.groups[key]
        self.silences = {k: s for k, s in self.silences.items() if s.ends_at > at - 86_400_000}
        return out

    def _flush(self, group: _Group, at: int) -> list[dict[str, Any]]:
        route = self.routes[group.route]
        visible = []
        for fp, alert in group.alerts.items():
            if alert["status"] == "resolved" and fp not in group.announced:
                continue
            if alert["status"] == "firing" and self.muted(alert, at=at):
                continue
            visible.append(alert)
        firing = [a for a in visible if a["status"] == "firing"]
        fired = frozenset(a["fingerprint"] for a in firing)
        resolved = [a for a in visible if a["status"] == "resolved"]
        unacked = [a for a in firing if a["fingerprint"] not in self.acks]
        repeat = bool(unacked) and group.last_sent is not None and at - group.last_sent >= route.repeat_ms
        # as Alertmanager: notify for a newly firing or a resolved alert, or to repeat
        send = bool(fired - group.sent_firing) or bool(resolved) or repeat
        notes: list[dict[str, Any]] = []
        if send:
            group.seq += 1
            group.last_sent = at
            group.sent_firing = fired
            group.announced |= {a["fingerprint"] for a in firing}
            notes = [self._message(group, receiver, visible, at) for receiver in route.receivers]
        for fp in [fp for fp, a in group.alerts.items() if a["status"] == "resolved"]:
            del group.alerts[fp]
            group.announced.discard(fp)
        return notes

    def _message(self, group: _Group, receiver: str, alerts: list[dict[str, Any]], at: int) -> dict[str, Any]:
        firing = [a for a in alerts if a["status"] == "firing"]
        common = dict(alerts[0]["labels"])
        for a in alerts[1:]:
            common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
        worst = max((a["severity"] for a in (firing or alerts)), key=SEVERITIES.index)
        head = firing[0]["summary"] if firing else alerts[0]["summary"]
        more = len(firing or alerts) - 1
        return {
            "id": f"{receiver}/{group.key}/{group.seq}",
            "receiver": receiver,
            "group_key": group.key,
            "status": "firing" if firing else "resolved",
            "severity": worst,
            "summary": head + (f" (+{more} more)" if more > 0 else ""),
            "group_labels": dict(group.labels),
            "common_labels": common,
            "at": iso(at),
            "alerts": [
                {
                    "fingerprint": a["fingerprint"],
                    "status": a["status"],
                    "labels": dict(a["labels"]),
                    "summary": a["summary"],
                    "severity": a["severity"],
                    "value": a.get("value"),
                    "starts_at": iso(a.get("starts_at")),
                    "ends_at": iso(a.get("ends_at")),
                    "acknowledged_by": self.acks.get(a["fingerprint"], {}).get("by"),
                }
                for a in sorted(alerts, key=lambda a: a["fingerprint"])
            ],
        }

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Groups and their timers, firing alerts, silences and acks (a deep copy)."""
        return copy.deepcopy(
            {"groups": self.groups, "firing": self.firing, "silences": self.silences, "acks": self.acks}
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        state = copy.deepcopy(state)
        self.groups, self.firing = state["groups"], state["firing"]
        self.silences, self.acks = state["silences"], state["acks"]

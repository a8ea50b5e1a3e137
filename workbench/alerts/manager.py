"""``AlertManager``: rules evaluated in event time, alerts routed, stored and notified.

It ties the parts together, in this order for each evaluation time ``t`` of a batch:
the :class:`~workbench.alerts.evaluator.Evaluator` steps every alert (vectorised), the
transitions become *alert events* (labels, fingerprint, summary), the
:class:`~workbench.alerts.dispatch.Dispatcher` groups firing/resolved alerts and flushes
due groups into notifications, the store records the events and notifications, and the
outbox delivers the notifications on its own threads. Everything but the outbox is
driven by event time, so a backtest over stored windows yields exactly the live
events and notifications.

Feedback — acknowledge, true/false positive — goes to the store and to every
``on_feedback(alert, label)`` callback (how a model node learns from it).

Examples
--------
>>> import polars as pl
>>> from workbench.alerts.rules import Threshold
>>> from workbench.alerts.dispatch import Route
>>> am = AlertManager([Threshold("hot", metric="cpu_mean", value=90)], routes=[Route(receivers=("ops",), group_wait=0)])
>>> rows = pl.DataFrame({"host": ["a", "b"], "window_end": [60_000, 60_000], "cpu_mean": [95.0, 3.0]})
>>> am.process(rows).select("fingerprint", "to_state").rows()  # evaluated at 1 m, the first evaluation time
[('hot/a', 'firing')]
>>> [(n["receiver"], n["status"], n["summary"]) for n in am.notifications]
[('ops', 'firing', 'hot on a: 95')]
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import polars as pl

from workbench.alerts.dispatch import Dispatcher, Inhibit, Route
from workbench.alerts.evaluator import Evaluator
from workbench.alerts.events import EVENT_SCHEMA, TS, EventBuilder
from workbench.alerts.matchers import Matcher, Silence, parse_matchers
from workbench.alerts.rules import Rule
from workbench.clock import Clock, SystemClock
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = ["EVENT_SCHEMA", "FEEDBACK_LABELS", "AlertManager", "AlertSink"]

FEEDBACK_LABELS = ("acknowledged", "true_positive", "false_positive")


class AlertSink(Protocol):
    """Where alert events, notifications and feedback are recorded (an alert store)."""

    def record_events(self, events: pl.DataFrame) -> None: ...  # noqa: D102

    def record_notifications(self, notes: Sequence[dict[str, Any]]) -> None: ...  # noqa: D102

    def record_feedback(self, row: dict[str, Any]) -> None: ...  # noqa: D102


def _ms(value: datetime | int) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"alert time: must be timezone-aware, not {value!r}")
        return round(value.timestamp() * 1000)
    return int(value)


class AlertManager:
    """Rules, routes, inhibition, silences, acknowledgements, store and outbox in one place.

    Parameters
    ----------
    rules
        The alert rules.
    routes
        Routing and grouping (default: one route, group by ``alertname``, no receiver).
    inhibit
        Inhibition rules.
    by
        Default entity column.
    time
        Event-time column of window rows.
    store
        An alert store (:mod:`workbench.alerts.store`), or ``None``.
    outbox
        An :class:`~workbench.alerts.outbox.Outbox` delivering notifications, or ``None``.
    clock
        Injected clock, for the wall time of feedback.
    history
        Recent events and notifications kept in memory (for views).
    evidence
        Window rows kept per alert (the evidence shown with it).
    evaluation_interval, lookback
        The evaluation clock and lookback (see :class:`~workbench.alerts.evaluator.Evaluator`).
    resend_delay
        How often alerts are re-sent to the outbox's Alertmanager receivers
        (:mod:`~workbench.alerts.amsender`), as Prometheus does.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        routes: Sequence[Route] | None = None,
        inhibit: Sequence[Inhibit] = (),
        by: str | Sequence[str] = "host",
        time: str = "window_end",
        store: AlertSink | None = None,
        outbox: Any = None,
        clock: Clock | None = None,
        history: int = 10_000,
        evidence: int = 30,
        evaluation_interval: str | float = "1m",
        lookback: str | float = "5m",
        resend_delay: str | float = "1m",
    ) -> None:
        self.rules = list(rules)
        self.evaluator = Evaluator(self.rules, by=by, time=time, interval=evaluation_interval, lookback=lookback)
        self.dispatcher = Dispatcher(routes, inhibit)
        self.store = store
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.notifications: deque[dict[str, Any]] = deque(maxlen=history)
        self._recent: deque[pl.DataFrame] = deque()  # recent alert events, at most ``history`` rows
        self._recent_rows = 0
        self._history = history
        self.feedback: dict[str, list[dict[str, Any]]] = {}
        self.evidence: dict[str, pl.DataFrame] = {}  # entity column → latest rows of active entities
        self._evidence_rows = evidence
        self._callbacks: list[Callable[[dict[str, Any], str], Any]] = []
        self._lock = threading.RLock()
        self._rules_by_name = {r.name: r for r in self.rules}
        self._labels: dict[str, dict[str, str]] = {}  # fingerprint → labels of its latest event (pending ones too)
        self._builder = EventBuilder(self.rules, self.evaluator.entity_labels)
        self.version = 0  # bumped whenever events, notifications or feedback change (views redraw on it)
        from workbench.alerts.amsender import connect_alertmanagers

        self.prometheus = connect_alertmanagers(self, resend_delay=resend_delay)

    # -- inputs ---------------------------------------------------------------------
    def process(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Evaluate window rows; returns the alert events (EVENT_SCHEMA) of this batch."""
        with self._lock:
            if frame.height == 0:
                return pl.DataFrame(schema=EVENT_SCHEMA)
            transitions = self.evaluator.evaluate(frame)
            self._collect_evidence(frame)
            return self._after(transitions, self.evaluator.times)

    def process_drift(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Take drift events; they match at the next evaluation at or after their time."""
        with self._lock:
            self.evaluator.add_drift(frame)
            return pl.DataFrame(schema=EVENT_SCHEMA)

    def advance(self, at: datetime | int) -> pl.DataFrame:
        """Move event time to ``at`` without windows: absence, drift, anti-flap and group timers."""
        with self._lock:
            transitions = self.evaluator.advance(_ms(at))
            return self._after(transitions, self.evaluator.times)

    @property
    def now_ms(self) -> int:
        """The latest evaluation time (event time), or the clock's when nothing was evaluated."""
        t = self.evaluator.last_t
        return t if t is not None else _ms(self.clock.now())

    def _after(self, transitions: pl.DataFrame, times: list[int]) -> pl.DataFrame:
        events = self._events(transitions)
        notes: list[dict[str, Any]] = []
        by_time: dict[int, list[dict[str, Any]]] = {}
        firing = events.filter((pl.col("to_state") == "firing") | (pl.col("from_state") == "firing"))
        for ev in firing.with_columns(pl.col("at").dt.epoch("ms").alias("t")).iter_rows(named=True):
            by_time.setdefault(ev["t"], []).append(ev)
        for t in times:
            for ev in by_time.get(t, []):
                if ev["to_state"] == "firing":
                    alert = {
                        "fingerprint": ev["fingerprint"],
                        "labels": json.loads(ev["labels"]),
                        "summary": ev["summary"],
                        "severity": ev["severity"],
                        "value": ev["value"],
                        "starts_at": t,
                    }
                    self.dispatcher.fire(alert, at=t)
                else:
                    self.dispatcher.resolve(ev["fingerprint"], at=t, value=ev["value"])
            notes.extend(self.dispatcher.advance(t))
        if events.height:
            for fp, labels in events.select("fingerprint", "labels").iter_rows():
                self._labels.pop(fp, None)
                self._labels[fp] = json.loads(labels)
            while len(self._labels) > self._history:  # the oldest first (insertion order)
                self._labels.pop(next(iter(self._labels)))
            self._recent.append(events)
            self._recent_rows += events.height
            while self._recent_rows - self._recent[0].height >= self._history:
                self._recent_rows -= self._recent.popleft().height
        self.notifications.extend(notes)
        if events.height or notes:
            self.version += 1
        if self.store is not None:
            if events.height:
                self.store.record_events(events)
            if notes:
                self.store.record_notifications(notes)
        if self.outbox is not None:
            for note in notes:
                self.outbox.put(note)
        return events

    def _events(self, transitions: pl.DataFrame) -> pl.DataFrame:
        return self._builder.build(transitions)

    def _collect_evidence(self, frame: pl.DataFrame) -> None:
        """Keep the latest window rows of every active alert's entity (bounded; a few polars ops per batch)."""
        state = self.evaluator.state
        by_col: dict[str, set[str]] = {}
        for rule_no, entity in state.select("rule", "entity").iter_rows():
            rule = self.rules[rule_no]
            by_col.setdefault(self.evaluator.entity_column(rule), set()).add(self._first_label(rule, entity))
        for col in list(self.evidence):
            if col not in by_col:
                del self.evidence[col]
        for col, entities in by_col.items():
            if col not in frame.columns:
                continue
            keep = pl.col(col).cast(pl.String).is_in(pl.Series(sorted(entities), dtype=pl.String).implode())
            old = self.evidence.get(col)
            rows = frame.filter(keep)
            both = rows if old is None else pl.concat([old.filter(keep), rows], how="diagonal_relaxed")
            self.evidence[col] = both.group_by(col, maintain_order=True).tail(self._evidence_rows)

    def _first_label(self, rule: Rule, entity: str) -> str:
        """The value of the rule's (first) entity column in an alert's entity (a JSON object for several labels)."""
        labels = self.evaluator.entity_labels(rule)
        return str(json.loads(entity).get(labels[0], "")) if len(labels) > 1 else entity

    def evidence_for(self, fingerprint: str) -> pl.DataFrame:
        """The window rows kept for an active alert (its entity's latest windows), oldest first."""
        rule_name, _, entity = fingerprint.partition("/")
        rule = self._rules_by_name.get(rule_name)
        if rule is None:
            known = sorted(self._rules_by_name)
            raise ConfigError(f"evidence: no rule {rule_name!r} (alert {fingerprint!r}); rules: {known}")
        col = self.evaluator.entity_column(rule)
        with self._lock:
            rows = self.evidence.get(col)
        if rows is None:
            return pl.DataFrame()
        return rows.filter(pl.col(col).cast(pl.String) == self._first_label(rule, entity))

    def drivers(self, fingerprint: str) -> list[tuple[str, int]]:
        """The metrics that drove the detections in an alert's evidence, most often first, with counts.

        Rows scored by a detector that explains its scores (``context``, the default) name
        the metric behind each detection (``anomaly_metric``); other rows name none, and an
        alert over them, or of a rule no longer loaded, has no drivers.
        """
        try:
            rows = self.evidence_for(fingerprint)
        except ConfigError:
            return []
        if "anomaly_metric" not in rows.columns:
            return []
        counts = rows.get_column("anomaly_metric").drop_nulls().value_counts(name="n")
        return [(str(m), int(n)) for m, n in counts.sort(["n", "anomaly_metric"], descending=[True, False]).iter_rows()]

    # -- what is active ---------------------------------------------------------------
    def active(self) -> pl.DataFrame:
        """Pending and firing alerts: state, severity, since, value, labels, ack (who, note), muted (why)."""
        with self._lock:
            at = self.now_ms
            rows = []
            for rule_no, entity, state, active_at, fired_at, value in self.evaluator.state.select(
                "rule", "entity", "state", "active_at", "fired_at", "value"
            ).iter_rows():
                rule = self.rules[rule_no]
                fp = f"{rule.name}/{entity}"
                alert = self.dispatcher.firing.get(fp)
                labels = (
                    alert["labels"]
                    if alert
                    else self._labels.get(fp) or {"alertname": rule.name, "severity": rule.severity}
                )
                ack = self.dispatcher.acks.get(fp, {})
                rows.append(
                    {
                        "fingerprint": fp,
                        "rule": rule.name,
                        "entity": entity,
                        "state": state,
                        "severity": rule.severity,
                        "active_at": active_at,
                        "fired_at": fired_at,
                        "age_s": (at - active_at) / 1000,
                        "value": value,
                        "summary": rule.render(entity=entity, value=value, labels=labels),
                        "labels": json.dumps(labels, sort_keys=True),
                        "acknowledged_by": ack.get("by"),
                        "ack_note": ack.get("note"),
                        "muted": self.dispatcher.muted(alert or {"fingerprint": fp, "labels": labels}, at=at),
                    }
                )
            schema: dict[str, Any] = {
                "fingerprint": pl.String,
                "rule": pl.String,
                "entity": pl.String,
                "state": pl.String,
                "severity": pl.String,
                "active_at": pl.Int64,
                "fired_at": pl.Int64,
                "age_s": pl.Float64,
                "value": pl.Float64,
                "summary": pl.String,
                "labels": pl.String,
                "acknowledged_by": pl.String,
                "ack_note": pl.String,
                "muted": pl.String,
            }
            return pl.DataFrame(rows, schema=schema).with_columns(
                pl.col("active_at").cast(TS), pl.col("fired_at").cast(TS)
            )

    def recent_events(self) -> pl.DataFrame:
        """The latest alert events (at most ``history`` rows), oldest first."""
        with self._lock:
            parts = list(self._recent)
        return pl.concat(parts) if parts else pl.DataFrame(schema=EVENT_SCHEMA)

    def open_alerts(self) -> int:
        """Firing alerts right now (the KPI card's number)."""
        return len(self.dispatcher.firing)

    # -- people ---------------------------------------------------------------------
    def acknowledge(self, fingerprint: str, *, by: str, note: str = "") -> None:
        """Acknowledge a firing alert (no repeat notifications while it fires); recorded as feedback."""
        with self._lock:
            self.dispatcher.acknowledge(fingerprint, by=by, at=self.now_ms, note=note)
            self.version += 1
        self._feedback(fingerprint, "acknowledged", by=by, note=note)

    def mark(self, fingerprint: str, label: str, *, by: str, note: str = "") -> None:
        """Label an alert ``true_positive`` or ``false_positive`` (stored; offered to ``on_feedback``)."""
        if label not in ("true_positive", "false_positive"):
            raise ConfigError(
                f"feedback on {fingerprint!r}: label must be true_positive or false_positive, not {label!r}"
            )
        self._feedback(fingerprint, label, by=by, note=note)

    def _feedback(self, fingerprint: str, label: str, *, by: str, note: str) -> None:
        rule = fingerprint.split("/", 1)[0]
        if rule not in self._rules_by_name:
            known = sorted(self._rules_by_name)
            raise ConfigError(f"feedback: no rule {rule!r} (alert {fingerprint!r}); rules: {known}")
        with self._lock:
            alert = dict(self.dispatcher.firing.get(fingerprint) or {"fingerprint": fingerprint})
        row = {
            "fingerprint": fingerprint,
            "rule": rule,
            "label": label,
            "by": by,
            "note": note,
            "at": self.clock.now(),
            "event_time": datetime.fromtimestamp(self.now_ms / 1000, UTC),
        }
        with self._lock:
            self.feedback.setdefault(fingerprint, []).append(row)
            self.version += 1
        if self.store is not None:
            self.store.record_feedback(row)
        for callback in list(self._callbacks):
            callback(alert, label)

    def on_feedback(self, callback: Callable[[dict[str, Any], str], Any]) -> Callable[[], None]:
        """Call ``callback(alert, label)`` on every feedback; returns an unregister function."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def precision(self) -> float | None:
        """Alert precision from feedback: true / (true + false) positives, ``None`` without labels."""
        labels = [rows[-1]["label"] for rows in self.feedback.values() if rows[-1]["label"] != "acknowledged"]
        tp = sum(lab == "true_positive" for lab in labels)
        return tp / len(labels) if labels else None

    def silence(
        self,
        matchers: Sequence[str | Matcher] | str,
        *,
        duration: str | float | timedelta = "1h",
        by: str = "",
        comment: str = "",
        starts_at: datetime | int | None = None,
    ) -> Silence:
        """Silence alerts matching ``matchers`` from now (event time) for ``duration``."""
        start = self.now_ms if starts_at is None else _ms(starts_at)
        silence = Silence(
            f"s-{uuid.uuid4().hex[:12]}",
            parse_matchers(matchers, what="silence"),
            start,
            start + parse_duration(duration, what="silence duration"),
            by,
            comment,
        )
        with self._lock:
            self.dispatcher.add_silence(silence)
            self.version += 1
        record = getattr(self.store, "record_silence", None)
        if callable(record):
            record(silence, at=self.clock.now())
        return silence

    def expire_silence(self, silence_id: str) -> None:
        """End a silence now (event time)."""
        with self._lock:
            self.dispatcher.expire_silence(silence_id, at=self.now_ms)
            self.version += 1
        record = getattr(self.store, "record_silence", None)
        if callable(record):
            record(self.dispatcher.silences[silence_id], at=self.clock.now())

    def silences(self) -> list[Silence]:
        """Silences known (active, pending and recently expired)."""
        with self._lock:
            return list(self.dispatcher.silences.values())

    def close(self) -> None:
        """Stop the outbox's delivery threads (pending notifications stay in its log)."""
        if self.outbox is not None:
            self.outbox.close()

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Evaluator and dispatcher state plus feedback (copies)."""
        with self._lock:
            return {
                "evaluator": self.evaluator.snapshot(),
                "dispatcher": self.dispatcher.snapshot(),
                "feedback": {k: [dict(r) for r in v] for k, v in self.feedback.items()},
                "prometheus": None if self.prometheus is None else self.prometheus.snapshot(),
            }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        with self._lock:
            self.evaluator.restore(state["evaluator"])
            self.dispatcher.restore(state["dispatcher"])
            self.feedback = {k: [dict(r) for r in v] for k, v in state["feedback"].items()}
            if self.prometheus is not None and state.get("prometheus") is not None:
                self.prometheus.restore(state["prometheus"])

"""Alert views: the active alerts table, a timeline of episodes, an alert's detail and evidence.

The table has acknowledge / true positive / false positive actions.

They read an :class:`~workbench.alerts.manager.AlertManager` — the one of the
pipeline's ``alerts`` node — which the pipeline thread keeps up to date; a view only
copies its small state into panes, at most every ``redraw_every`` seconds and only when
something changed (``manager.version``). Feedback buttons are ``param.Action``
parameters (widgets come from them) and write one row to the alert store.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import holoviews as hv
import panel as pn
import param
import polars as pl

from workbench.alerts.backtest import episodes
from workbench.alerts.manager import AlertManager
from workbench.alerts.rules import SEVERITIES
from workbench.errors import AccessError
from workbench.feeds.feed import Feed
from workbench.security.roles import Guard
from workbench.views.base import LiveView
from workbench.views.series import _pandas

__all__ = ["AlertDetail", "AlertTimeline", "AlertsTable", "alert_views", "find_manager"]

_COLOURS = {"info": "#6c8ebf", "warning": "#e6a23c", "critical": "#d9534f", "page": "#8e1c1c"}


def find_manager(feed: Feed) -> AlertManager | None:
    """The alert manager of the feed's pipeline (its ``alerts`` output node), if it has one."""
    node = feed.pipeline.outputs.get("alerts")
    manager = getattr(node, "manager", None)
    return manager if isinstance(manager, AlertManager) else None


def alert_views(feed: Feed, *, guard: Guard | None = None) -> tuple[LiveView, ...]:
    """Table, timeline and detail for the feed's pipeline, or nothing when it has no alerts output.

    The feed's "open alerts" KPI is fed from the same manager. ``guard`` (a served
    session's user and the audit log) checks and records every action of the table.
    """
    manager = find_manager(feed)
    if manager is None:
        return ()
    if feed.alerts is None:
        feed.alerts = manager.open_alerts
    return (AlertsTable(feed, manager, guard=guard), AlertTimeline(feed, manager), AlertDetail(feed, manager))


class _AlertView(LiveView):
    redraw_every = param.Number(default=1.0, bounds=(0.25, 60.0), doc="Seconds between redraws at most.")

    def __init__(self, feed: Feed, manager: AlertManager | None = None, **params: Any) -> None:
        super().__init__(feed, **params)
        found = manager or find_manager(feed)
        if found is None:
            from workbench.errors import ConfigError

            raise ConfigError(f"alert views: pipeline {feed.pipeline.name!r} has no alerts output (Pipeline.alerts)")
        self.manager = found
        self._seen = (-1, 0.0)

    def _due(self) -> bool:
        version, at = self._seen
        if self.manager.version == version and time.monotonic() - at < 10 * self.redraw_every:
            return False  # nothing changed (ages are refreshed every 10 redraw periods)
        if time.monotonic() - at < self.redraw_every:
            return False
        self._seen = (self.manager.version, time.monotonic())
        return True

    def _redraw_now(self) -> None:
        self._seen = (-1, 0.0)
        self.refresh()


def _ack(view: AlertsTable) -> None:
    view._feedback("acknowledged")


def _true(view: AlertsTable) -> None:
    view._feedback("true_positive")


def _false(view: AlertsTable) -> None:
    view._feedback("false_positive")


class AlertsTable(_AlertView):
    """Active alerts — state, severity, age, labels, acknowledgement, muting — with feedback actions.

    With a ``guard`` (the served app) the user is the signed-in one, not a text field,
    and each action is checked on the server (``acknowledge`` and ``feedback`` need the
    operator role) and audited, before → after; a refused one changes nothing.
    """

    min_severity = param.Selector(  # type: ignore[var-annotated]
        default="info", objects=list(SEVERITIES), doc="Least severity shown."
    )
    states = param.ListSelector(default=["pending", "firing"], objects=["pending", "firing"], doc="Alert states shown.")
    rows = param.Integer(default=200, bounds=(10, 5000), doc="Rows shown.")
    user = param.String(default="analyst", doc="Who acknowledges or labels (recorded with the feedback).")
    note = param.String(default="", doc="Note recorded with the feedback.")
    acknowledge = param.Action(_ack, doc="Acknowledge the selected alerts.")  # type: ignore[arg-type]
    true_positive = param.Action(_true, doc="Mark the selected alerts as real.")  # type: ignore[arg-type]
    false_positive = param.Action(_false, doc="Mark the selected alerts as noise.")  # type: ignore[arg-type]

    def __init__(
        self, feed: Feed, manager: AlertManager | None = None, *, guard: Guard | None = None, **params: Any
    ) -> None:
        super().__init__(feed, manager, **params)
        self.guard = guard
        if guard is not None:
            self.user = guard.name
        self.table = pn.widgets.Tabulator(
            None,
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            theme="simple",
            height=320,
            selectable="checkbox",
            layout="fit_data_fill",
        )
        self.precision = pn.pane.Markdown("", margin=(0, 10))
        self.shown = pl.DataFrame()
        self.last_error = ""

    def _build(self) -> Any:
        g = self.guard
        names = ["note", "acknowledge", "true_positive", "false_positive"]
        actions = pn.Param(
            self.param, parameters=names if g is not None else ["user", *names], show_name=False, default_layout=pn.Row
        )
        parts: list[Any] = [actions, self.precision, self.table]
        if g is not None and not g.may("acknowledge"):  # a hint only: the server refuses whatever the page sends
            role = g.user.role if g.user is not None else "none"
            parts.insert(1, pn.pane.Markdown(f"*Signed in as {g.name} ({role}): acting on alerts needs operator.*"))
        return pn.Column(*parts, sizing_mode="stretch_width")

    @param.depends("min_severity", "states", "rows", watch=True)
    def _refilter(self) -> None:
        self._redraw_now()

    def refresh(self) -> None:
        """Copy the manager's active alerts into the table when they changed."""
        if not self._due():
            return
        active = self.manager.active()
        least = SEVERITIES.index(self.min_severity)
        active = active.filter(
            pl.col("state").is_in(list(self.states))
            & pl.col("severity")
            .replace_strict({s: i for i, s in enumerate(SEVERITIES)}, return_dtype=pl.Int64)
            .ge(least)
        ).sort(["state", "age_s"], descending=[False, True])
        self.shown = active.head(self.rows)
        frame = self.shown.select(
            "state",
            "severity",
            "fingerprint",
            "summary",
            pl.col("age_s").round(0),
            "acknowledged_by",
            "muted",
            "labels",
        )
        self.table.value = _pandas(frame)
        p = self.manager.precision()
        self.precision.object = f"alert precision (feedback): **{p:.0%}**" if p is not None else "no feedback yet"

    def _feedback(self, label: str) -> None:
        chosen = [self.shown["fingerprint"][i] for i in (self.table.selection or []) if i < self.shown.height]
        guard = self.guard
        for fp in chosen:
            try:
                if guard is None:
                    self._apply(fp, label, self.user)
                else:
                    guard.run(
                        "acknowledge" if label == "acknowledged" else "feedback",
                        functools.partial(self._apply, fp, label, guard.name),
                        what=fp,
                        before=self._state(fp),
                        after=functools.partial(self._after, fp, label),
                    )
            except AccessError as exc:  # refused on the server (and audited): nothing changed
                self.last_error = str(exc)
                self.precision.object = f"⛔ {exc}"
            except Exception as exc:  # shown, not raised into the UI loop
                self.last_error = str(exc)
                self.precision.object = f"⚠ {exc}"
        self._redraw_now()

    def _apply(self, fp: str, label: str, by: str) -> None:
        if label == "acknowledged":
            self.manager.acknowledge(fp, by=by, note=self.note)
        else:
            self.manager.mark(fp, label, by=by, note=self.note)

    def _after(self, fp: str, label: str) -> dict[str, Any]:
        return {**self._state(fp), "label": label, "note": self.note}

    def _state(self, fp: str) -> dict[str, Any]:
        """What an action on alert ``fp`` may change: its acknowledgement and its last feedback."""
        ack = self.manager.dispatcher.acks.get(fp)
        rows = self.manager.feedback.get(fp) or []
        return {"acknowledged_by": ack["by"] if ack else None, "feedback": rows[-1]["label"] if rows else None}


class AlertTimeline(_AlertView):
    """Firing episodes over time, one row per alert, coloured by severity."""

    alerts = param.Integer(default=30, bounds=(5, 500), doc="Alerts (rows) shown, the most recent.")

    def __init__(self, feed: Feed, manager: AlertManager | None = None, **params: Any) -> None:
        super().__init__(feed, manager, **params)
        self.pane = pn.pane.HoloViews(self._plot(pl.DataFrame()), sizing_mode="stretch_width")
        self.drawn = 0

    def _build(self) -> Any:
        return self.pane

    @param.depends("alerts", watch=True)
    def _rows(self) -> None:
        self._redraw_now()

    def _plot(self, eps: pl.DataFrame) -> Any:
        opts = {"height": 260, "responsive": True, "line_width": 8, "color": "colour", "tools": ["hover"]}
        if eps.height == 0:
            return hv.Segments([], ["start", "fingerprint", "end", "fingerprint2"], ["colour"]).opts(**opts)
        return hv.Segments(_pandas(eps), ["start", "fingerprint", "end", "fingerprint2"], ["colour", "rule"]).opts(
            **opts
        )

    def refresh(self) -> None:
        """Redraw the episodes when alert events arrived."""
        if not self._due():
            return
        frame = self.manager.recent_events()
        if frame.height == 0:
            return
        eps = episodes(frame)
        if eps.height == 0:
            return
        now = frame["at"].max()
        last = eps.group_by("fingerprint").agg(pl.col("start").max().alias("last")).sort("last").tail(self.alerts)
        eps = eps.join(last.select("fingerprint"), on="fingerprint", how="semi").with_columns(
            pl.col("end").fill_null(now),
            pl.col("fingerprint").alias("fingerprint2"),
            pl.col("rule")
            .replace_strict({r.name: _COLOURS[r.severity] for r in self.manager.rules}, default="#999999")
            .alias("colour"),
        )
        self.pane.object = self._plot(eps)
        self.drawn = eps.height


class AlertDetail(_AlertView):
    """One alert: its summary, labels, transitions and the evidence — window rows, scores, raw events.

    Raw events come from a lake output of events (``raw_output``, e.g. the validated
    stream written with ``Pipeline.to_lake``), when a ``lake`` is given: the alert's
    entity over the span of its evidence windows, fetched on a worker thread (never on
    the UI loop) and shown at the next refresh.
    """

    fingerprint = param.Selector(default=None, objects=[], allow_None=True, doc="The alert shown.")  # type: ignore[var-annotated]

    raw_rows = param.Integer(default=200, bounds=(10, 5000), doc="Raw events shown at most.")

    def __init__(
        self,
        feed: Feed,
        manager: AlertManager | None = None,
        *,
        lake: Any = None,
        raw_output: str = "events",
        raw_time: str = "ts",
        **params: Any,
    ) -> None:
        super().__init__(feed, manager, **params)
        self.lake, self.raw_output, self.raw_time = lake, raw_output, raw_time
        self.raw = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, sizing_mode="stretch_width", theme="simple", height=200
        )
        self._raw_for: tuple[str, Any, Any] | None = None
        self._raw_ready: tuple[tuple[str, Any, Any], pl.DataFrame] | None = None
        self._raw_thread: Any = None
        self.head = pn.pane.Markdown("No alert selected.", sizing_mode="stretch_width")
        self.evidence = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, sizing_mode="stretch_width", theme="simple", height=240
        )
        self.history = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, sizing_mode="stretch_width", theme="simple", height=160
        )

    def _build(self) -> Any:
        pick = pn.Param(self.param, parameters=["fingerprint"], show_name=False)
        parts = [pick, self.head, "**Evidence** (latest windows of the entity)", self.evidence]
        if self.lake is not None:
            parts += ["**Raw events** behind those windows", self.raw]
        return pn.Column(*parts, "**Transitions**", self.history, sizing_mode="stretch_width")

    @param.depends("fingerprint", watch=True)
    def _chosen(self) -> None:
        self._redraw_now()

    def refresh(self) -> None:
        """Offer the active alerts; show the chosen one."""
        if not self._due():
            return
        fps = self.manager.active()["fingerprint"].to_list()
        current = self.fingerprint
        options = fps + ([current] if current is not None and current not in fps else [])
        if list(self.param["fingerprint"].objects) != options:
            self.param["fingerprint"].objects = options
        if current is None and fps:
            self.fingerprint = fps[0]
            return  # the watcher redraws
        if self.fingerprint is None:
            return
        fp = self.fingerprint
        history = self.manager.recent_events().filter(pl.col("fingerprint") == fp)
        if history.height:
            last = history.row(-1, named=True)
            labels = ", ".join(f"`{k}={v}`" for k, v in sorted(json.loads(last["labels"]).items()))
            acks = [f["by"] for f in self.manager.feedback.get(fp, [])]
            since = f"{last['at']:%Y-%m-%d %H:%M:%S}"
            self.head.object = (
                f"### {last['summary'] or fp}\n**{last['severity']}** · {last['to_state']} since {since}"
                f" UTC · value {last['value']:.4g}\n\n{labels}"
                + (f"\n\nfeedback by: {', '.join(acks)}" if acks else "")
            )
            self.history.value = _pandas(history.select("at", "from_state", "to_state", "value"))
        rows = self.manager.evidence_for(fp)
        ready, self._raw_ready = self._raw_ready, None
        if ready is not None and ready[0][0] == fp:
            self.raw.value = _pandas(ready[1])
        elif ready is not None:
            self._raw_for = None  # fetched for an alert no longer shown: fetch again
        if rows.height:
            self.evidence.value = _pandas(rows.sort("window_end", descending=True))
            self._fetch_raw(fp, rows)

    def _fetch_raw(self, fingerprint: str, rows: pl.DataFrame) -> None:
        """Start (once per alert and span) a worker thread reading the raw events from the lake."""
        import threading

        if self.lake is None or "window_start" not in rows.columns:
            return
        span = (fingerprint, rows["window_start"].min(), rows["window_end"].max())
        if span == self._raw_for or (self._raw_thread is not None and self._raw_thread.is_alive()):
            return
        self._raw_for = span
        rule = self.manager._rules_by_name[fingerprint.partition("/")[0]]
        col, entity = self.manager.evaluator.entity_column(rule), fingerprint.partition("/")[2]

        def work() -> None:
            self._raw_ready = (span, self.raw_events(col, entity, span[1], span[2]))

        self._raw_thread = threading.Thread(target=work, name="wb-alert-raw", daemon=True)
        self._raw_thread.start()

    def raw_events(self, column: str, entity: str, start: Any, end: Any) -> pl.DataFrame:
        """Raw events of ``entity`` with ``start <= time < end`` from the lake (empty without them)."""
        if self.lake is None or self.raw_output not in self.lake.outputs():
            return pl.DataFrame()
        t = self.raw_time
        safe = entity.replace("'", "''")
        sql = (
            f"select * from {self.raw_output} where CAST({column} AS VARCHAR) = '{safe}' "
            f"and {t} >= TIMESTAMPTZ '{start.isoformat()}' and {t} < TIMESTAMPTZ '{end.isoformat()}' "
            f"order by {t} desc limit {int(self.raw_rows)}"
        )
        return self.lake.query(sql)

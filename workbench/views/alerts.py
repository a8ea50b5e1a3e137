"""Alert views: active alerts with actions, silences, a timeline of states, history, an alert's evidence.

The table has acknowledge / true positive / false positive actions, with a note; the
silences view creates a silence (matchers, expiry, comment) and expires one. Every
action goes through :mod:`workbench.feeds.actions` with the acting user — the signed-in
user (``pn.state.user``), or ``"anonymous"`` without authentication — so it is recorded
on the server with who did it.

They read an :class:`~workbench.alerts.manager.AlertManager` — the one of the
pipeline's ``alerts`` node — which the pipeline thread keeps up to date; a view only
copies its small state into panes, at most every ``redraw_every`` seconds and only when
something changed (``manager.version``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import panel as pn
import param
import polars as pl
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, FactorRange, HoverTool, Range1d
from bokeh.models.annotations import Title
from bokeh.plotting import figure

from workbench.alerts.backtest import episodes
from workbench.alerts.manager import AlertManager
from workbench.alerts.rules import SEVERITIES
from workbench.errors import AccessError
from workbench.feeds import actions
from workbench.feeds.feed import Feed
from workbench.security.roles import Guard
from workbench.views.base import LiveView
from workbench.views.series import _pandas
from workbench.views.timerange import TimeRange

__all__ = [
    "AlertDetail",
    "AlertHistory",
    "AlertTimeline",
    "AlertsTable",
    "Silences",
    "alert_views",
    "find_manager",
    "user_name",
]

#: Colours of the timeline's states.
STATE_COLOURS = {"pending": "#e6a23c", "firing": "#d9534f", "silenced": "#8e6fc1", "resolved": "#9aa5b1"}
_EXPIRIES = ["15m", "1h", "4h", "12h", "1d", "7d"]
_ALERT_COLUMNS = [
    "state",
    "severity",
    "fingerprint",
    "summary",
    "driven_by",
    "age_s",
    "acknowledged_by",
    "ack_note",
    "muted",
    "labels",
]
_SILENCE_SCHEMA: dict[str, Any] = {
    "id": pl.String,
    "state": pl.String,
    "matchers": pl.String,
    "starts": pl.Datetime("ms", "UTC"),
    "ends": pl.Datetime("ms", "UTC"),
    "created_by": pl.String,
    "comment": pl.String,
}


def user_name(fallback: str = "") -> str:
    """The acting user: the signed-in user of this session, else ``fallback``, else ``"anonymous"``."""
    return actions.who(pn.state.user or fallback)


def find_manager(feed: Feed) -> AlertManager | None:
    """The alert manager of the feed's pipeline (its ``alerts`` output node), if it has one."""
    node = feed.pipeline.outputs.get("alerts")
    manager = getattr(node, "manager", None)
    return manager if isinstance(manager, AlertManager) else None


def alert_views(feed: Feed, *, timerange: TimeRange | None = None, guard: Guard | None = None) -> tuple[LiveView, ...]:
    """Table, silences, timeline, history and detail for the feed's pipeline, or nothing without alerts.

    The feed's "open alerts" KPI is fed from the same manager. ``guard`` (a served
    session's user and the audit log) checks and records every action of the table.
    """
    manager = find_manager(feed)
    if manager is None:
        return ()
    if feed.alerts is None:
        feed.alerts = manager.open_alerts
    return (
        AlertsTable(feed, manager, guard=guard),
        Silences(feed, manager, guard=guard),
        AlertTimeline(feed, manager, timerange=timerange),
        AlertHistory(feed, manager, timerange=timerange),
        AlertDetail(feed, manager),
    )


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


def _drivers_text(drivers: list[tuple[str, int]], *, top: int | None = None, counts: bool = False) -> str:
    """``cpu_mean, count`` (``counts``: ``cpu_mean (4 windows), count (1)``) from :meth:`AlertManager.drivers`.

    >>> _drivers_text([("cpu_mean", 4), ("count", 1)], counts=True)
    'cpu_mean (4 windows), count (1)'
    >>> _drivers_text([("cpu_mean", 4), ("count", 1), ("mem_mean", 1)], top=2)
    'cpu_mean, count'
    """
    shown = drivers[:top] if top is not None else drivers
    if not counts:
        return ", ".join(m for m, _ in shown)
    if not shown:
        return ""
    first, *rest = shown
    unit = "window" if first[1] == 1 else "windows"
    return ", ".join([f"{first[0]} ({first[1]} {unit})", *(f"{m} ({n})" for m, n in rest)])


def silence_matchers(labels: str | dict[str, str]) -> str:
    """Matchers that select one alert: its labels but the severity (``alertname="hot", host="a"``).

    >>> silence_matchers('{"alertname": "hot", "host": "a", "severity": "critical"}')
    'alertname="hot", host="a"'
    """
    values = json.loads(labels) if isinstance(labels, str) else labels
    return ", ".join(f'{k}="{v}"' for k, v in sorted(values.items()) if k != "severity")


class AlertsTable(_AlertView):
    """Active alerts — state, severity, age, labels, acknowledgement, silencing — with feedback actions.

    The actions apply to the ticked alerts, or else to the one last clicked. Clicking a row
    also calls ``on_select(alert row)`` (the dashboard shows its detail and drills into it).

    With a ``guard`` (the served app) the user is the signed-in one, not a text field,
    and each action is checked on the server (``acknowledge`` and ``feedback`` need the
    operator role) and audited, before → after; a refused one changes nothing.
    """

    min_severity = param.Selector(  # type: ignore[var-annotated]
        default="info", objects=list(SEVERITIES), doc="Least severity shown."
    )
    states = param.ListSelector(default=["pending", "firing"], objects=["pending", "firing"], doc="Alert states shown.")
    rows = param.Integer(default=200, bounds=(10, 5000), doc="Rows shown.")
    user = param.String(default="", doc="Who acts when no one is signed in (notebooks); the signed-in user wins.")
    note = param.String(default="", doc="Note recorded with the acknowledgement or label.")
    acknowledge = param.Action(_ack, doc="Acknowledge the selected alerts.")  # type: ignore[arg-type]
    true_positive = param.Action(_true, doc="Mark the selected alerts as real.")  # type: ignore[arg-type]
    false_positive = param.Action(_false, doc="Mark the selected alerts as noise.")  # type: ignore[arg-type]

    def __init__(
        self,
        feed: Feed,
        manager: AlertManager | None = None,
        *,
        on_select: Callable[[dict[str, Any]], Any] | None = None,
        guard: Guard | None = None,
        **params: Any,
    ) -> None:
        super().__init__(feed, manager, **params)
        self.on_select = on_select
        self.guard = guard
        if guard is not None:
            self.user = guard.name
        self.table = pn.widgets.Tabulator(
            _pandas(pl.DataFrame(schema=dict.fromkeys(_ALERT_COLUMNS, pl.String))),  # columns from the start
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            theme="simple",
            height=300,
            selectable="checkbox",
            layout="fit_data_fill",
            titles={"age_s": "age [s]", "muted": "muted (why)", "ack_note": "note", "driven_by": "driven by"},
            css_classes=["wb-alerts-table"],
        )
        self.table.on_click(self._clicked)
        self.precision = pn.pane.Markdown("", margin=(0, 10))
        self.message = pn.pane.Markdown("", margin=(0, 10))
        self.shown = pl.DataFrame()
        self.chosen: str | None = None  # the alert last clicked
        self.last_error = ""

    def _build(self) -> Any:
        actions_row = pn.Param(
            self.param,
            parameters=["note", "acknowledge", "true_positive", "false_positive"],
            widgets={
                "note": {"type": pn.widgets.TextInput, "placeholder": "note (recorded with the action)"},
                "acknowledge": {"type": pn.widgets.Button, "color": "primary"},
            },
            show_name=False,
            default_layout=pn.Row,
            sizing_mode="stretch_width",
        )
        parts: list[Any] = [actions_row, pn.Row(self.precision, self.message), self.table]
        g = self.guard
        if g is not None and not g.may("acknowledge"):  # a hint only: the server refuses whatever the page sends
            role = g.user.role if g.user is not None else "none"
            parts.insert(1, pn.pane.Markdown(f"*Signed in as {g.name} ({role}): acting on alerts needs operator.*"))
        return pn.Column(*parts, sizing_mode="stretch_width")

    def _clicked(self, event: Any) -> None:
        row = getattr(event, "row", None)
        if row is None or row >= self.shown.height:
            return
        alert = self.shown.row(row, named=True)
        self.chosen = alert["fingerprint"]
        self.message.object = f"chosen: **{self.chosen}** (the actions apply to it when no box is ticked)"
        if self.on_select is not None:
            self.on_select(alert)

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
        driven = [_drivers_text(self.manager.drivers(fp), top=2) for fp in self.shown["fingerprint"]]
        frame = self.shown.select(
            "state",
            "severity",
            "fingerprint",
            "summary",
            pl.Series("driven_by", driven, dtype=pl.String),
            pl.col("age_s").round(0),
            "acknowledged_by",
            "ack_note",
            "muted",
            "labels",
        )
        hidden = [] if any(driven) else ["driven_by"]  # only alerts on a detector that explains have drivers
        if self.table.hidden_columns != hidden:
            self.table.hidden_columns = hidden
        self.table.value = _pandas(frame)
        p = self.manager.precision()
        self.precision.object = f"alert precision (feedback): **{p:.0%}**" if p is not None else "no feedback yet"

    def _feedback(self, label: str) -> None:
        chosen = [self.shown["fingerprint"][i] for i in (self.table.selection or []) if i < self.shown.height]
        if not chosen and self.chosen is not None:
            chosen = [self.chosen]
        if not chosen:
            self.message.object = "Tick alerts first (the boxes on the left), or click one."
            return
        guard = self.guard
        user = guard.name if guard is not None else user_name(self.user)
        done = []
        for fp in chosen:
            try:
                if guard is None:
                    self._apply(fp, label, user)
                else:
                    guard.run(
                        "acknowledge" if label == "acknowledged" else "feedback",
                        functools.partial(self._apply, fp, label, user),
                        what=fp,
                        before=self._state(fp),
                        after=functools.partial(self._after, fp, label),
                    )
                done.append(fp)
            except AccessError as exc:  # refused on the server (and audited): nothing changed
                self.last_error = str(exc)
                self.message.object = f"⛔ {exc}"
            except Exception as exc:  # shown, not raised into the UI loop
                self.last_error = str(exc)
                self.message.object = f"⚠ {exc}"
        if done:
            self.message.object = f"{label.replace('_', ' ')} by **{user}**: {', '.join(done)}"
        self._redraw_now()

    def _apply(self, fp: str, label: str, by: str) -> None:
        if label == "acknowledged":
            actions.acknowledge(by, self.manager, fp, note=self.note)
        else:
            actions.mark(by, self.manager, fp, label, note=self.note)

    def _after(self, fp: str, label: str) -> dict[str, Any]:
        return {**self._state(fp), "label": label, "note": self.note}

    def _state(self, fp: str) -> dict[str, Any]:
        """What an action on alert ``fp`` may change: its acknowledgement and its last feedback."""
        ack = self.manager.dispatcher.acks.get(fp)
        rows = self.manager.feedback.get(fp) or []
        return {"acknowledged_by": ack["by"] if ack else None, "feedback": rows[-1]["label"] if rows else None}


def _create(view: Silences) -> None:
    view._create()


def _expire(view: Silences) -> None:
    view._expire()


class Silences(_AlertView):
    """Silences: create one (matchers, expiry, comment) and expire one; each recorded with its user."""

    matchers = param.String(default="", doc='Labels an alert must match, e.g. alertname="cpu_saturated", host="web-1".')
    expires = param.Selector(default="1h", objects=_EXPIRIES, doc="How long the silence lasts.")  # type: ignore[var-annotated]
    comment = param.String(default="", doc="Why (recorded with the silence).")
    user = param.String(default="", doc="Who acts when no one is signed in (notebooks); the signed-in user wins.")
    create = param.Action(_create, doc="Create the silence.")  # type: ignore[arg-type]
    expire = param.Action(_expire, doc="Expire the selected silences now.")  # type: ignore[arg-type]

    def __init__(
        self, feed: Feed, manager: AlertManager | None = None, *, guard: Guard | None = None, **params: Any
    ) -> None:
        super().__init__(feed, manager, **params)
        self.guard = guard
        if guard is not None:
            self.user = guard.name
        self.table = pn.widgets.Tabulator(
            _pandas(pl.DataFrame(schema=_SILENCE_SCHEMA)),  # columns from the start
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            theme="simple",
            height=160,
            selectable="checkbox",
            layout="fit_data_fill",
        )
        self.message = pn.pane.Markdown("", margin=(0, 10))
        self.shown = pl.DataFrame()

    def _build(self) -> Any:
        form = pn.Param(
            self.param,
            parameters=["matchers", "expires", "comment", "create", "expire"],
            widgets={
                "matchers": {"type": pn.widgets.TextInput, "placeholder": 'alertname="…", host="…"'},
                "comment": {"type": pn.widgets.TextInput, "placeholder": "why"},
                "create": {"type": pn.widgets.Button, "color": "warning", "label": "Create silence"},
            },
            show_name=False,
            default_layout=pn.Row,
            sizing_mode="stretch_width",
        )
        return pn.Column(form, self.message, self.table, sizing_mode="stretch_width")

    def _guarded(self, what: str, do: Callable[[], Any], after: Callable[[], Any]) -> Any:
        """``do()``, checked (role operator) and audited when serving with a guard."""
        if self.guard is None:
            return do()
        return self.guard.run("silence", do, what=what, before=self._listing(), after=after)

    def _listing(self) -> list[dict[str, Any]]:
        now = self.manager.now_ms
        return [
            {"id": s.silence_id, "matchers": [str(m) for m in s.matchers], "active": s.active(now)}
            for s in self.manager.silences()
        ]

    def _create(self) -> None:
        user = self.guard.name if self.guard is not None else user_name(self.user)
        try:
            made = self._guarded(
                self.matchers,
                functools.partial(
                    actions.silence, user, self.manager, self.matchers, duration=self.expires, comment=self.comment
                ),
                self._listing,
            )
        except Exception as exc:  # a bad matcher or a refused role: said, not raised into the UI loop
            self.message.object = f"{'⛔' if isinstance(exc, AccessError) else '⚠'} {exc}"
            return
        self.message.object = f"silence `{made.silence_id}` created by **{user}** for {self.expires}"
        self._redraw_now()

    def _expire(self) -> None:
        user = self.guard.name if self.guard is not None else user_name(self.user)
        chosen = [self.shown["id"][i] for i in (self.table.selection or []) if i < self.shown.height]
        for sid in chosen:
            try:
                self._guarded(sid, functools.partial(actions.expire_silence, user, self.manager, sid), self._listing)
            except Exception as exc:
                self.message.object = f"{'⛔' if isinstance(exc, AccessError) else '⚠'} {exc}"
        self._redraw_now()

    def refresh(self) -> None:
        """List the silences (active first)."""
        if not self._due():
            return
        now = self.manager.now_ms
        rows = [
            {
                "id": s.silence_id,
                "state": "active" if s.active(now) else ("pending" if s.starts_at > now else "expired"),
                "matchers": ", ".join(str(m) for m in s.matchers),
                "starts": datetime.fromtimestamp(s.starts_at / 1000, UTC),
                "ends": datetime.fromtimestamp(s.ends_at / 1000, UTC),
                "created_by": s.created_by,
                "comment": s.comment,
            }
            for s in self.manager.silences()
        ]
        self.shown = pl.DataFrame(rows, schema=_SILENCE_SCHEMA).sort(["state", "ends"], descending=[False, True])
        self.table.value = _pandas(self.shown)


def state_intervals(events: pl.DataFrame, now: datetime, muted: set[str] | None = None) -> pl.DataFrame:
    """Each alert's pending, firing and resolved intervals from its transitions (``end``: the next one, or now).

    Firing intervals of alerts in ``muted`` are called ``silenced``; the inactive time after a
    pending alert that never fired is left out.

    >>> t = [datetime(2024, 1, 1, 0, m, tzinfo=UTC) for m in range(4)]
    >>> ev = pl.DataFrame({"fingerprint": ["a"] * 3, "from_state": ["inactive", "pending", "firing"],
    ...                    "to_state": ["pending", "firing", "inactive"], "at": t[:3], "severity": ["critical"] * 3})
    >>> state_intervals(ev, t[3]).select("state", pl.col("end").dt.minute()).rows()
    [('pending', 1), ('firing', 2), ('resolved', 3)]
    """
    if events.height == 0:
        ts = pl.Datetime("ms", "UTC")
        return pl.DataFrame(
            schema={"fingerprint": pl.String, "state": pl.String, "start": ts, "end": ts, "severity": pl.String}
        )
    ev = events.sort("fingerprint", "at")
    out = ev.select(
        "fingerprint",
        pl.when(
            (pl.col("to_state") != "pending") & (pl.col("to_state") != "firing") & (pl.col("from_state") == "firing")
        )
        .then(pl.lit("resolved"))
        .otherwise(pl.col("to_state"))
        .alias("state"),
        pl.col("at").alias("start"),
        pl.col("at").shift(-1).over("fingerprint").fill_null(pl.lit(now).cast(ev.schema["at"])).alias("end"),
        "severity",
    ).filter(pl.col("state").is_in(["pending", "firing", "resolved"]))
    if muted:
        out = out.with_columns(
            pl.when((pl.col("state") == "firing") & pl.col("fingerprint").is_in(sorted(muted)))
            .then(pl.lit("silenced"))
            .otherwise(pl.col("state"))
            .alias("state")
        )
    return out


class AlertTimeline(_AlertView):
    """Each alert's pending, firing (or silenced) and resolved intervals on a real time axis, over the range."""

    alerts = param.Integer(default=30, bounds=(5, 500), doc="Alerts (rows) shown, the most recent.")

    def __init__(
        self, feed: Feed, manager: AlertManager | None = None, *, timerange: TimeRange | None = None, **params: Any
    ) -> None:
        super().__init__(feed, manager, **params)
        self.timerange = timerange or TimeRange()
        self.source = ColumnDataSource(
            {k: [] for k in ("y", "left", "right", "state", "colour", "severity", "since", "until", "lasted")}
        )
        self.y_range = FactorRange(factors=[])
        self.x_range = Range1d(start=0, end=1)
        fig = figure(
            x_axis_type="datetime",
            y_range=self.y_range,
            x_range=self.x_range,
            sizing_mode="stretch_width",
            height=300,
            tools="xpan,xwheel_zoom,reset,save",
            toolbar_location="right",
            x_axis_label="time (UTC)",
            name="wb-alert-timeline",
            title="Alert states over the range",
        )
        fig.hbar(
            y="y",
            left="left",
            right="right",
            height=0.7,
            source=self.source,
            fill_color="colour",
            line_color=None,
            legend_field="state",
        )
        fig.xaxis.formatter = DatetimeTickFormatter(
            seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M", hours="%H:%M", days="%b %d"
        )
        fig.yaxis.major_label_text_font_size = "8pt"
        fig.legend.orientation = "horizontal"
        fig.legend.location = "top_left"
        fig.add_tools(
            HoverTool(
                tooltips=[
                    ("alert", "@y"),
                    ("state", "@state"),
                    ("severity", "@severity"),
                    ("from", "@since"),
                    ("to", "@until"),
                    ("lasted", "@lasted"),
                ]
            )
        )
        self.figure = fig
        self.title = cast(Title, fig.title)
        self.pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width")
        self.drawn = 0
        self.timerange.param.watch(lambda *_: self._redraw_now(), ["span", "custom", "live", "zone", "browser_zone"])

    def _build(self) -> Any:
        return self.pane

    @param.depends("alerts", watch=True)
    def _rows(self) -> None:
        self._redraw_now()

    def refresh(self) -> None:
        """Redraw the intervals (when alert events arrived, and to move the range while live)."""
        if not self._due():
            return
        tr = self.timerange
        newest = self.feed.newest or datetime.fromtimestamp(self.manager.now_ms / 1000, UTC)
        start, end = tr.bounds(newest)
        zone = tr.zone_name
        self.figure.xaxis.axis_label = f"time ({zone})"
        a, b = pl.Series([start, end]).dt.convert_time_zone(zone).dt.strftime("%H:%M:%S").to_list()
        # a paused range (a drill-down) holds the timeline still: say so, and over which span
        title = f"Alert states {a}–{b} {zone}" + ("" if tr.live else " · paused")
        if self.title.text != title:
            self.title.text = title

        def local(t: datetime) -> float:
            naive = pl.Series([t]).dt.convert_time_zone(zone).dt.replace_time_zone(None)[0]
            return naive.replace(tzinfo=UTC).timestamp() * 1000

        self.x_range.start, self.x_range.end = local(start), local(end)
        frame = self.manager.recent_events()
        now = datetime.fromtimestamp(self.manager.now_ms / 1000, UTC)
        muted = set(self.manager.active().filter(pl.col("muted") == "silenced")["fingerprint"].to_list())
        spans = state_intervals(frame, max(now, end), muted).filter((pl.col("end") >= start) & (pl.col("start") <= end))
        if spans.height == 0:
            self.y_range.factors = []
            self.source.data = {k: [] for k in self.source.data}
            self.drawn = 0
            return
        last = spans.group_by("fingerprint").agg(pl.col("start").max().alias("last")).sort("last").tail(self.alerts)
        spans = spans.join(last.select("fingerprint"), on="fingerprint", how="semi").with_columns(
            pl.col("start").clip(start, None), pl.col("end").clip(None, max(now, end))
        )
        order = last["fingerprint"].to_list()
        shown = spans.with_columns(
            pl.col("start").dt.convert_time_zone(zone).dt.strftime("%F %T").alias("since"),
            pl.col("end").dt.convert_time_zone(zone).dt.strftime("%F %T").alias("until"),
            ((pl.col("end") - pl.col("start")).dt.total_seconds()).alias("secs"),
        )
        self.y_range.factors = order
        self.source.data = {
            "y": shown["fingerprint"].to_list(),
            "left": np.array([local(t) for t in shown["start"]]),
            "right": np.array([local(t) for t in shown["end"]]),
            "state": shown["state"].to_list(),
            "colour": [STATE_COLOURS[s] for s in shown["state"]],
            "severity": shown["severity"].to_list(),
            "since": shown["since"].to_list(),
            "until": shown["until"].to_list(),
            "lasted": [f"{s:.0f} s" for s in shown["secs"]],
        }
        self.drawn = len(order)


class AlertHistory(_AlertView):
    """Resolved alerts: when each fired and resolved, how long it lasted, its summary (newest first)."""

    rows = param.Integer(default=200, bounds=(10, 5000), doc="Resolved alerts shown at most.")

    def __init__(
        self, feed: Feed, manager: AlertManager | None = None, *, timerange: TimeRange | None = None, **params: Any
    ) -> None:
        super().__init__(feed, manager, **params)
        self.timerange = timerange or TimeRange()
        self.table = pn.widgets.Tabulator(
            None,
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            theme="simple",
            height=220,
            layout="fit_data_fill",
            titles={"lasted_s": "lasted [s]"},
        )
        self.shown = pl.DataFrame()

    def _build(self) -> Any:
        return self.table

    def refresh(self) -> None:
        """List the firing episodes that ended."""
        if not self._due():
            return
        events = self.manager.recent_events()
        eps = episodes(events).filter(pl.col("end").is_not_null())
        fired = events.filter(pl.col("to_state") == "firing").select(
            "fingerprint", pl.col("at").alias("start"), "severity", "summary", pl.col("value").alias("value_at_firing")
        )
        eps = eps.join(fired, on=["fingerprint", "start"], how="left")
        self.shown = (
            eps.select(
                pl.col("fingerprint").alias("alert"),
                "severity",
                "summary",
                pl.col("start").alias("fired"),
                pl.col("end").alias("resolved"),
                (pl.col("end") - pl.col("start")).dt.total_seconds().alias("lasted_s"),
                "value_at_firing",
            )
            .sort("resolved", descending=True)
            .head(self.rows)
        )
        self.table.value = _pandas(self.shown, self.timerange.zone_name)


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
            notes = [
                f"{f['label'].replace('_', ' ')} by {f['by']}" + (f": “{f['note']}”" if f["note"] else "")
                for f in self.manager.feedback.get(fp, [])
            ]
            since = f"{last['at']:%Y-%m-%d %H:%M:%S}"
            drivers = self.manager.drivers(fp)
            driven = f"\n\ndriven by {_drivers_text(drivers, counts=True)}" if drivers else ""
            self.head.object = (
                f"### {last['summary'] or fp}\n**{last['severity']}** · {last['to_state']} since {since}"
                f" UTC · value {last['value']:.4g}\n\n{labels}{driven}"
                + (f"\n\nfeedback: {'; '.join(notes)}" if notes else "")
            )
            self.history.value = _pandas(history.select("at", "from_state", "to_state", "value"))
        try:
            rows = self.manager.evidence_for(fp)
        except Exception:  # an alert of a rule no longer loaded: no evidence
            rows = pl.DataFrame()
        ready, self._raw_ready = self._raw_ready, None
        if ready is not None and ready[0][0] == fp:
            self.raw.value = _pandas(ready[1])
        elif ready is not None:
            self._raw_for = None  # fetched for an alert no longer shown: fetch again
        if rows.height:
            first = [c for c in ("is_anomaly", "anomaly_score", "anomaly_metric") if c in rows.columns]
            rows = rows.select(*first, pl.exclude(first)) if first else rows  # the verdict first, then the window
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

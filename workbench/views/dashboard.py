"""``Dashboard``: the full live monitor — time range, KPIs, series, heatmap, drill-down, tables, alerts, pipeline.

One :class:`~workbench.views.timerange.TimeRange` (last 5 m … 6 h or custom, live or
paused, UTC or the browser's zone) drives every view. Clicking a heatmap cell, a row of
the latest windows or an alert drills into that entity at that time: its series (the
time marked, the range paused), its windows and the alert evidence then.

One periodic callback per session drives every view (latest wins, at most
``refresh_hz``), and one subscription per view is released when the session ends.
A banner says since when the data is stale when the source stops.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import panel as pn
import param

from workbench.feeds.columns import family_of
from workbench.feeds.feed import Feed
from workbench.security.roles import Guard
from workbench.views.alerts import AlertDetail, AlertsTable, Silences, alert_views, find_manager, silence_matchers
from workbench.views.audit import AuditView
from workbench.views.base import LiveView
from workbench.views.drill import DrillDown
from workbench.views.graph import PipelineView
from workbench.views.heatmap import EntityHeatmap
from workbench.views.kpis import KpiCards
from workbench.views.series import MetricSeries
from workbench.views.tables import DeadLetters, LatestWindows
from workbench.views.timerange import TimeRange

__all__ = ["Dashboard"]

_RANGE_PARAMS = ["span", "custom", "live", "zone", "browser_zone", "focus"]


def _live_label(live: bool) -> str:
    return "● Following live" if live else "❚❚ Paused"


class Dashboard(LiveView):
    """Every live view of one feed over one time range; the time series' metric drives the heatmap and the table."""

    refresh_hz = param.Number(default=1.0, bounds=(0.2, 4.0), doc="Updates per second (at most 4, latest wins).")

    def __init__(self, feed: Feed, *, guard: Guard | None = None, **params: Any) -> None:
        super().__init__(feed, **params)
        self.guard = guard
        self.timerange = tr = TimeRange()
        self.kpis = KpiCards(feed)
        self.series = MetricSeries(feed, timerange=tr)
        self.heatmap = EntityHeatmap(feed, timerange=tr, on_pick=self.drill)
        self.latest = LatestWindows(feed, timerange=tr, on_pick=self.drill)
        self.dead = DeadLetters(feed)
        self.pipeline = PipelineView(feed)
        self.views: list[LiveView] = [self.kpis, self.series, self.heatmap, self.latest, self.dead, self.pipeline]
        self.alerts = alert_views(
            feed, timerange=tr, guard=guard
        )  # an "Alerts" tab when the pipeline has an alerts output
        self.views += list(self.alerts)
        # an "Audit" tab for admins who signed in to a served app (the audit log is the guard's)
        self.audit: AuditView | None = None
        signed_in = guard is not None and guard.user is not None and guard.user.via != "local"
        if guard is not None and guard.audit is not None and signed_in and guard.may("audit"):
            self.audit = AuditView(feed, guard.audit)
            self.views.append(self.audit)
        for view in self.views:
            view.managed = True
            if isinstance(view, AlertsTable):
                view.on_select = self._alert_chosen
        self.drilled = DrillDown(feed, find_manager(feed), timerange=tr)
        self.series.param.watch(self._follow_metric, "metric")
        self.series.param.watch(self._follow_family, "family")
        self.banner = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", margin=(0, 10)
        )
        self.range_text = pn.pane.Markdown("", margin=(8, 10), css_classes=["wb-range"])
        self.held_text = pn.pane.Markdown("", margin=(8, 10), css_classes=["wb-held"])
        tr.param.watch(lambda *_: self._show_range(), _RANGE_PARAMS)

    def _follow_metric(self, event: param.parameterized.Event) -> None:
        for view, name in ((self.heatmap, "metric"), (self.latest, "sort_by")):
            if event.new in view.param[name].objects:
                setattr(view, name, event.new)

    def _follow_family(self, event: param.parameterized.Event) -> None:
        if event.new in self.heatmap.param["family"].objects:
            self.heatmap.family = event.new

    # -- drill-down -------------------------------------------------------------------
    def drill(self, entity: str, at: datetime) -> None:
        """Open ``entity`` at ``at``: its series (range paused with ``at`` marked), windows and evidence."""
        if self.feed.prometheus:
            family = family_of(entity)
            if family in self.series.param["family"].objects:
                self.series.family = family
        if entity not in self.series.param["entities"].objects:
            self.series.param["entities"].objects = [*self.series.param["entities"].objects, entity]
        with param.parameterized.discard_events(self.series):
            self.series.entities = [entity]
        self.timerange.pause_at(at)  # rebuilds the series (its watcher), with the time marked
        self.drilled.focus_on(entity, at)
        self._show_range()

    def _alert_chosen(self, alert: dict[str, Any]) -> None:
        """An alert row clicked: its detail, a silence form for it, and a drill-down into its entity then."""
        for view in self.alerts:
            if isinstance(view, AlertDetail):
                if alert["fingerprint"] not in view.param["fingerprint"].objects:
                    view.param["fingerprint"].objects = [*view.param["fingerprint"].objects, alert["fingerprint"]]
                view.fingerprint = alert["fingerprint"]
            elif isinstance(view, Silences):
                view.matchers = silence_matchers(alert["labels"])
        if alert.get("entity") in self.feed.entities() and alert.get("active_at") is not None:
            self.drill(alert["entity"], alert["active_at"])

    # -- time range -------------------------------------------------------------------
    def _show_range(self) -> None:
        tr = self.timerange
        text = tr.label(self.feed.newest)
        if self.feed.snapshot_at is not None:  # finished data (a static export): nothing follows live
            text = text.rsplit(" · ", 1)[0] + " · snapshot"
        self.range_text.object = f"**{text}**"
        # the views show what the feed holds (its last ``history_rows`` windows): say where that begins
        oldest = self.feed.windows.oldest("window_start")
        start, end = tr.bounds(self.feed.newest)
        note = ""
        if isinstance(oldest, datetime) and start < oldest:
            first = oldest.astimezone(tr.tz)
            held = f"{first:%Y-%m-%d %H:%M:%S}" if first.date() != end.astimezone(tr.tz).date() else f"{first:%H:%M:%S}"
            note = f"nothing held before {held}" if end >= oldest else f"nothing held in this range (data from {held})"
            note = f"*{note}*"
        if self.held_text.object != note:
            self.held_text.object = note

    def time_bar(self) -> pn.Row:
        """The range picker, the follow-live / pause switch and the zone toggle (from the range's parameters)."""
        tr = self.timerange
        if self.feed.snapshot_at is not None:  # a static page has no server to change the range: say what it shows
            return pn.Row(self.range_text, sizing_mode="stretch_width")
        span = pn.widgets.RadioButtonGroup.from_param(tr.param.span, label="", margin=(5, 10))
        custom = pn.widgets.DatetimeRangePicker.from_param(
            tr.param.custom, label="", visible=tr.span == "custom", width=320
        )
        tr.param.watch(lambda e: setattr(custom, "visible", e.new == "custom"), "span")
        live = pn.widgets.Toggle.from_param(tr.param.live, label=_live_label(tr.live), width=140, margin=(5, 10))
        live.color = "success" if tr.live else "default"

        def relabel(event: param.parameterized.Event) -> None:
            live.param.update(label=_live_label(event.new), color="success" if event.new else "default")

        tr.param.watch(relabel, "live")
        zone = pn.widgets.RadioButtonGroup.from_param(
            tr.param.zone, label="", options={"UTC": "UTC", "Browser time": "browser"}, margin=(5, 10)
        )
        return pn.Row(span, custom, live, zone, self.range_text, self.held_text, sizing_mode="stretch_width")

    def _browser_zone(self) -> None:
        """The browser's IANA time zone, once the page has told it."""
        info = pn.state.browser_info
        zone = getattr(info, "timezone", None) if info is not None else None
        if zone and zone != self.timerange.browser_zone:
            self.timerange.browser_zone = zone

    # -- layout -----------------------------------------------------------------------
    def controls(self) -> pn.Column:
        """Widgets from the views' parameters (for a sidebar)."""
        names = ["metric", "entities", "top_n", "band", "threshold"]
        if self.feed.prometheus:
            names.insert(0, "family")
        series = pn.Param(
            self.series.param,
            parameters=names,
            widgets={
                "metric": {"type": pn.widgets.Select},
                "family": {"type": pn.widgets.Select, "label": "Prometheus metric"},
                "entities": {
                    "type": pn.widgets.MultiChoice,
                    "placeholder": "top N when empty",
                    "solid": False,
                    "label": f"Entities ({self.feed.by})",
                },
            },
            show_name=False,
            sizing_mode="stretch_width",
        )
        heat = pn.Param(self.heatmap.param, parameters=["rows", "windows", "cmap"], show_name=False)
        rate = pn.Param(self.param, parameters=["refresh_hz"], show_name=False)
        return pn.Column(
            "### Time series", series, "### Heatmap", heat, "### Updates", rate, sizing_mode="stretch_width"
        )

    def _alerts_tab(self) -> pn.Column:
        parts = {type(v).__name__: v._layout for v in self.alerts}
        return pn.Column(
            "#### Active alerts — click a row for its detail, a silence for it and its entity at that time",
            parts["AlertsTable"],
            "#### Silences",
            parts["Silences"],
            "#### Timeline",
            parts["AlertTimeline"],
            "#### Resolved",
            parts["AlertHistory"],
            "#### Detail",
            parts["AlertDetail"],
            sizing_mode="stretch_width",
        )

    def _build(self) -> Any:
        for view in self.views:
            view._layout = view._build()
        self.tabs = pn.Tabs(
            ("Latest windows", self.latest._layout),
            ("Dead letters", self.dead._layout),
            sizing_mode="stretch_width",
            # every tab built up front: a Tabulator in a dynamic (lazily built) tab never showed the rows it got
            dynamic=False,
        )
        if self.alerts:
            self.tabs.append(("Alerts", self._alerts_tab()))
        if self.audit is not None:
            self.tabs.append(("Audit", self.audit._layout))
        self.tabs.param.watch(lambda _e: self.refresh(), "active")
        self._show_range()
        return pn.Column(
            self.banner,
            self.time_bar(),
            self.kpis._layout,
            pn.Card(self.series._layout, title="Time series", collapsible=False, sizing_mode="stretch_width"),
            pn.Card(self.heatmap._layout, title="Heatmap", collapsible=False, sizing_mode="stretch_width"),
            pn.Card(self.drilled, title="Drill-down", collapsible=False, sizing_mode="stretch_width"),
            pn.Card(self.tabs, title="Records and alerts", collapsible=False, sizing_mode="stretch_width"),
            pn.Card(self.pipeline._layout, title="Pipeline", collapsible=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    # -- lifecycle --------------------------------------------------------------------
    def attach(self) -> None:
        """Subscribe every view; one callback refreshes them all."""
        for view in self.views:
            view.attach()
        super().attach()

    def close(self) -> None:
        """Release every view's subscription and stop refreshing."""
        for view in self.views:
            view.close()
        super().close()

    def refresh(self) -> None:
        """Refresh every visible view (a hidden tab catches up when shown), the drill-down, then the stale banner."""
        self._browser_zone()
        by_tab: dict[int, list[LiveView]] = {0: [self.latest], 1: [self.dead], 2: list(self.alerts)}
        if self.audit is not None:
            by_tab[3 if self.alerts else 2] = [self.audit]
        shown = by_tab.get(int(self.tabs.active), [])
        tabbed = [self.latest, self.dead, *self.alerts, *([self.audit] if self.audit is not None else [])]
        for view in self.views:
            if view not in tabbed or view in shown:
                view.refresh()
        if self.timerange.live:
            self._show_range()
        k = self.kpis.last
        if k is not None and k.stale:
            since = f"{k.stale_since:%Y-%m-%d %H:%M:%S} UTC" if k.stale_since else "the start"
            why = f" — {k.error}" if k.error else f" — no batch from {k.source} for over {self.feed.stale_after:g} s"
            self.banner.object = f"**Data stale since {since}**{why}. The views show the last data received."
            self.banner.visible = True
        elif self.banner.visible:
            self.banner.visible = False

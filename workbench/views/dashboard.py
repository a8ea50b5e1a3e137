"""``Dashboard``: the full live monitor — KPIs, series, heatmap, tables, pipeline — in one view.

One periodic callback per session drives every view (latest wins, at most
``refresh_hz``), and one subscription per view is released when the session ends.
A banner says since when the data is stale when the source stops.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from workbench.feeds.feed import Feed
from workbench.security.roles import Guard
from workbench.views.alerts import alert_views
from workbench.views.audit import AuditView
from workbench.views.base import LiveView
from workbench.views.graph import PipelineView
from workbench.views.heatmap import EntityHeatmap
from workbench.views.kpis import KpiCards
from workbench.views.series import MetricSeries
from workbench.views.tables import DeadLetters, LatestWindows

__all__ = ["Dashboard"]


class Dashboard(LiveView):
    """Every live view of one feed; the time series' metric drives the heatmap and the table."""

    refresh_hz = param.Number(default=1.0, bounds=(0.2, 4.0), doc="Updates per second (at most 4, latest wins).")

    def __init__(self, feed: Feed, *, guard: Guard | None = None, **params: Any) -> None:
        super().__init__(feed, **params)
        self.guard = guard
        self.kpis = KpiCards(feed)
        self.series = MetricSeries(feed)
        self.heatmap = EntityHeatmap(feed)
        self.latest = LatestWindows(feed)
        self.dead = DeadLetters(feed)
        self.pipeline = PipelineView(feed)
        self.views: list[LiveView] = [self.kpis, self.series, self.heatmap, self.latest, self.dead, self.pipeline]
        self.alerts = alert_views(feed, guard=guard)  # an "Alerts" tab when the pipeline has an alerts output
        self.views += list(self.alerts)
        # an "Audit" tab for admins who signed in to a served app (the audit log is the guard's)
        self.audit: AuditView | None = None
        signed_in = guard is not None and guard.user is not None and guard.user.via != "local"
        if guard is not None and guard.audit is not None and signed_in and guard.may("audit"):
            self.audit = AuditView(feed, guard.audit)
            self.views.append(self.audit)
        for view in self.views:
            view.managed = True
        self.series.param.watch(self._follow_metric, "metric")
        self.banner = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", margin=(0, 10)
        )

    def _follow_metric(self, event: param.parameterized.Event) -> None:
        for view, name in ((self.heatmap, "metric"), (self.latest, "sort_by")):
            if event.new in view.param[name].objects:
                setattr(view, name, event.new)

    def controls(self) -> pn.Column:
        """Widgets from the views' parameters (for a sidebar)."""
        series = pn.Param(
            self.series.param,
            parameters=["metric", "entities", "top_n", "band", "threshold", "history"],
            widgets={
                "metric": {"type": pn.widgets.Select},
                "entities": {"type": pn.widgets.MultiChoice, "placeholder": "top N when empty", "solid": False},
            },
            show_name=False,
            sizing_mode="stretch_width",
        )
        heat = pn.Param(self.heatmap.param, parameters=["rows", "windows", "cmap"], show_name=False)
        rate = pn.Param(self.param, parameters=["refresh_hz"], show_name=False)
        return pn.Column(
            "### Time series", series, "### Heatmap", heat, "### Updates", rate, sizing_mode="stretch_width"
        )

    def _build(self) -> Any:
        for view in self.views:
            view._layout = view._build()
        self.tabs = pn.Tabs(
            ("Latest windows", self.latest._layout),
            ("Dead letters", self.dead._layout),
            sizing_mode="stretch_width",
            dynamic=True,  # a tab's widgets are built when it is first shown: sessions start faster
        )
        if self.alerts:
            self.tabs.append(("Alerts", pn.Column(*(v._layout for v in self.alerts), sizing_mode="stretch_width")))
        if self.audit is not None:
            self.tabs.append(("Audit", self.audit._layout))
        self.tabs.param.watch(lambda _e: self.refresh(), "active")
        return pn.Column(
            self.banner,
            self.kpis._layout,
            pn.Card(self.series._layout, title="Time series", collapsible=False, sizing_mode="stretch_width"),
            pn.Row(
                pn.Card(self.heatmap._layout, title="Heatmap", collapsible=False, sizing_mode="stretch_width"),
                pn.Card(
                    self.tabs,
                    title="Records",
                    collapsible=False,
                    width=560,
                ),
                sizing_mode="stretch_width",
            ),
            pn.Card(self.pipeline._layout, title="Pipeline", collapsible=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

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
        """Refresh every visible view (a hidden tab catches up when shown), then the stale banner."""
        by_tab: dict[int, list[LiveView]] = {0: [self.latest], 1: [self.dead], 2: list(self.alerts)}
        if self.audit is not None:
            by_tab[3 if self.alerts else 2] = [self.audit]
        shown = by_tab.get(int(self.tabs.active), [])
        tabbed = [self.latest, self.dead, *self.alerts, *([self.audit] if self.audit is not None else [])]
        for view in self.views:
            if view not in tabbed or view in shown:
                view.refresh()
        k = self.kpis.last
        if k is not None and k.stale:
            since = f"{k.stale_since:%Y-%m-%d %H:%M:%S} UTC" if k.stale_since else "the start"
            why = f" — {k.error}" if k.error else f" — no batch from {k.source} for over {self.feed.stale_after:g} s"
            self.banner.object = f"**Data stale since {since}**{why}. The views show the last data received."
            self.banner.visible = True
        elif self.banner.visible:
            self.banner.visible = False

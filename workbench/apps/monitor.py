"""The monitoring app served at ``/monitor``."""

from __future__ import annotations

import contextlib

import panel as pn
from panel.io.resources import get_dist_path
from panel.theme.fast import Fast

from workbench.apps.live import live_pipeline
from workbench.feeds.feed import Feed
from workbench.views.dashboard import Dashboard

__all__ = ["create_app"]


# Panel's Fast design without its web-font download, so every resource is served by
# the Panel server itself and the page works on closed networks. It keeps the name
# "Fast" because Panel locates a design's bundled files by its class name.
_OfflineFast = type("Fast", (Fast,), {"_resources": {**Fast._resources, "font": {}}, "__module__": __name__})


def _serve_locally() -> None:
    """Tell the session's document that Panel's files come from this server, before the design is applied.

    Panel (1.9) applies a design's stylesheets while it builds the document, before it has
    recorded where its files are served from; it then falls back on its CDN, and with
    short-lived sessions coming and going a page can keep those CDN addresses, which a
    closed network cannot load (seen in the browser test).
    """
    doc = pn.state.curdoc
    if doc is not None and getattr(doc, "session_context", None) is not None:
        doc._template_variables.setdefault("dist_url", get_dist_path())


def _apply_url(dashboard: Dashboard) -> None:
    """``?refresh=4`` (updates per second) and ``?metric=latency_p99`` set the session's view."""
    args = pn.state.session_args or {}
    if "refresh" in args:
        low, high = dashboard.param["refresh_hz"].bounds
        with contextlib.suppress(ValueError):  # not a number: keep the default
            dashboard.refresh_hz = min(max(float(args["refresh"][0]), low), high)
    if "metric" in args:
        metric = args["metric"][0].decode()
        if metric in dashboard.series.param["metric"].objects:
            dashboard.series.metric = metric


def create_app(feed: Feed | None = None) -> pn.template.FastListTemplate:
    """The monitor page for the current session, over the process's shared live pipeline.

    ``feed`` draws it over another feed instead (a static export of finished data).
    """
    pn.extension("tabulator", sizing_mode="stretch_width", reconnect=True, notifications=True)
    _serve_locally()
    live_feed = feed if feed is not None else live_pipeline().feed
    context = getattr(pn.state.curdoc, "session_context", None)
    if context is not None:
        from workbench.apps.routes import remember

        remember(getattr(context.server_context, "application_context", None))
    guard = None
    if context is not None:  # served: the session's user (from the server, never the page) and the audit log
        from workbench.apps.access import audit_log, session_user
        from workbench.security.roles import Guard

        request = getattr(context, "request", None)
        guard = Guard(session_user(request), audit_log(), client=str(getattr(request, "remote_ip", "") or ""))
    dashboard = Dashboard(live_feed, guard=guard)
    _apply_url(dashboard)
    main = dashboard.__panel__()
    who = f" · {guard.name} ({guard.user.role})" if guard is not None and guard.user is not None else ""
    return pn.template.FastListTemplate(
        title=f"Workbench · live monitor{who}",
        sidebar=[dashboard.controls()],
        main=[main],
        sidebar_width=300,
        design=_OfflineFast,
        theme_toggle=True,
        accent="#1f4e79",
        font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        font_url="",
        main_layout=None,
    )

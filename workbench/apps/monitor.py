"""The monitoring app served at ``/monitor``."""

from __future__ import annotations

import panel as pn
from panel.theme.fast import Fast

from workbench.apps.live import live_pipeline
from workbench.views.monitor import WindowMonitor

__all__ = ["create_app"]


# Panel's Fast design without its web-font download, so every resource is served by
# the Panel server itself and the page works on closed networks. It keeps the name
# "Fast" because Panel locates a design's bundled files by its class name.
_OfflineFast = type("Fast", (Fast,), {"_resources": {**Fast._resources, "font": {}}, "__module__": __name__})


def create_app() -> pn.template.FastListTemplate:
    """The monitor page for the current session, over the shared live pipeline."""
    pn.extension(sizing_mode="stretch_width")
    live = live_pipeline()
    view = WindowMonitor(live.windows, live.dead_letter, pipeline=live.pipeline)
    return pn.template.FastListTemplate(
        title="Workbench · live monitor",
        main=[view],
        design=_OfflineFast,
        theme_toggle=True,
        accent="#1f4e79",
        font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        font_url="",
    )

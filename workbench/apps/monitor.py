"""The monitoring app served at ``/monitor``."""

from __future__ import annotations

import panel as pn

from workbench.apps.live import live_pipeline
from workbench.views.monitor import WindowMonitor

__all__ = ["create_app"]


def create_app() -> pn.template.FastListTemplate:
    """The monitor page for the current session, over the shared live pipeline."""
    pn.extension(sizing_mode="stretch_width")
    live = live_pipeline()
    view = WindowMonitor(live.windows, live.dead_letter, pipeline=live.pipeline)
    return pn.template.FastListTemplate(
        title="Workbench · live monitor",
        main=[view],
        theme_toggle=True,
        accent="#1f4e79",
    )

"""View-models: headless, bounded stores that every session of a live view reads.

A :class:`~workbench.feeds.feed.Feed` follows one pipeline and is computed once per
process, on the pipeline's thread; :class:`~workbench.feeds.live.LiveFrame` is the
bounded, versioned store it is made of. Sessions (browser documents, notebook cells)
only read: no session writes into a shared feed. Nothing here imports Panel.
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Feed": "workbench.feeds.feed",
    "Kpis": "workbench.feeds.feed",
    "LiveFrame": "workbench.feeds.live",
    "Subscription": "workbench.feeds.feed",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)

"""The one live pipeline of a server process, started once and shared by every session.

``live_pipeline()`` is idempotent and thread-safe: the ``--setup`` script of
``workbench serve`` calls it when the server starts, and sessions call it to get
the same object. The pipeline runs on its own thread, never on a UI event loop.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from workbench.operators.windows import Tumbling
from workbench.pipeline import Pipeline
from workbench.views.feed import Feed

__all__ = ["Live", "live_pipeline"]

_lock = threading.Lock()
_live: Live | None = None


@dataclass
class Live:
    """The shared pipeline and the feed its sessions read."""

    pipeline: Pipeline
    feed: Feed


def _env(name: str, default: str) -> str:
    return os.environ.get(f"WORKBENCH_{name}", default)


def live_pipeline() -> Live:
    """Start (once) and return the process's live pipeline on the built-in simulator.

    Settings from the environment: ``WORKBENCH_HOSTS`` (default 120),
    ``WORKBENCH_RATE`` events/s (default 600), ``WORKBENCH_WINDOW`` (default 5s),
    ``WORKBENCH_LATENESS`` (default 2s), ``WORKBENCH_MAX_DELAY`` seconds between
    source batches (default 0.5), ``WORKBENCH_SEED`` (default 0),
    ``WORKBENCH_DEDUPE_TTL`` (default: lateness + 1 min),
    ``WORKBENCH_STALE_AFTER`` seconds (default 10) and ``WORKBENCH_ALERTS`` (``0``: no
    alert rules; default: :func:`workbench.alerts.demo.server_rules`).
    """
    global _live
    with _lock:
        if _live is not None and _live.pipeline.running:
            return _live
        from datetime import UTC, datetime

        from workbench.sources.simulator import Simulator

        rate = float(_env("RATE", "600"))
        source = Simulator(
            "server_metrics",
            hosts=int(_env("HOSTS", "120")),
            rate=rate,
            seed=int(_env("SEED", "0")),
            realtime=True,
            start=datetime.now(UTC),
            max_delay=float(_env("MAX_DELAY", "0.5")),
            max_rows=max(10_000, int(rate)),
        )
        pipe = Pipeline(source, name="live")
        pipe.standard(
            "server_metrics",
            Tumbling(_env("WINDOW", "5s")),
            lateness=_env("LATENESS", "2s"),
            dedupe_ttl=os.environ.get("WORKBENCH_DEDUPE_TTL"),
        )
        if _env("ALERTS", "1") != "0":  # the demo's alert rules (an Alerts tab and the open-alerts KPI)
            from workbench.alerts.demo import server_inhibit, server_routes, server_rules
            from workbench.config import parse_duration

            window_s = parse_duration(_env("WINDOW", "5s")) / 1000
            pipe.alerts(server_rules(window_s=window_s), routes=server_routes(), inhibit=server_inhibit())
        feed = Feed(pipe, stale_after=float(_env("STALE_AFTER", "10")))
        pipe.start()
        _live = Live(pipe, feed)
        return _live


def current() -> Live | None:
    """The live pipeline of this process, if one was started."""
    return _live

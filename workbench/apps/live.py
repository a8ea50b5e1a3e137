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
    ``WORKBENCH_SOURCE`` (a source URL, e.g. ``prometheus://127.0.0.1:9100/metrics``;
    ``workbench serve --source``) replaces the simulator.
    """
    global _live
    with _lock:
        if _live is not None and _live.pipeline.running:
            return _live
        from datetime import UTC, datetime

        from workbench.sources.simulator import Simulator

        url = os.environ.get("WORKBENCH_SOURCE")
        if url:
            _live = _connected(url)
            return _live
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


#: Node-exporter metrics the app scrapes by default: CPU, memory, network, load.
NODE_METRICS = (
    "node_cpu_seconds_total|node_memory_(MemAvailable|MemTotal|MemFree|Cached|Buffers)_bytes"
    "|node_network_(receive|transmit)_bytes_total|node_load1|node_load5"
)


def _connected(url: str) -> Live:
    """The live pipeline on a source URL (``WORKBENCH_SOURCE``): windows per the schema's entity.

    A ``prometheus://`` URL scrapes into ``prom_samples`` (windows per series; only the
    metrics matching ``WORKBENCH_MATCH``, default :data:`NODE_METRICS`, every
    ``WORKBENCH_INTERVAL`` s, default 1); other URLs carry ``WORKBENCH_SCHEMA`` events
    (default ``server_metrics``).
    """
    from workbench.schema import get_schema
    from workbench.sources.urls import from_url

    options: dict[str, object] = {}
    if url.startswith("prometheus://"):
        schema = get_schema("prom_samples")
        if "match=" not in url:
            options["match"] = _env("MATCH", NODE_METRICS)
        options["interval"] = float(_env("INTERVAL", "1"))
    else:
        schema = get_schema(_env("SCHEMA", "server_metrics"))
        options["max_delay"] = float(_env("MAX_DELAY", "0.5"))
    pipe = Pipeline(from_url(url, **options), name="live")
    pipe.standard(
        schema,
        Tumbling(_env("WINDOW", "5s")),
        lateness=_env("LATENESS", "2s"),
        dedupe_ttl=os.environ.get("WORKBENCH_DEDUPE_TTL"),
    )
    feed = Feed(pipe, by=(schema.by or ["host"])[0], stale_after=float(_env("STALE_AFTER", "10")))
    pipe.start()
    return Live(pipe, feed)


def current() -> Live | None:
    """The live pipeline of this process, if one was started."""
    return _live

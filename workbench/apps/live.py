"""The one live pipeline of a server process, started once and shared by every session.

``live_pipeline()`` is idempotent and thread-safe: the ``--setup`` script of
``workbench serve`` calls it when the server starts, and sessions call it to get
the same object. It is kept in ``pn.state.cache`` (one per process, shared by every
session), never in a module global; its settings are one frozen
:class:`~workbench.config.Settings` read from the environment. The pipeline runs on
its own thread, never on a UI event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import panel as pn

from workbench.config import Settings, parse_duration
from workbench.feeds.feed import Feed
from workbench.operators.windows import Tumbling
from workbench.pipeline import Pipeline
from workbench.pipeline.metrics import collector

__all__ = ["NODE_METRICS", "Live", "current", "live_pipeline", "restore_alert_state", "save_alert_state"]

_lock = threading.Lock()
_KEY = "workbench.live"


@dataclass
class Live:
    """The shared pipeline, the feed its sessions read, and the settings it was built with."""

    pipeline: Pipeline
    feed: Feed
    settings: Settings


def live_pipeline(settings: Settings | None = None) -> Live:
    """Start (once) and return the process's live pipeline: the built-in simulator, or ``settings.source``.

    ``settings`` defaults to :meth:`Settings.from_env() <workbench.config.Settings.from_env>`
    (``WORKBENCH_HOSTS``, ``WORKBENCH_RATE``, ``WORKBENCH_WINDOW``, ``WORKBENCH_LATENESS``,
    ``WORKBENCH_MAX_DELAY``, ``WORKBENCH_SEED``, ``WORKBENCH_DEDUPE_TTL``,
    ``WORKBENCH_STALE_AFTER``, ``WORKBENCH_ALERT_STORE`` (a DuckDB file or a PostgreSQL URL where
    alert history, acknowledgements and silences are recorded), ``WORKBENCH_ALERTS`` (``0``: no alert rules; default:
    :func:`workbench.alerts.demo.server_rules`), ``WORKBENCH_RULES`` (a rules file evaluated
    instead of the demo rules, on the simulator or on a source) and ``WORKBENCH_SOURCE``, a source URL
    such as ``prometheus://127.0.0.1:9100/metrics`` that replaces the simulator).

    A running live pipeline is returned as it is when no ``settings`` are given or they
    are the ones it runs with; other ``settings`` replace it (a notebook that changes
    them gets what it asked for, never the old pipeline).
    """
    with _lock:
        live = current()
        if live is not None and live.pipeline.running and settings in (None, live.settings):
            return live
        if live is not None:
            live.pipeline.close()
        settings = settings or Settings.from_env()
        live = _connected(settings) if settings.source else _simulated(settings)
        pn.state.cache[_KEY] = live
        return live


def _simulated(settings: Settings) -> Live:
    from datetime import UTC, datetime

    from workbench.sources.simulator import Simulator

    source = Simulator(
        "server_metrics",
        hosts=settings.hosts,
        rate=settings.rate,
        seed=settings.seed,
        realtime=True,
        start=datetime.now(UTC),
        max_delay=settings.max_delay_s,
        max_rows=max(10_000, int(settings.rate)),
    )
    pipe = Pipeline(source, name="live")
    pipe.standard(
        "server_metrics", Tumbling(settings.window), lateness=settings.lateness, dedupe_ttl=settings.dedupe_ttl
    )
    if settings.rules is not None:
        _user_rules(pipe, settings.rules, settings)
    elif settings.alerts:  # the demo's alert rules (an Alerts tab and the open-alerts KPI)
        from workbench.alerts.demo import server_inhibit, server_routes, server_rules

        window_s = parse_duration(settings.window) / 1000
        pipe.alerts(
            server_rules(window_s=window_s),
            routes=server_routes(),
            inhibit=server_inhibit(),
            evaluation_interval=window_s,  # the demo rules count `for` in windows
            store=_store(settings),
        )
    feed = Feed(pipe, stale_after=settings.stale_after_s, history_rows=_history_rows(settings, settings.hosts))
    collector(pipe)  # /metrics: the latency histogram observes from the first batch, not the first scrape
    live = Live(pipe, feed, settings)
    restore_alert_state(live)
    pipe.start()
    return live


#: Node-exporter metrics the app scrapes by default: CPU, memory, network, load.
NODE_METRICS = (
    "node_cpu_seconds_total|node_memory_(MemAvailable|MemTotal|MemFree|Cached|Buffers)_bytes"
    "|node_network_(receive|transmit)_bytes_total|node_load1|node_load5"
)


def _connected(settings: Settings) -> Live:
    """The live pipeline on a source URL: windows per the schema's entity.

    A ``prometheus://`` URL scrapes into ``prom_samples`` (windows per series; only the
    metrics matching ``settings.match``, default :data:`NODE_METRICS`, every
    ``settings.interval_s``); a ``remote-write://`` URL receives the samples Prometheus
    pushes, also into ``prom_samples``; other URLs carry ``settings.schema`` events (a
    schema file with ``extra: keep-numeric`` learns its extra metrics from the first batch).
    """
    from workbench.schema import get_schema
    from workbench.sources.factory import from_url

    url = settings.source or ""
    options: dict[str, object] = {}
    if url.startswith("prometheus://"):
        schema = get_schema("prom_samples")
        if "match=" not in url:
            options["match"] = settings.match or NODE_METRICS
        options["interval"] = settings.interval_s
    elif url.startswith("remote-write://"):  # Prometheus pushes its samples
        schema = get_schema("prom_samples")
    else:
        options["max_delay"] = settings.max_delay_s
    source = from_url(url, **options)
    if not url.startswith(("prometheus://", "remote-write://")):
        from workbench.project.infer import prime_schema

        # a schema file's extra: keep-numeric learns the undeclared numeric fields from the
        # first batch (waited for up to 30 s; the batch is kept and processed first)
        source, schema = prime_schema(source, settings.schema, wait=30.0)
    pipe = Pipeline(source, name="live")
    pipe.standard(schema, Tumbling(settings.window), lateness=settings.lateness, dedupe_ttl=settings.dedupe_ttl)
    if settings.rules is not None:
        _user_rules(pipe, settings.rules, settings)
    feed = Feed(pipe, by=(schema.by or ["host"])[0], stale_after=settings.stale_after_s)
    collector(pipe)  # /metrics, from the first batch
    live = Live(pipe, feed, settings)
    restore_alert_state(live)
    pipe.start()
    return live


def _user_rules(pipe: Pipeline, rules: Path, settings: Settings) -> None:
    """The rules file ``rules`` on the windows (its notifications, if it has receivers, logged beside the lake)."""
    pipe.alerts(rules, outbox=settings.lake.parent / "outbox.jsonl", store=_store(settings))


def _store(settings: Settings) -> Any:
    """The alert store of ``settings.alert_store``, or ``None``."""
    if not settings.alert_store:
        return None
    from workbench.alerts.store import open_store

    return open_store(settings.alert_store)


#: Window rows the served feed keeps at most (the 6 h range of 120 hosts at 5 s windows is 518,400).
MAX_HISTORY_ROWS = 600_000


def _history_rows(settings: Settings, entities: int) -> int:
    """Rows for the longest range (6 h) of ``entities`` at the window's step, within :data:`MAX_HISTORY_ROWS`."""
    step_s = max(parse_duration(settings.window) / 1000, 0.001)
    return int(min(MAX_HISTORY_ROWS, max(200_000, entities * 6 * 3600 / step_s)))


def current() -> Live | None:
    """The live pipeline of this process, if one was started."""
    live = pn.state.cache.get(_KEY)
    return live if isinstance(live, Live) else None


# -- alert state that people made: kept across restarts ----------------------------------
def _manager(live: Live) -> Any:
    from workbench.alerts.manager import AlertManager

    manager = getattr(live.pipeline.outputs.get("alerts"), "manager", None)
    return manager if isinstance(manager, AlertManager) else None


def _alert_store(live: Live) -> Any:
    from workbench.storage.checkpoints import CheckpointStore

    return CheckpointStore(live.settings.checkpoints / "served-alerts")


_saved: dict[int, str] = {}  # id(manager) -> what was saved last (its repr)


def save_alert_state(live: Live) -> bool:
    """Checkpoint the served pipeline's acknowledgements, silences and feedback when they changed.

    The file is an authenticated checkpoint (``CheckpointStore``: HMAC before anything
    is read, the last two kept); returns whether one was written.
    """
    manager = _manager(live)
    if manager is None:
        return False
    with manager._lock:
        kept = {
            "silences": dict(manager.dispatcher.silences),
            "acks": {k: dict(v) for k, v in manager.dispatcher.acks.items()},
            "feedback": {k: [dict(r) for r in v] for k, v in manager.feedback.items()},
        }
    seen = repr(kept)
    if _saved.get(id(manager), repr({"silences": {}, "acks": {}, "feedback": {}})) == seen:
        return False  # nothing people did changed since the last save (or since the start)
    _alert_store(live).save({"epoch": manager.version, **kept})
    _saved[id(manager)] = seen
    return True


def restore_alert_state(live: Live) -> None:
    """Put back the acknowledgements, silences and feedback of the last run (before the pipeline starts)."""
    manager = _manager(live)
    if manager is None:
        return
    state = _alert_store(live).load()
    if state is not None:
        with manager._lock:
            manager.dispatcher.silences.update(state["silences"])
            manager.dispatcher.acks.update(state["acks"])
            for fp, rows in state["feedback"].items():
                manager.feedback.setdefault(fp, []).extend(rows)
            manager.version += 1
    manager.on_feedback(lambda _alert, _label: save_alert_state(live))  # an acknowledgement is kept at once

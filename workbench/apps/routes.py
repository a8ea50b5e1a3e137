"""``panel serve --plugins`` module: a JSON health endpoint at ``/workbench/health`` and ``/metrics``.

It reports what an operator (or a load balancer, or our multi-session test) needs:
the live pipeline and how many pipeline objects exist in the process, its health
and counts, the feed's live subscriptions (by kind of view), the Bokeh server's sessions, and the process's
RSS and CPU time. ``?since=EPOCH_S`` limits the window-end → feed delays to recent ones (a value
that is not a number is a 400). It only reads: no collection, no trim; an answer is reused for
half a second, and the server rate-limits probes per client. With sign-in on, both endpoints
answer only a signed-in user (401 otherwise), like the app.

``/metrics`` is the same in Prometheus text: the live pipeline's metrics (see
:mod:`workbench.pipeline.metrics`), the server's sessions and their connections, the
feed's subscriptions and the process (RSS, CPU, open files), from a registry of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tornado.web import RequestHandler

from workbench.apps.live import current
from workbench.pipeline import Pipeline
from workbench.pipeline.metrics import collector, registry, render
from workbench.views.base import LiveView

__all__ = [
    "ROUTES",
    "HealthHandler",
    "MetricsHandler",
    "ServerCollector",
    "housekeeping",
    "process_stats",
    "remember",
    "session_state",
    "sweep",
    "trim",
]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def trim() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise, so RSS never falls)."""
    with contextlib.suppress(OSError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _quantiles(values: list[float]) -> dict[str, float] | None:
    """p50 / p99 / max of recent window-end → feed delays (seconds)."""
    if not values:
        return None
    values.sort()
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50": round(pick(0.5), 4), "p99": round(pick(0.99), 4), "max": round(values[-1], 4), "n": len(values)}


_contexts: list[Any] = []  # the Bokeh application contexts of this server, once seen


def sweep(sessions: Any) -> int:
    """Let go of sessions whose every connection is closed; returns how many.

    Bokeh's server loses track of a connection that closes while its session is still
    being created (an ``AssertionError`` in ``WSHandler.on_close``): the session then
    counts a live connection forever and is never freed. Unsubscribing the dead
    connections lets Bokeh's own unused-session cleanup discard it.
    """
    freed = 0
    for session in list(sessions):
        connections = list(getattr(session, "_subscribed_connections", ()))
        dead = [c for c in connections if getattr(getattr(c, "_socket", None), "ws_connection", True) is None]
        if connections and len(dead) == len(connections):
            for connection in dead:
                session.unsubscribe(connection)
            freed += 1
    return freed


#: seconds a session may sit with no connection and its expiration blocked before it is reaped
REAP_AFTER_S = 20.0


def reap(context: Any, *, after_s: float = REAP_AFTER_S) -> int:
    """Destroy sessions left with no connection for ``after_s`` whose expiration stays blocked; returns how many.

    Seen under load: a page closes while its session's document lock is taken and never
    given back, so the session's periodic callbacks (and Bokeh's own discard) queue on
    the lock, each blocking expiration. Bokeh never discards a session whose expiration
    is blocked, so it, its views and their feed subscriptions lived as long as the
    server (``/workbench/health`` shows ``session_states`` for such a session:
    ``connections`` 0 and ``expiration_blocked`` > 0). A session nobody can reach any
    more is destroyed here the way Bokeh's discard does it — document and callbacks
    first, then the session-destroyed hooks, which release the views.
    """
    import asyncio

    reaped = 0
    for session in list(context.sessions):
        if session.connection_count or not session.expiration_blocked or session.destroyed:
            continue
        if session.milliseconds_since_last_unsubscribe < after_s * 1000:
            continue
        session_context = context._session_contexts.pop(session.id, None)
        context._sessions.pop(session.id, None)
        session.destroy()
        reaped += 1
        if session_context is not None:
            hooks = context._application.on_session_destroyed(session_context)
            asyncio.ensure_future(hooks)
    return reaped


def remember(application_context: Any) -> None:
    """Note the application context sessions live in (called from a session of the app)."""
    if application_context is not None and all(c is not application_context for c in _contexts):
        _contexts.append(application_context)


def housekeeping() -> None:
    """Every few seconds: free sessions with only dead connections, reap unreachable ones, trim the heap.

    It also checkpoints the served alert state (acknowledgements, silences) when it
    changed, and copies new audit records into the lake's ``audit`` output.
    """
    for context in _contexts:
        sweep(context.sessions)
        reap(context)
    trim()
    live = current()
    if live is not None:
        from workbench.apps.live import save_alert_state

        save_alert_state(live)
        _audit_to_lake(live)


_audited = [0]  # the audit log's size when last copied to the lake


def _audit_to_lake(live: Any) -> None:
    from workbench.apps.access import audit_log
    from workbench.storage.lake import Lake

    log = audit_log()
    size = log.path.stat().st_size if log.path.exists() else 0
    if size != _audited[0]:
        log.to_lake(Lake(live.settings.lake))
        _audited[0] = size


def session_state(session: Any) -> dict[str, Any]:
    """What keeps a Bokeh server session alive: its connections, expiration blocks and idle time."""
    return {
        "connections": session.connection_count,
        "expiration_blocked": session.expiration_blocked_count,
        "idle_s": round(session.milliseconds_since_last_unsubscribe / 1000, 1),
    }


def process_stats() -> dict[str, Any]:
    """RSS (MB) and CPU seconds (user + system) of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"pid": os.getpid(), "rss_mb": round(_rss_mb(), 1), "cpu_s": round(r.ru_utime + r.ru_stime, 3)}


class _Probe(RequestHandler):
    """A probe endpoint: behind the same sign-in as the app (401, not a redirect), read-only."""

    async def prepare(self) -> None:  # noqa: D102
        provider = getattr(self.application, "auth_provider", None)
        if provider is None or (provider.get_user is None and provider.get_user_async is None):
            return
        user = provider.get_user(self) if provider.get_user is not None else await provider.get_user_async(self)
        if not user:
            self.set_status(401)
            self.set_header("Cache-Control", "no-store")
            self.finish("sign in first\n")


_cached: dict[str, tuple[float, int, str]] = {}


class HealthHandler(_Probe):
    """GET: JSON health of the served pipeline; 503 when it failed or is stale."""

    def get(self) -> None:  # noqa: D102
        import math
        import time

        text = self.get_argument("since", "0")
        try:
            since = float(text)
        except ValueError:
            since = math.nan
        if not math.isfinite(since):
            self.set_status(400)
            self.set_header("Cache-Control", "no-store")
            self.finish(f"since: expected a number of seconds since the epoch, not {text[:40]!r}\n")
            return
        key = f"since={since}"
        hit = _cached.get(key)
        if hit is not None and time.monotonic() - hit[0] < 0.5:
            status, body_text = hit[1], hit[2]
        else:
            status, body_text = self._body(since)
            _cached.clear()  # one answer kept: bounded
            _cached[key] = (time.monotonic(), status, body_text)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(body_text)

    def _body(self, since: float) -> tuple[int, str]:
        live = current()
        apps = getattr(self.application, "applications", {})  # the Bokeh server's application contexts
        for context in apps.values():
            remember(context)
        body: dict[str, Any] = {
            "process": process_stats(),
            "pipelines_in_process": Pipeline.instances(),
            "sessions": sum(len(list(ctx.sessions)) for ctx in apps.values()),
            # why a session lives on: open connections, and what blocks its expiration
            "session_states": [session_state(s) for ctx in apps.values() for s in ctx.sessions],
            "views_alive": LiveView.alive(),
        }
        status = 200
        if live is not None:
            health = live.pipeline.health(stale_after=live.feed.stale_after)
            body |= {
                "pipeline": {"name": live.pipeline.name, "id": id(live.pipeline), **health},
                "counts": live.pipeline.counts(),
                "subscriptions": live.feed.subscriptions,
                "subscribers": live.feed.subscribers(),
                "windows_held": live.feed.windows.rows,
                "emit_delay_s": _quantiles([d for t, d in list(live.feed.emit_delays) if t >= since]),
            }
            status = 503 if (health["error"] or health["stale"]) else 200
        return status, json.dumps(body, default=str)


class ServerCollector(Collector):
    """Prometheus metrics of the Bokeh server: sessions, their connections, pipelines and views alive.

    ``applications`` is the server's application contexts by path, read at each scrape.
    """

    def __init__(self, applications: dict[str, Any]) -> None:
        self.applications = applications

    def collect(self) -> Iterator[Metric]:  # noqa: D102
        sessions = GaugeMetricFamily("workbench_sessions", "Sessions the server holds, by app.", labels=["app"])
        connections = GaugeMetricFamily(
            "workbench_session_connections", "Open connections of the sessions, by app.", labels=["app"]
        )
        blocked = GaugeMetricFamily(
            "workbench_sessions_blocked", "Sessions with no connection whose expiration is blocked.", labels=["app"]
        )
        for path, context in sorted(self.applications.items()):
            held = list(context.sessions)
            sessions.add_metric([path], len(held))
            connections.add_metric([path], sum(s.connection_count for s in held))
            blocked.add_metric([path], sum(1 for s in held if not s.connection_count and s.expiration_blocked))
        pipelines = GaugeMetricFamily("workbench_pipelines_in_process", "Pipeline objects alive in the process.")
        pipelines.add_metric([], Pipeline.instances())
        views = GaugeMetricFamily("workbench_views_alive", "Live view objects in the process.")
        views.add_metric([], LiveView.alive())
        yield from (sessions, connections, blocked, pipelines, views)
        live = current()
        if live is not None:
            subs = GaugeMetricFamily("workbench_feed_subscriptions", "Live subscriptions to the feed.")
            subs.add_metric([], live.feed.subscriptions)
            yield subs


class MetricsHandler(_Probe):
    """GET: Prometheus text of the served pipeline, the server's sessions and the process."""

    def get(self) -> None:  # noqa: D102
        apps = getattr(self.application, "applications", {})
        for context in apps.values():
            remember(context)
        parts: list[Collector] = [ServerCollector(apps), ProcessCollector(registry=None)]
        live = current()
        if live is not None:
            parts.append(collector(live.pipeline))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.write(render(registry(*parts)))


ROUTES: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
    ("/workbench/health", HealthHandler, {}),
    ("/metrics", MetricsHandler, {}),
]

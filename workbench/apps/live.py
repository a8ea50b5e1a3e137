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
from workbench.views.live import LiveFrame

__all__ = ["Live", "live_pipeline"]

_lock = threading.Lock()
_live: Live | None = None


@dataclass
class Live:
    """The shared pipeline and the stores its sessions read."""

    pipeline: Pipeline
    windows: LiveFrame
    dead_letter: LiveFrame


def live_pipeline() -> Live:
    """Start (once) and return the process's live pipeline on the built-in simulator.

    Settings from the environment: ``WORKBENCH_HOSTS`` (default 120),
    ``WORKBENCH_RATE`` events/s (default 600), ``WORKBENCH_WINDOW`` (default 5s),
    ``WORKBENCH_SEED`` (default 0).
    """
    global _live
    with _lock:
        if _live is not None and _live.pipeline.running:
            return _live
        from datetime import UTC, datetime

        from workbench.sources.simulator import Simulator

        hosts = int(os.environ.get("WORKBENCH_HOSTS", "120"))
        rate = float(os.environ.get("WORKBENCH_RATE", "600"))
        window = os.environ.get("WORKBENCH_WINDOW", "5s")
        seed = int(os.environ.get("WORKBENCH_SEED", "0"))
        source = Simulator(
            "server_metrics",
            hosts=hosts,
            rate=rate,
            seed=seed,
            realtime=True,
            start=datetime.now(UTC),
            max_delay=0.5,
        )
        pipe = Pipeline(source, name="live")
        windows = pipe.standard("server_metrics", Tumbling(window), lateness="2s")
        store = LiveFrame(max_rows=200_000)
        dead = LiveFrame(max_rows=5_000)
        pipe.subscribe("windows", store.append)
        pipe.subscribe("dead_letter", dead.append)
        del windows
        pipe.start()
        _live = Live(pipe, store, dead)
        return _live

"""``Cluster``: a Dask distributed cluster to run a pipeline's keyed state on.

``Cluster("local:N")`` starts a ``LocalCluster`` of N worker processes with one thread
each (and stops it on :meth:`Cluster.close`); ``Cluster("tcp://HOST:8786")`` connects
to an existing scheduler (started by ``dask scheduler`` / ``dask worker``, SSH or
Kubernetes; see docs/scale-out.md) and leaves it running. Pass it to a pipeline::

    with Cluster("local:2") as cluster:
        pipe = Pipeline(source, checkpoints="out/checkpoint", cluster=cluster)

The cluster subscribes to the scheduler's worker-removal events (the ``"all"`` topic,
``Client.subscribe_topic``), so a pipeline learns that a worker left while its source
is idle, not only at its next shard call (:meth:`Cluster.removed_since`).

Dask is imported only here, when a cluster is made.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from workbench.cluster.keygroups import DEFAULT_KEY_GROUPS
from workbench.errors import ConfigError, WorkerLostError

__all__ = ["Cluster"]

log = logging.getLogger(__name__)

_LOCAL = re.compile(r"^local:(\d+)$")


class _Removals:
    """Workers the scheduler removed, each with the number of its removal (shared by limited views)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.at: dict[str, int] = {}  # address → number of its latest removal

    def on_event(self, event: tuple[float, Any]) -> None:
        """A scheduler event of the ``"all"`` topic; keeps the ``remove-worker`` ones (runs on Dask's loop)."""
        _when, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker" or "worker" not in msg:
            return
        with self.lock:
            self.count += 1
            self.at[str(msg["worker"])] = self.count
        log.info("cluster: the scheduler removed worker %s", msg["worker"])


class Cluster:
    """A Dask client, and the cluster it started (``local:N``) if any.

    Parameters
    ----------
    address
        ``local:N`` (N worker processes on this machine, one thread each) or the
        scheduler's ``tcp://HOST:PORT``.
    key_groups
        Number of key groups G (fixed once a checkpoint exists).
    timeout
        Seconds to wait for a worker, and for one shard call.
    """

    def __init__(self, address: str = "local:2", *, key_groups: int = DEFAULT_KEY_GROUPS, timeout: float = 120.0):
        if key_groups < 1:
            raise ConfigError(f"cluster: key_groups must be >= 1, not {key_groups}")
        self.address = address
        self.key_groups = key_groups
        self.timeout = timeout
        self.max_workers: int | None = None
        self._owner = True
        self._local: Any = None
        m = _LOCAL.match(address)
        if m is None and not address.startswith(("tcp://", "tls://", "inproc://")):
            raise ConfigError(f"--cluster: use local:N or tcp://HOST:PORT, not {address!r}")
        if m is not None and int(m.group(1)) < 1:
            raise ConfigError(f"--cluster: local:N needs N >= 1 worker, not {address!r}")
        from distributed import Client, LocalCluster

        if m is not None:
            self._local = LocalCluster(
                n_workers=int(m.group(1)),
                threads_per_worker=1,
                processes=True,
                scheduler_port=0,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self._local)
        else:
            try:
                self.client = Client(address, timeout=timeout)
            except OSError as exc:
                raise ConfigError(f"--cluster: no Dask scheduler answers at {address!r} ({exc})") from exc
        self.client.wait_for_workers(1, timeout=timeout)
        self._removals = _Removals()
        # the scheduler tells every subscribed client at once when a worker leaves (documented:
        # Client.subscribe_topic; the scheduler logs {"action": "remove-worker", "worker": …} to "all")
        self.client.subscribe_topic("all", self._removals.on_event)

    @property
    def removals(self) -> int:
        """Workers removed so far (as the scheduler reported them to this client)."""
        with self._removals.lock:
            return self._removals.count

    def removed_since(self, mark: int) -> set[str]:
        """Addresses of the workers removed after :attr:`removals` was ``mark``."""
        with self._removals.lock:
            return {w for w, n in self._removals.at.items() if n > mark}

    def workers(self, *, wait: float | None = None) -> list[str]:
        """Addresses of the live workers, sorted (waits up to ``wait`` seconds for one)."""
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        while True:
            found = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not found:
            raise WorkerLostError(f"cluster {self.address}: no live worker after {self.timeout:.0f} s")
        return found if self.max_workers is None else found[: self.max_workers]

    def alive(self) -> set[str]:
        """Addresses of every live worker (a limited view's too: a worker joining does not unseat a host)."""
        return set(self.client.scheduler_info(n_workers=-1)["workers"])

    def limited(self, n: int) -> Cluster:
        """The same cluster, using at most its first ``n`` workers (by address); closing it closes nothing.

        Handy to compare 1, 2 … workers on one cluster (the benchmark, the tests) without starting more.
        """
        if n < 1:
            raise ConfigError(f"cluster: at least 1 worker, not {n}")
        view = object.__new__(Cluster)
        view.__dict__.update(self.__dict__)
        view.max_workers, view._owner, view._local = n, False, None
        return view

    def worker_pids(self) -> dict[str, int]:
        """Process id of each worker (for fault tests and the benchmark's memory figures)."""
        import os

        return dict(self.client.run(os.getpid))

    def stage(self, upstream: Any, **options: Any) -> Any:
        """The sharded keyed stage below ``upstream`` (see :class:`~workbench.cluster.stage.ShardStage`)."""
        from workbench.cluster.stage import ShardStage

        return ShardStage(upstream, self, **options)

    def close(self) -> None:
        """Close the client, and the local cluster if this object started it."""
        if not self._owner:
            return
        # unsubscribed first: else the scheduler sends this client's own removal to its closed comm
        self.client.unsubscribe_topic("all")
        self.client.close()
        if self._local is not None:
            self._local.close()
            self._local = None
        self._owner = False  # closed: a second close does nothing

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cluster({self.address!r}, key_groups={self.key_groups})"

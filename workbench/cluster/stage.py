"""``ShardStage``: the coordinator's node that runs dedupe and windows on shard hosts.

It sits where ``dedupe → window`` sits in a single-process pipeline, below ``decode →
validate`` (which the coordinator runs in bulk). Per batch (an *epoch* of the shards):

1. compute, over every row, the newest event time before it and after the batch
   (:func:`~workbench.operators.dedupe.global_before`): the watermark is global;
2. give every row its key group (:func:`~workbench.cluster.keygroups.key_groups`) and
   send each host its rows (all hosts are called: a host without rows still advances
   its watermark and closes windows);
3. merge what the hosts return: windows sorted as one process sorts them, late rows
   and duplicates in input order, to the ``late`` and ``duplicates`` side outputs.

Score nodes right below it whose entities are the windows' entities attach themselves
(:meth:`ShardStage.attach_score`): the hosts hold their models per key group and score
the windows they close (:mod:`workbench.cluster.scores`); the stage merges the scored
rows and drift events in one process's order and hands them to the node.

Its ``snapshot()`` asks every host to snapshot its key groups (one file per host) and
returns the manifest part of the pipeline's checkpoint — key group → file, byte range,
SHA-256; G; the assignment and its rule; the global newest event time; versions. The
pipeline writes that checkpoint atomically after every host has snapshotted, and only
then lets the source acknowledge. ``restore()`` (re)opens hosts on the live workers,
assigns key groups by the rule, and restores each from the manifest — the same path
for a worker lost, a coordinator restarted and a restart with another number of
workers. A lost worker raises :class:`~workbench.errors.WorkerLostError`, which the
pipeline answers by restoring and replaying from the checkpoint's offsets.
"""

from __future__ import annotations

import logging
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl
from streamz import Stream

from workbench.cluster.keygroups import RULE, assign, key_groups
from workbench.cluster.scores import order_of, shardable
from workbench.cluster.shard import ShardHost
from workbench.errors import CheckpointError, ConfigError, WorkerLostError
from workbench.operators.base import Operator
from workbench.operators.dedupe import global_before

__all__ = ["ShardStage"]

log = logging.getLogger(__name__)

_FILE = re.compile(r"-(\d{8})\.wbkg$")
_KEEP = 3  # snapshot generations kept: the two the checkpoint store keeps, and one being written


def _lost(exc: BaseException) -> bool:
    """Whether an exception of a shard call means its worker is gone (not a bug in the shard)."""
    if isinstance(exc, OSError):  # CommClosedError, "Unable to contact Actor's worker", timeouts
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("distributed", "asyncio", "concurrent"))  # KilledWorker, cancelled futures


class ShardStage(Operator):
    """Keyed dedupe and windows on a Dask cluster's shard hosts, with the results merged.

    Parameters
    ----------
    upstream
        The validated frames.
    cluster
        A :class:`~workbench.cluster.client.Cluster`.
    spec, by, aggs, time, lateness
        As for the ``window`` node (``lateness`` as a duration, e.g. ``"5000ms"``).
    dedupe
        The dedupe key column, ``""`` for the whole record, ``None`` for none.
    ttl
        Dedupe TTL as a duration.
    folder
        The checkpoint folder; key group snapshots go to its ``shards/`` (it must be
        shared storage when workers run on other machines).
    """

    def __init__(
        self,
        upstream: Stream,
        cluster: Any,
        *,
        spec: Any,
        by: list[str],
        aggs: list[pl.Expr],
        time: str,
        lateness: str,
        dedupe: str | None,
        ttl: str,
        folder: str | Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "shards"), **kwargs)
        self.cluster = cluster
        self.key_groups = int(cluster.key_groups)
        self.by = list(by)
        self.time = time
        self.folder = Path(folder) / "shards"
        self.config = {
            "spec": spec,
            "by": self.by,
            "aggs": list(aggs),
            "time": time,
            "lateness": lateness,
            "dedupe": dedupe,
            "ttl": ttl,
            "key_groups": self.key_groups,
            "folder": str(self.folder),
            "scorers": {},  # attached score nodes (index as text) → a fresh Scorer
        }
        self._scores: dict[str, Any] = {}  # index → the attached ScoreNode
        self._scored: dict[str, tuple[pl.DataFrame | None, pl.DataFrame | None]] = {}  # this epoch's, per node
        self.score_marks: dict[str, int | None] = {}  # per node: the newest scored row time on all hosts
        self.score_entities: dict[str, int] = {}  # per node: entities the hosts held after the last epoch
        self.duplicates = Stream(stream_name=f"{self.name}.duplicates")
        self.late = Stream(stream_name=f"{self.name}.late")
        self.duplicate_count = 0
        self.late_count = 0
        self.max_ts: int | None = None  # the stream's newest event time (global watermark + lateness)
        self.assignment: dict[str, list[int]] = {}
        self.recoveries = 0  # hosts reopened after a lost worker
        self.epochs = 0
        self.snapshots = 0
        self.dispatch_s = 0.0  # time waiting for hosts (the benchmark's per-epoch overhead)
        self._hosts: dict[str, Any] = {}
        self._futures: list[Any] = []  # actor futures: an actor lives while its future does
        self._seq = 0
        self._state_size = 0
        self._removals_seen = 0  # the cluster's removal count when the hosts were opened

    # -- hosts ---------------------------------------------------------------------------
    def _open(self, locations: dict[int, dict[str, Any]]) -> None:
        """Start one host per live worker and give it its key groups (restored from ``locations``)."""
        self._close_hosts()
        client = self.cluster.client
        timeout = self.cluster.timeout
        last: BaseException | None = None
        for attempt in range(8):
            try:
                removals = self.cluster.removals  # a worker removed from now on unseats its host
                workers = self.cluster.workers()
                plan = assign(self.key_groups, workers)
                futures = {
                    w: client.submit(
                        ShardHost,
                        {**self.config, "name": f"host{i:03d}"},
                        actor=True,
                        workers=[w],
                        allow_other_workers=False,
                        pure=False,
                    )
                    for i, w in enumerate(sorted(plan))
                }
                hosts = {w: f.result(timeout=timeout) for w, f in futures.items()}
                calls = [
                    hosts[w].open(kgs, {kg: locations[kg] for kg in kgs if kg in locations}) for w, kgs in plan.items()
                ]
                for call in calls:
                    call.result(timeout=timeout)
            except BaseException as exc:
                if not _lost(exc):
                    raise
                last = exc
                log.warning("cluster: opening shard hosts failed (%s); retrying", exc)
                time.sleep(min(0.5 * 2**attempt, 5))
                continue
            self._hosts, self._futures, self.assignment = hosts, list(futures.values()), plan
            self._removals_seen = removals
            return
        raise WorkerLostError(f"cluster {self.cluster.address}: cannot open shard hosts ({last})")

    def _close_hosts(self) -> None:
        for host in self._hosts.values():
            try:
                host.release()  # fire and forget: a dead host has nothing to release
            except BaseException as exc:  # noqa: BLE001 - best effort on a lost worker
                log.debug("release failed: %s", exc)
        self._hosts, self._futures = {}, []

    def _ensure_open(self) -> None:
        if not self._hosts:
            self._open({})

    def check_workers(self) -> None:
        """Raise :class:`WorkerLostError` if the scheduler removed a host's worker (no call to the cluster).

        The pipeline calls it while its source is idle, so a lost worker's key groups
        are restored then, not when the next batch arrives.
        """
        if not self._hosts:
            return
        gone = sorted(self.cluster.removed_since(self._removals_seen) & set(self._hosts))
        if gone:
            raise WorkerLostError(f"cluster: the scheduler removed worker(s) {gone}; their key groups are restored")

    def _call(self, method: str, args: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        """Call ``method`` on every host (all at once), wait for all; a lost worker raises WorkerLostError."""
        started = time.perf_counter()
        self.check_workers()
        gone = sorted(set(self._hosts) - self.cluster.alive())
        if gone:
            raise WorkerLostError(f"cluster: worker(s) {gone} left; their key groups are restored elsewhere")
        try:
            calls = {w: getattr(host, method)(*args.get(w, ())) for w, host in self._hosts.items()}
            out = {w: call.result(timeout=self.cluster.timeout) for w, call in calls.items()}
        except BaseException as exc:
            if _lost(exc):
                raise WorkerLostError(f"cluster: a shard host was lost during {method} ({exc})") from exc
            raise
        self.dispatch_s += time.perf_counter() - started
        return out

    # -- processing --------------------------------------------------------------------
    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        frame: pl.DataFrame = x
        if frame.height == 0:
            return None, metadata
        self._ensure_open()
        before, newest = global_before(frame[self.time].dt.epoch("ms"), self.max_ts)
        rows = frame.select(self._needed(frame)).with_columns(
            key_groups(frame, self.by, self.key_groups),
            pl.int_range(frame.height, dtype=pl.Int64).alias("__row"),
            before.alias("__before"),
        )
        owner = {kg: w for w, kgs in self.assignment.items() for kg in kgs}
        workers = sorted(self._hosts)
        index = pl.Series([workers.index(owner[kg]) for kg in range(self.key_groups)], dtype=pl.UInt32)
        rows = rows.with_columns(__w=index.gather(rows["__kg"]))
        parts = {workers[int(i)]: p.drop("__w") for (i,), p in rows.partition_by("__w", as_dict=True).items()}
        for node in self._scores.values():  # a retune waiting is applied before the epoch, as in one process
            node.apply_pending()
        marks = dict(self.score_marks)
        out = self._call("process", {w: (parts.get(w), newest, marks) for w in workers})
        self.max_ts = newest
        self.epochs += 1
        windows = self._merge([o["windows"] for o in out.values()], ["window_start", *self.by])
        self._take_scores(list(out.values()))
        late = self._merge([o["late"] for o in out.values()], ["__row"])
        dups = self._merge([o["duplicates"] for o in out.values()], ["__row"])
        if dups is not None:  # hosts return row numbers: the rows themselves never travel back
            self.duplicate_count += dups.height
            self.duplicates.emit(frame[dups["__row"].to_numpy()])
        if late is not None:
            self.late_count += late.height
            self.late.emit(frame[late["__row"].to_numpy()])
        return windows, metadata

    def _needed(self, frame: pl.DataFrame) -> list[str]:
        """The columns the hosts read: keys, event time, what the aggregations read (all, if unsure)."""
        key = self.config["dedupe"]
        aggs: list[pl.Expr] = self.config["aggs"]
        if key == "" or any(e.meta.has_multiple_outputs() for e in aggs):
            return frame.columns  # the whole record is the dedupe key, or an aggregation selects by pattern
        read = {self.time, *self.by, *(r for e in aggs for r in e.meta.root_names())}
        if key:
            read.add(key)
        if not read <= set(frame.columns):
            return frame.columns  # let the hosts' operators report what is missing
        return [c for c in frame.columns if c in read]

    def ping(self) -> float:
        """One empty epoch (every host called with no rows, nothing new to close); its seconds."""
        self._ensure_open()
        started = time.perf_counter()
        self._call("process", {w: (None, self.max_ts) for w in self._hosts})
        return time.perf_counter() - started

    def on_close(self) -> None:
        """The pipeline closes: let the shard hosts go (their state is in the checkpoint)."""
        self._close_hosts()

    @staticmethod
    def _merge(frames: list[pl.DataFrame | None], order: list[str]) -> pl.DataFrame | None:
        real = [f for f in frames if f is not None]
        if not real:
            return None
        return pl.concat(real, how="vertical_relaxed").sort(order, maintain_order=True)

    def flush(self) -> None:  # noqa: D102
        self._ensure_open()
        marks = dict(self.score_marks)
        results = list(self._call("flush", {w: (marks,) for w in self._hosts}).values())
        out = self._merge([r["windows"] for r in results], ["window_start", *self.by])
        self._take_scores(results)
        if out is not None and out.height:
            self.metrics.rows_out += out.height
            self._emit(out)

    # -- score nodes on the hosts ------------------------------------------------------------
    def attach_score(self, node: Any) -> str | None:
        """Run score node ``node`` on the hosts, when its entities are the windows' entities.

        Returns its name on the hosts, or None when it must score here, on the merged
        window rows (``shared``, ``fill``, or entities that are not the windows' — logged).
        """
        why = shardable(node.scorer, self.by)
        if why is not None:
            log.info("cluster: score node %r runs on the coordinator: %s", node.name, why)
            return None
        if self._hosts:
            raise ConfigError(f"node {node.name!r}: a score node must be added before the pipeline runs")
        name = str(len(self._scores))
        self._scores[name] = node
        self.config["scorers"] = {**self.config["scorers"], name: node.scorer}
        return name

    def scored(self, name: str) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        """The scored rows and drift events of score node ``name`` for the windows just emitted."""
        return self._scored.pop(name, (None, None))

    def rebuild_scorer(self, name: str, detector: Any, history: pl.DataFrame | None) -> int:
        """Score node ``name`` retuned: every host rebuilds its models (warmed on its rows of ``history``)."""
        self._ensure_open()
        parts: dict[str, pl.DataFrame | None] = dict.fromkeys(self._hosts)
        if history is not None and history.height:
            owner = {kg: w for w, kgs in self.assignment.items() for kg in kgs}
            kgs = key_groups(history, self.by, self.key_groups).to_list()
            hosts = pl.Series([owner[kg] for kg in kgs], dtype=pl.String)
            parts = {w: history.filter(hosts == w) for w in self._hosts}
        warmed = self._call("rebuild", {w: (name, detector, parts[w]) for w in self._hosts})
        template = self.config["scorers"][name]
        template.rebuild(detector)
        return sum(warmed.values())

    def _take_scores(self, results: list[dict[str, Any]]) -> None:
        """Merge the hosts' scored rows and drift events per score node, in one process's order."""
        for name, node in self._scores.items():
            parts = [r["scores"][name] for r in results]
            self.score_entities[name] = sum(p["entities"] for p in parts)
            keys = order_of(node.scorer, self.by)
            scored = self._merge([p["scored"] for p in parts], keys)
            drift = self._merge([p["drift"] for p in parts], [f"__o{i}" for i in range(len(keys))])
            if drift is not None:
                drift = drift.drop([f"__o{i}" for i in range(len(keys))])
            if scored is not None:
                t = scored[node.scorer.time]
                newest = (t.dt.epoch("ms") if t.dtype.is_temporal() else t.cast(pl.Int64)).max()
                old = self.score_marks.get(name)
                self.score_marks[name] = newest if old is None else max(old, newest)
            self._scored[name] = (scored, drift)

    # -- accounting -----------------------------------------------------------------------
    def keyed_counts(self) -> dict[str, int]:
        """Duplicates, late rows and valid rows (rows in, less both): the pipeline's counts."""
        return {
            "duplicates": self.duplicate_count,
            "late": self.late_count,
            "valid": self.metrics.rows_in - self.duplicate_count - self.late_count,
        }

    @property
    def state_size(self) -> int:  # noqa: D102
        return self._state_size  # as of the last snapshot: reading it live would call every worker

    @property
    def watermark(self) -> Any:  # noqa: D102
        return self.max_ts

    # -- checkpoints -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Every host snapshots its key groups; the manifest part of the checkpoint."""
        self._ensure_open()
        seq = self._seq + 1
        locations: dict[str, Any] = {}
        for node in self._scores.values():  # a retune waiting goes into this snapshot, as in one process
            node.apply_pending()
        marks = dict(self.score_marks)
        for where in self._call("snapshot", {w: (seq, marks) for w in self._hosts}).values():
            locations.update({str(kg): loc for kg, loc in where.items()})
        self._seq = seq
        self.snapshots += 1
        self._prune(seq)
        return {
            **super().snapshot(),
            "key_groups": self.key_groups,
            "rule": RULE,
            "assignment": {w: [kgs[0], kgs[-1] + 1] if kgs else [] for w, kgs in self.assignment.items()},
            "locations": locations,
            "seq": seq,
            "max_ts": self.max_ts,
            "duplicates": self.duplicate_count,
            "late": self.late_count,
            "score_marks": marks,
            "score_entities": dict(self.score_entities),
            "versions": {n: metadata.version(n) for n in ("workbench", "polars", "xxhash", "distributed")},
        }

    def _prune(self, seq: int) -> None:
        if not self.folder.exists():
            return
        for path in self.folder.iterdir():
            m = _FILE.search(path.name)
            if m and int(m.group(1)) <= seq - _KEEP:
                path.unlink(missing_ok=True)

    def restore(self, state: dict[str, Any]) -> None:
        """Reopen hosts on the live workers and restore every key group from the manifest."""
        if state.get("key_groups") != self.key_groups:
            raise CheckpointError(
                f"node {self.name!r}: the checkpoint has {state.get('key_groups')} key groups, this cluster "
                f"{self.key_groups}; the number of key groups cannot change once a checkpoint exists "
                "(start over with --fresh, or use the checkpoint's number)"
            )
        super().restore(state)
        self.max_ts = state["max_ts"]
        self.duplicate_count = state["duplicates"]
        self.late_count = state["late"]
        self._seq = state["seq"]
        self.score_marks = dict(state.get("score_marks", {}))
        self.score_entities = dict(state.get("score_entities", {}))
        self._scored = {}
        locations = {int(kg): loc for kg, loc in state["locations"].items()}
        self._open(locations)

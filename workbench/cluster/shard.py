"""Shard hosts: one Dask actor per worker, holding the keyed state of many key groups.

A host's state is the state of the single-process operators — a
:class:`~workbench.operators.dedupe.Deduplicator` and a
:class:`~workbench.operators.windows.Windower`, one each for all its key groups, so an
epoch costs one call per operator — and their own ``snapshot``/``restore``, split by
key group at a snapshot and merged at a restore (:class:`KeyGroups`).
The coordinator sends each epoch's rows (already decoded and validated), partitioned
by key group, plus a ``__before`` column: per row, the newest event time before it in
the *whole* stream, and the stream's newest event time after the batch. With these a
key group classifies duplicates and late rows and closes windows exactly as the one
process would (the watermark is global, as in any engine with keyed state).

Methods: :meth:`ShardHost.open` (create or restore key groups), :meth:`~ShardHost.process`,
:meth:`~ShardHost.snapshot` (one file per host and epoch, a checksum per key group),
:meth:`~ShardHost.flush` and :meth:`~ShardHost.release`.

Examples
--------
>>> import polars as pl, tempfile
>>> from datetime import datetime, UTC
>>> from workbench.operators import aggregations as agg
>>> from workbench.operators.windows import Tumbling
>>> host = ShardHost({"spec": Tumbling("10s"), "by": ["host"], "aggs": [agg.count()], "time": "ts",
...                   "lateness": "0s", "dedupe": "event_id", "ttl": "1m", "key_groups": 2,
...                   "folder": tempfile.mkdtemp()})
>>> host.open([0, 1], {})
>>> t = [datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 1, 12)]
>>> rows = pl.DataFrame({"event_id": ["a", "a", "b"], "host": ["h"] * 3, "ts": t,
...                      "__kg": pl.Series([1, 1, 1], dtype=pl.UInt32), "__row": [0, 1, 2],
...                      "__before": [NEVER, 1704067201000, 1704067201000]})
>>> out = host.process(rows, 1704067212000)
>>> out["windows"]["count"].to_list(), out["duplicates"]["__row"].to_list()
([1], [1])
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from workbench.cluster.keygroups import key_groups
from workbench.cluster.scores import HostScorers
from workbench.errors import CheckpointError
from workbench.operators.dedupe import NEVER, Deduplicator
from workbench.operators.windows import Windower
from workbench.storage.atomic import atomic_write
from workbench.storage.statecodec import pack, unpack

__all__ = ["NEVER", "KeyGroups", "ShardHost"]

_GROUP_KEY = "__group_key"  # "<key group>:<dedupe key>": remembered keys split by key group
_INTERNAL = ("__kg", "__row", "__before")


class KeyGroups:
    """The keyed state of a host's key groups: one dedupe set and one window buffer for all of them.

    One operator instance per host, not per key group: a batch costs one call per
    operator, as in one process. The state splits by key group at a snapshot (a window
    row's key group comes from its key columns; a remembered dedupe key is prefixed with
    its key group) and merges at a restore, so any host can take any key group.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.time = config["time"]
        self.by = list(config["by"])
        self.groups = int(config["key_groups"])
        key = config.get("dedupe")  # a key column, "" for the whole record, None for no dedupe
        self.key = key
        self.dedupe = (
            Deduplicator(_GROUP_KEY, self.time, ttl=config["ttl"], max_keys=config.get("max_keys", 5_000_000))
            if key is not None
            else None
        )
        self.windows = Windower(
            config["spec"],
            by=self.by,
            aggs=config["aggs"],
            time=self.time,
            lateness=config["lateness"],
            max_rows=config.get("max_rows", 5_000_000),
        )
        self.scores = HostScorers(config.get("scorers", {}), self.by, self.groups)

    def process(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Windows closed, late rows and duplicates of one epoch's rows (with ``__kg``)."""
        dups = rows.clear()
        if self.dedupe is not None:
            if self.key:
                key = pl.col(self.key).cast(pl.String)
            else:  # the whole record is the key
                data = [c for c in rows.columns if c not in _INTERNAL]
                key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\x00") for c in data], separator="\x1f")
            keyed = rows.with_columns(
                pl.concat_str([pl.col("__kg").cast(pl.String), key], separator=":").alias(_GROUP_KEY)
            )
            kept, dups = self.dedupe.process(keyed, before=rows["__before"].to_numpy())
            kept, dups = kept.drop(_GROUP_KEY), dups.drop(_GROUP_KEY, "__before")
        else:
            kept = rows
        out, late = self.windows.process(kept.drop("__kg"), before="__before")
        return out, late, dups.drop("__kg")

    def advance(self, max_ts: int | None) -> pl.DataFrame:
        """The stream's newest event time is ``max_ts``: forget and close what it passes."""
        if self.dedupe is not None:
            self.dedupe.advance(max_ts)
        return self.windows.advance(max_ts)

    def snapshot(self, groups: list[int]) -> dict[int, dict[str, Any]]:
        """The operators' own snapshots, split by key group."""
        w = self.windows.snapshot()
        buf = w["buffer"]
        kg_of_row = key_groups(buf, self.by, self.groups) if buf.width else None
        d: dict[str, Any] | None = None
        kg_of_key = None
        if self.dedupe is not None:  # one frame of live keys, split by key group
            seen = self.dedupe.live_keys()
            d = {"seen": seen, "max_ts": self.dedupe.snapshot_max_ts, "evicted": self.dedupe.evicted}
            kg_of_key = seen["key"].str.extract(r"^(\d+):", 1).cast(pl.UInt32)
        scores = self.scores.snapshot(groups)
        out = {}
        for kg in groups:
            part_w = {
                **w,
                "buffer": buf.filter(kg_of_row == kg) if kg_of_row is not None else buf,
                "counters": {"late": 0, "windows": 0, "forced": 0},  # the coordinator counts
            }
            part_d = None
            if d is not None and kg_of_key is not None:
                part_d = {**d, "seen": d["seen"].filter(kg_of_key == kg), "evicted": 0}
            out[kg] = {"dedupe": part_d, "windows": part_w, "scores": scores[kg]}
        return out

    def restore(self, states: list[dict[str, Any]]) -> None:
        """Merge key groups' :meth:`snapshot` parts into this host's state."""
        if not states:
            return
        ws = [st["windows"] for st in states]
        buffers = [w["buffer"] for w in ws if w["buffer"].width]
        self.windows.restore(
            {
                "buffer": pl.concat(buffers, how="vertical_relaxed") if buffers else pl.DataFrame(),
                "max_ts": _max(w["max_ts"] for w in ws),
                "emitted_k": _max(w["emitted_k"] for w in ws),
                "floor_ms": _max(w["floor_ms"] for w in ws),
                "counters": {"late": 0, "windows": 0, "forced": 0},
            }
        )
        self.scores.restore([st.get("scores", {}) for st in states])
        ds = [st["dedupe"] for st in states if st["dedupe"] is not None]
        if self.dedupe is not None and ds:
            self.dedupe.restore(
                {
                    "seen": pl.concat([d["seen"] for d in ds]),
                    "max_ts": _max(d["max_ts"] for d in ds),
                    "evicted": 0,
                }
            )

    @property
    def state_size(self) -> int:
        """Rows buffered, keys remembered and entities scored."""
        dedupe = self.dedupe.state_size if self.dedupe is not None else 0
        return self.windows.state_size + dedupe + self.scores.state_size


def _max(values: Any) -> Any:
    real = [v for v in values if v is not None]
    return max(real) if real else None


def _frames(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    real = [f for f in frames if f.width and f.height]
    return pl.concat(real, how="vertical_relaxed") if real else None


class ShardHost:
    """The key groups one worker holds (a Dask actor: one thread, so calls never overlap).

    Parameters
    ----------
    config
        ``spec``, ``by``, ``aggs``, ``time``, ``lateness``, ``dedupe`` (key column,
        ``""`` for the whole record, ``None``), ``ttl`` (durations as ``"5000ms"``),
        ``key_groups`` (G), ``folder`` (where snapshots go: a folder every worker and the
        coordinator can read), ``name`` (this host's file name part).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.folder = Path(config["folder"])
        self.name = str(config.get("name", "host"))
        self.groups: list[int] = []
        self.state = KeyGroups(config)

    def pid(self) -> int:
        """The worker process's id (fault tests kill it)."""
        return os.getpid()

    def open(self, groups: list[int], locations: dict[int, dict[str, Any]]) -> None:
        """Hold ``groups``: restored from their snapshot where ``locations`` has one, else empty.

        Each location is ``{"file", "start", "length", "sha256"}``; the bytes are checked
        against the checksum (from the authenticated manifest) before they are read.
        """
        self.groups = sorted(groups)
        self.state = KeyGroups(self.config)
        cache: dict[str, bytes] = {}
        states = []
        for kg in self.groups:
            where = locations.get(kg)
            if where is None:
                continue
            path = self.folder / where["file"]
            if where["file"] not in cache:
                try:
                    cache[where["file"]] = path.read_bytes()
                except OSError as exc:
                    raise CheckpointError(f"key group {kg}: snapshot {path} cannot be read ({exc})") from exc
            data = cache[where["file"]][where["start"] : where["start"] + where["length"]]
            if hashlib.sha256(data).hexdigest() != where["sha256"]:
                raise CheckpointError(f"key group {kg}: snapshot {path} does not match the manifest's checksum")
            states.append(unpack(data, trusted=True))  # authenticated: the manifest's HMAC covers the checksum
        self.state.restore(states)

    def process(
        self, rows: pl.DataFrame | None, max_ts: int | None, marks: dict[str, int | None] | None = None
    ) -> dict[str, Any]:
        """One epoch: this host's rows (with ``__kg``, ``__row``, ``__before``), then advance to ``max_ts``.

        Returns the windows closed, and the row numbers (``__row``) of late rows and
        duplicates: the coordinator holds the rows and keeps their input order; and
        ``scores``: per score node, the closed windows scored and drift events
        (:meth:`HostScorers.score`; ``marks`` is each node's newest row time on all hosts).
        """
        windows, late, dups = [], [], []
        if rows is not None and rows.height:
            out, lt, dp = self.state.process(rows)
            windows.append(out)
            late.append(lt.select("__row"))
            dups.append(dp.select("__row"))
        windows.append(self.state.advance(max_ts))
        closed = _frames(windows)
        return {
            "windows": closed,
            "late": _frames(late),
            "duplicates": _frames(dups),
            "scores": self.state.scores.score(closed, marks or {}),
        }

    def flush(self, marks: dict[str, int | None] | None = None) -> dict[str, Any]:
        """End of input: every open window, and the score nodes' scores of them."""
        closed = _frames([self.state.windows.flush()])
        return {"windows": closed, "scores": self.state.scores.score(closed, marks or {})}

    def rebuild(self, name: str, detector: Any, history: pl.DataFrame | None) -> int:
        """Score node ``name`` retuned: new models, warmed on this host's ``history`` rows; rows warmed."""
        return self.state.scores.rebuild(name, detector, history)

    def snapshot(self, seq: int, marks: dict[str, int | None] | None = None) -> dict[int, dict[str, Any]]:
        """Write every key group's state into one file for ``seq``; return each group's location.

        The file is written atomically; a snapshot interrupted leaves the previous ones
        whole, and the manifest that names this file is written only after it. The score
        nodes first forget the entities idle at ``marks`` (as one process's would be).
        """
        for scorer_name, scorer in self.state.scores.scorers.items():
            scorer.advance((marks or {}).get(scorer_name))
        name = f"{self.name}-{seq:08d}.wbkg"
        blobs, where, pos = [], {}, 0
        for kg, tree in self.state.snapshot(self.groups).items():
            data = pack(tree)
            where[kg] = {"file": name, "start": pos, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            blobs.append(data)
            pos += len(data)

        def write(f: BinaryIO) -> None:
            for blob in blobs:
                f.write(blob)

        atomic_write(self.folder / name, write)
        return where

    def state_size(self) -> int:
        """Rows buffered and keys remembered."""
        return self.state.state_size

    def release(self) -> None:
        """Drop every key group (the coordinator reassigns them)."""
        self.groups = []
        self.state = KeyGroups(self.config)

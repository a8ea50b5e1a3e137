"""Shard hosts: one Dask actor per worker, holding the keyed state of many key groups.

A key group's state is the state of the single-process operators, one instance per
key group: a :class:`~workbench.operators.dedupe.Deduplicator` and a
:class:`~workbench.operators.windows.Windower` (their own ``snapshot``/``restore``).
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
...                   "lateness": "0s", "dedupe": "event_id", "ttl": "1m", "folder": tempfile.mkdtemp()})
>>> host.open([0, 1], {})
>>> t = [datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 1, 12)]
>>> rows = pl.DataFrame({"event_id": ["a", "a", "b"], "host": ["h"] * 3, "ts": t,
...                      "__kg": pl.Series([1, 1, 1], dtype=pl.UInt32), "__row": [0, 1, 2],
...                      "__before": [NEVER, 1704067201000, 1704067201000]})
>>> out = host.process(rows, 1704067212000)
>>> out["windows"]["count"].to_list(), out["duplicates"].height
([1], 1)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from workbench.errors import CheckpointError
from workbench.operators.dedupe import NEVER, Deduplicator
from workbench.operators.windows import Windower
from workbench.storage.atomic import atomic_write
from workbench.storage.statecodec import pack, unpack

__all__ = ["NEVER", "KeyGroup", "ShardHost"]

_CONTENT_KEY = "__content_key"
_INTERNAL = ("__kg", "__row", "__before")


class KeyGroup:
    """The keyed state of one key group: dedupe set and open windows."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.time = config["time"]
        key = config.get("dedupe")  # a key column, "" for the whole record, None for no dedupe
        self.content = key == ""
        self.dedupe = (
            Deduplicator(key or _CONTENT_KEY, self.time, ttl=config["ttl"], max_keys=config.get("max_keys", 5_000_000))
            if key is not None
            else None
        )
        self.windows = Windower(
            config["spec"],
            by=config["by"],
            aggs=config["aggs"],
            time=self.time,
            lateness=config["lateness"],
            max_rows=config.get("max_rows", 5_000_000),
        )
        self.duplicates = 0

    def process(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Windows closed, late rows and duplicates of this key group's rows of one epoch."""
        dups = rows.clear()
        if self.dedupe is not None:
            before = rows["__before"].to_numpy()
            if self.content:
                data = [c for c in rows.columns if c not in _INTERNAL]
                text = [pl.col(c).cast(pl.String).fill_null("\x00") for c in data]
                keyed = rows.with_columns(pl.concat_str(text, separator="\x1f").alias(_CONTENT_KEY))
                kept, dups = self.dedupe.process(keyed, before=before)
                kept, dups = kept.drop(_CONTENT_KEY), dups.drop(_CONTENT_KEY)
            else:
                kept, dups = self.dedupe.process(rows, before=before)
            self.duplicates += dups.height
        else:
            kept = rows
        out, late = self.windows.process(kept, before="__before")
        return out, late, dups.drop("__before")

    def advance(self, max_ts: int | None) -> pl.DataFrame:
        """The stream's newest event time is ``max_ts``: forget and close what it passes."""
        if self.dedupe is not None:
            self.dedupe.advance(max_ts)
        return self.windows.advance(max_ts)

    def snapshot(self) -> dict[str, Any]:
        """The operators' own snapshots."""
        return {
            "dedupe": self.dedupe.snapshot() if self.dedupe is not None else None,
            "windows": self.windows.snapshot(),
            "duplicates": self.duplicates,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        if self.dedupe is not None and state["dedupe"] is not None:
            self.dedupe.restore(state["dedupe"])
        self.windows.restore(state["windows"])
        self.duplicates = state["duplicates"]

    def counts(self) -> dict[str, int]:
        """Duplicates and late rows so far."""
        return {"duplicates": self.duplicates, "late": self.windows.counters["late"]}


def _frames(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    real = [f for f in frames if f.width and f.height]
    return pl.concat(real, how="vertical_relaxed") if real else None


class ShardHost:
    """The key groups one worker holds (a Dask actor: one thread, so calls never overlap).

    Parameters
    ----------
    config
        ``spec``, ``by``, ``aggs``, ``time``, ``lateness``, ``dedupe`` (key column,
        ``""`` for the whole record, ``None``), ``ttl`` (durations as ``"5000ms"``), ``folder`` (where
        snapshots go: a folder every worker and the coordinator can read), ``name``
        (this host's file name part).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.folder = Path(config["folder"])
        self.name = str(config.get("name", "host"))
        self.groups: dict[int, KeyGroup] = {}

    def pid(self) -> int:
        """The worker process's id (fault tests kill it)."""
        return os.getpid()

    def open(self, groups: list[int], locations: dict[int, dict[str, Any]]) -> None:
        """Hold ``groups``: restored from their snapshot where ``locations`` has one, else empty.

        Each location is ``{"file", "start", "length", "sha256"}``; the bytes are checked
        against the checksum (from the authenticated manifest) before they are read.
        """
        self.groups = {}
        cache: dict[str, bytes] = {}
        for kg in groups:
            group = KeyGroup(self.config)
            where = locations.get(kg)
            if where is not None:
                path = self.folder / where["file"]
                if where["file"] not in cache:
                    try:
                        cache[where["file"]] = path.read_bytes()
                    except OSError as exc:
                        raise CheckpointError(f"key group {kg}: snapshot {path} cannot be read ({exc})") from exc
                data = cache[where["file"]][where["start"] : where["start"] + where["length"]]
                if hashlib.sha256(data).hexdigest() != where["sha256"]:
                    raise CheckpointError(f"key group {kg}: snapshot {path} does not match the manifest's checksum")
                group.restore(unpack(data, trusted=True))  # authenticated: the manifest's HMAC covers the checksum
            self.groups[kg] = group

    def process(self, rows: pl.DataFrame | None, max_ts: int | None) -> dict[str, Any]:
        """One epoch: this host's rows (with ``__kg``, ``__row``, ``__before``), then advance to ``max_ts``.

        Returns the windows closed (sorted as one process sorts them), late rows and
        duplicates (with ``__row``, so the coordinator restores the input order).
        """
        windows, late, dups = [], [], []
        if rows is not None and rows.height:
            for (kg,), part in rows.partition_by("__kg", as_dict=True, maintain_order=True).items():
                out, lt, dp = self.groups[int(kg)].process(part.drop("__kg"))
                windows.append(out)
                late.append(lt)
                dups.append(dp)
        for group in self.groups.values():
            windows.append(group.advance(max_ts))
        return {"windows": _frames(windows), "late": _frames(late), "duplicates": _frames(dups)}

    def flush(self) -> pl.DataFrame | None:
        """End of input: every open window of every key group."""
        return _frames([g.windows.flush() for g in self.groups.values()])

    def snapshot(self, seq: int) -> dict[int, dict[str, Any]]:
        """Write every key group's state into one file for ``seq``; return each group's location.

        The file is written atomically; a snapshot interrupted leaves the previous ones
        whole, and the manifest that names this file is written only after it.
        """
        name = f"{self.name}-{seq:08d}.wbkg"
        blobs, where, pos = [], {}, 0
        for kg, group in sorted(self.groups.items()):
            data = pack(group.snapshot())
            where[kg] = {"file": name, "start": pos, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            blobs.append(data)
            pos += len(data)

        def write(f: BinaryIO) -> None:
            for blob in blobs:
                f.write(blob)

        atomic_write(self.folder / name, write)
        return where

    def counts(self) -> dict[str, int]:
        """Duplicates and late rows over this host's key groups."""
        out = {"duplicates": 0, "late": 0}
        for g in self.groups.values():
            for k, v in g.counts().items():
                out[k] += v
        return out

    def state_size(self) -> int:
        """Rows buffered and keys remembered."""
        return sum(
            g.windows.state_size + (g.dedupe.state_size if g.dedupe is not None else 0) for g in self.groups.values()
        )

    def release(self) -> None:
        """Drop every key group (the coordinator reassigns them)."""
        self.groups = {}

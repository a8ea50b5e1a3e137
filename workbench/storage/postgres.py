"""PostgreSQL sink (psycopg 3): upsert output frames at every checkpoint, idempotently.

``PostgresSink`` holds the frames it receives, like the lake sink, and at each
checkpoint (before the checkpoint file is written) COPYs them in bulk into a
temporary staging table and moves them with ``INSERT … ON CONFLICT (key) DO
UPDATE`` (or ``DO NOTHING``) into the target table, in one transaction. A replay of
the batches after a crash produces the same keys again, so it updates rows rather
than doubling them.

The table is created on the first commit from the frame's columns, with a primary
key on ``keys``: by default the window key (the string columns plus
``window_start``/``window_end``) of a window output, or ``event_id``.

Every commit also writes the table's *commit row* in the same transaction: one row
per (run, table) in ``<schema>.workbench_commits`` with the pipeline's name, the
epoch, the rows that epoch upserted and the time (a run is one checkpointed history:
a resumed run keeps its id, a new or ``--fresh`` one gets another). The table and its commit row can therefore never
disagree: a restart checks the checkpoint against it and refuses to resume over a
table that lost committed output (restored from an older backup, truncated) — the
replay would leave a hole no one would see.

Examples
--------
>>> import polars as pl
>>> from datetime import datetime, UTC
>>> frame = pl.DataFrame({"host": ["a"], "window_start": [datetime(2024, 1, 1, tzinfo=UTC)],
...     "window_end": [datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)], "count": [3]})
>>> default_keys(frame)
['host', 'window_start', 'window_end']
>>> print(create_table_sql("public", "windows", frame, ["host", "window_start"]))  # doctest: +NORMALIZE_WHITESPACE
CREATE TABLE IF NOT EXISTS "public"."windows" ("host" text, "window_start" timestamptz,
    "window_end" timestamptz, "count" bigint, PRIMARY KEY ("host", "window_start"))
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any, Literal

import polars as pl
from streamz import Stream

from workbench.errors import CheckpointError, ConfigError, SinkError
from workbench.storage.held import HeldSink

__all__ = ["COMMITS", "PostgresSink", "commits_table_sql", "create_table_sql", "default_keys"]

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_type(dtype: pl.DataType) -> str:
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return "text"
    if dtype in (pl.Float64, pl.Float32):
        return "double precision"
    if dtype in (pl.Int8, pl.Int16, pl.UInt8):
        return "smallint"
    if dtype in (pl.Int32, pl.UInt16):
        return "integer"
    if dtype in (pl.Int64, pl.UInt32):
        return "bigint"
    if dtype == pl.UInt64:
        return "numeric(20)"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Binary:
        return "bytea"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    return "text"


def default_keys(frame: pl.DataFrame) -> list[str]:
    """The natural key of an output frame: the window key, else ``event_id``."""
    if "window_start" in frame.columns:
        keys = [c for c, t in frame.schema.items() if t in (pl.String, pl.Categorical)]
        return [*keys, *(c for c in ("window_start", "window_end") if c in frame.columns)]
    if "event_id" in frame.columns:
        return ["event_id"]
    raise ConfigError(
        f"postgres sink: cannot tell the key of a frame with columns {frame.columns}; pass keys=[…] (the upsert key)"
    )


def create_table_sql(schema: str, table: str, frame: pl.DataFrame, keys: list[str]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``frame``'s columns with a primary key on ``keys``."""
    cols = ", ".join(f"{_q(c)} {_pg_type(t)}" for c, t in frame.schema.items())
    return f"CREATE TABLE IF NOT EXISTS {_q(schema)}.{_q(table)} ({cols}, PRIMARY KEY ({', '.join(map(_q, keys))}))"


#: The commit rows' table, one per schema: (run, table) → newest committed epoch.
COMMITS = "workbench_commits"


def commits_table_sql(schema: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the commit rows of ``schema``."""
    return (
        f"CREATE TABLE IF NOT EXISTS {_q(schema)}.{_q(COMMITS)} (run text NOT NULL, pipeline text NOT NULL, "
        '"table" text NOT NULL, epoch bigint NOT NULL, "rows" bigint NOT NULL, '
        'committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run, "table"))'
    )


def _as_csv(frame: pl.DataFrame) -> bytes:
    """The frame as CSV that PostgreSQL's COPY reads exactly (UTC times, bytea as hex)."""
    exprs = []
    for c, t in frame.schema.items():
        if isinstance(t, pl.Datetime) and t.time_zone:
            exprs.append(pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00").alias(c))
        elif t == pl.Binary:
            exprs.append(pl.concat_str(pl.lit("\\x"), pl.col(c).bin.encode("hex")).alias(c))
        elif t in (pl.List, pl.Struct, pl.Array) or isinstance(t, pl.List | pl.Struct | pl.Array):
            exprs.append(pl.col(c).map_elements(str, return_dtype=pl.String).alias(c))
        else:
            exprs.append(pl.col(c))
    return frame.select(exprs).write_csv(include_header=False).encode()


class PostgresSink(HeldSink):
    """A streamz node that upserts the frames it receives into PostgreSQL at each checkpoint.

    Parameters
    ----------
    upstream
        The output stream.
    dsn
        libpq connection string or URL, e.g. ``postgresql://postgres@127.0.0.1/test``.
    output
        The output's name (the default table name).
    table
        Target table (created when missing).
    schema
        Target schema (created when missing).
    keys
        Upsert key columns (default: :func:`default_keys` of the first frame).
    on_conflict
        ``"update"`` (the replayed row wins) or ``"nothing"`` (the first row stays).
    connect_timeout
        Seconds to wait for the server.
    pipeline
        The writer's name in the commit row (default: ``output``); ``Pipeline.to_postgres``
        passes the pipeline's name.

    Attributes
    ----------
    run
        This run's id in the commit row: new for every sink, the checkpoint's on a resume.
    committed
        The newest epoch committed by this run (``None`` before the first).
    """

    def __init__(
        self,
        upstream: Stream,
        dsn: str,
        output: str,
        *,
        table: str | None = None,
        schema: str = "public",
        keys: list[str] | None = None,
        on_conflict: Literal["update", "nothing"] = "update",
        connect_timeout: int = 5,
        pipeline: str | None = None,
    ) -> None:
        super().__init__(upstream, stream_name=f"postgres:{output}")
        self.table = table or output
        for what, name in (("table", self.table), ("schema", schema)):
            if not _IDENT.match(name):
                raise ConfigError(f"postgres sink: {what} must be letters, digits and underscores, not {name!r}")
        if on_conflict not in ("update", "nothing"):
            raise ConfigError(f"postgres sink: on_conflict must be 'update' or 'nothing', not {on_conflict!r}")
        self.dsn, self.output, self.schema = dsn, output, schema
        self.keys = list(keys) if keys else None
        self.on_conflict = on_conflict
        self.connect_timeout = connect_timeout
        self.pipeline = pipeline or output
        self.run = secrets.token_hex(8)
        self.committed: int | None = None
        self._ready = False
        self._commits_ready = False
        self.rows_written = 0
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            where = re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", self.dsn)
            raise SinkError(f"postgres sink {where!r}: cannot connect: {' '.join(str(exc).split())}") from exc

    @property
    def where(self) -> str:
        """``schema.table``, as the commit row and the messages name it."""
        return f"{self.schema}.{self.table}"

    def commit(self, epoch: int) -> None:
        """Upsert the held rows and the commit row in one transaction (``epoch`` is the checkpoint's)."""
        frame = self.held()
        import psycopg

        keys: list[str] = []
        if frame is not None:
            keys = self.keys or default_keys(frame)
            missing = [k for k in keys if k not in frame.columns]
            if missing:
                raise ConfigError(f"postgres sink {self.table!r}: key columns {missing} not in {frame.columns}")
            frame = frame.unique(subset=keys, keep="last", maintain_order=True)
        for attempt in (1, 2):
            try:
                self._upsert(frame, keys, epoch)
                break
            except psycopg.OperationalError as exc:  # a lost connection: one fresh try
                if attempt == 2:
                    raise SinkError(f"postgres sink {self.table!r}: epoch {epoch} not written: {exc}") from exc
                log.warning("postgres sink %r: %s; reconnecting", self.table, exc)
                self._connect()
        self.rows_written += frame.height if frame is not None else 0
        self.committed = epoch
        self.forget()

    def _upsert(self, frame: pl.DataFrame | None, keys: list[str], epoch: int) -> None:
        target = f"{_q(self.schema)}.{_q(self.table)}"
        with self._conn.transaction(), self._conn.cursor() as cur:
            if not self._commits_ready:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")
                cur.execute(commits_table_sql(self.schema))
                self._commits_ready = True
            if frame is not None:
                cols = ", ".join(map(_q, frame.columns))
                if self.on_conflict == "update" and len(keys) < frame.width:
                    sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in frame.columns if c not in keys)
                    action = f"DO UPDATE SET {sets}"
                else:
                    action = "DO NOTHING"
                if not self._ready:
                    cur.execute(create_table_sql(self.schema, self.table, frame, keys))
                    self._ready = True
                stage = f"wb_stage_{self.table}"
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {target}) ON COMMIT DELETE ROWS")
                with cur.copy(f"COPY {stage} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(_as_csv(frame))
                cur.execute(
                    f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} "
                    f"ON CONFLICT ({', '.join(map(_q, keys))}) {action}"
                )
            cur.execute(
                f'INSERT INTO {_q(self.schema)}.{_q(COMMITS)} (run, pipeline, "table", epoch, "rows", committed_at) '
                'VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (run, "table") DO UPDATE SET '
                'epoch = EXCLUDED.epoch, "rows" = EXCLUDED."rows", committed_at = EXCLUDED.committed_at',
                (self.run, self.pipeline, self.table, epoch, frame.height if frame is not None else 0),
            )

    def last_epoch(self) -> int | None:
        """The newest epoch this table committed for this run (``None``: no commit row)."""
        import psycopg

        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (f"{_q(self.schema)}.{_q(COMMITS)}",))
                row = cur.fetchone()
                if row is None or row[0] is None:
                    return None
                cur.execute(
                    f'SELECT epoch FROM {_q(self.schema)}.{_q(COMMITS)} WHERE run = %s AND "table" = %s',
                    (self.run, self.table),
                )
                found = cur.fetchone()
        except psycopg.Error as exc:
            raise SinkError(f"postgres sink {self.where!r}: cannot read its commit row: {exc}") from exc
        return None if found is None else int(found[0])

    def rollback(self, epoch: int) -> None:
        """Forget held rows (rows of later epochs are overwritten by the replay)."""
        self.forget()

    def commit_state(self) -> dict[str, Any]:
        """What a checkpoint records of this table: the run's id and its newest committed epoch."""
        return {"run": self.run, "epoch": self.committed}

    def resume(self, state: dict[str, Any], where: str) -> None:
        """Take over the checkpoint's run; refuse when the table lost output that checkpoint says it holds.

        Output commits before the checkpoint that covers it, so the table's commit row is
        at the checkpoint's epoch or one after it (a run stopped between the two). Below
        it, rows the checkpoint counts as written are gone, and the replay from the
        checkpoint would not write them again.
        """
        self.run = str(state["run"])
        self.committed = state.get("epoch")
        if self.committed is None:
            return
        found = self.last_epoch()
        if found is None or found < self.committed:
            raise CheckpointError(
                f"checkpoint {where}: PostgreSQL table {self.where} lost committed output (its commit row in "
                f"{self.schema}.{COMMITS} says epoch {found if found is not None else 'none'}, the checkpoint's "
                f"{self.committed}); resuming would leave a hole: start over with --fresh"
            )

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

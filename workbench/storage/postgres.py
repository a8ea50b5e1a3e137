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
from typing import Any, Literal

import polars as pl
from streamz import Stream

from workbench.errors import ConfigError, SinkError
from workbench.storage.held import HeldSink

__all__ = ["PostgresSink", "create_table_sql", "default_keys"]

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
        self._ready = False
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

    def commit(self, epoch: int) -> None:
        """Upsert the held rows in one transaction (``epoch`` is the checkpoint's)."""
        frame = self.held()
        if frame is None:
            return
        import psycopg

        keys = self.keys or default_keys(frame)
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ConfigError(f"postgres sink {self.table!r}: key columns {missing} not in {frame.columns}")
        frame = frame.unique(subset=keys, keep="last", maintain_order=True)
        for attempt in (1, 2):
            try:
                self._upsert(frame, keys)
                break
            except psycopg.OperationalError as exc:  # a lost connection: one fresh try
                if attempt == 2:
                    raise SinkError(f"postgres sink {self.table!r}: epoch {epoch} not written: {exc}") from exc
                log.warning("postgres sink %r: %s; reconnecting", self.table, exc)
                self._connect()
        self.rows_written += frame.height
        self.forget()

    def _upsert(self, frame: pl.DataFrame, keys: list[str]) -> None:
        target = f"{_q(self.schema)}.{_q(self.table)}"
        cols = ", ".join(map(_q, frame.columns))
        if self.on_conflict == "update" and len(keys) < frame.width:
            sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in frame.columns if c not in keys)
            action = f"DO UPDATE SET {sets}"
        else:
            action = "DO NOTHING"
        with self._conn.transaction(), self._conn.cursor() as cur:
            if not self._ready:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")
                cur.execute(create_table_sql(self.schema, self.table, frame, keys))
                self._ready = True
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS wb_stage_{self.table} (LIKE {target}) ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY wb_stage_{self.table} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(_as_csv(frame))
            cur.execute(
                f"INSERT INTO {target} ({cols}) SELECT {cols} FROM wb_stage_{self.table} "
                f"ON CONFLICT ({', '.join(map(_q, keys))}) {action}"
            )

    def rollback(self, epoch: int) -> None:
        """Forget held rows (rows of later epochs are overwritten by the replay)."""
        self.forget()

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

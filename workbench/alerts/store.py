"""Alert stores: the queryable history of every transition, notification and feedback.

:class:`DuckDBStore` (embedded, the default; a file or ``:memory:``) and
:class:`PostgresStore` (psycopg 3; a schema of its own) share every statement but
the placeholders, and pass the same test module. Writes are idempotent — an event is
keyed by (fingerprint, time, new state), a notification by its id — so a pipeline
replaying batches after a restart does not duplicate history.

Examples
--------
>>> store = DuckDBStore(":memory:")
>>> store.record_feedback({"fingerprint": "hot/a", "rule": "hot", "label": "true_positive", "by": "ana",
...                        "note": "", "at": None, "event_time": None})
>>> store.precision()
1.0
"""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import ConfigError, WorkbenchError

__all__ = ["AlertStore", "DuckDBStore", "PostgresStore", "StoreError", "open_store"]

TS = pl.Datetime("ms", "UTC")
_TABLES = {
    "alert_events": (
        "fingerprint TEXT NOT NULL, rule TEXT, entity TEXT, from_state TEXT, to_state TEXT NOT NULL, "
        '"at" TIMESTAMPTZ NOT NULL, active_at TIMESTAMPTZ, value DOUBLE PRECISION, severity TEXT, summary TEXT, '
        'labels TEXT, PRIMARY KEY (fingerprint, "at", to_state)'
    ),
    "alert_notifications": (
        "id TEXT PRIMARY KEY, receiver TEXT, group_key TEXT, status TEXT, severity TEXT, summary TEXT, "
        '"at" TIMESTAMPTZ, alerts INTEGER, body TEXT'
    ),
    "alert_feedback": (
        "fingerprint TEXT NOT NULL, rule TEXT, label TEXT NOT NULL, by_whom TEXT, note TEXT, "
        '"at" TIMESTAMPTZ, event_time TIMESTAMPTZ'
    ),
    "alert_silences": (
        "silence_id TEXT NOT NULL, matchers TEXT, starts_at TIMESTAMPTZ, ends_at TIMESTAMPTZ, created_by TEXT, "
        'comment TEXT, "at" TIMESTAMPTZ'
    ),
}
_EVENT_COLS = ["fingerprint", "rule", "entity", "from_state", "to_state", "at", "active_at", "value", "severity"]
_EVENT_COLS += ["summary", "labels"]
_SCHEMAS: dict[str, dict[str, Any]] = {
    "alert_events": {
        c: (TS if c in ("at", "active_at") else pl.Float64 if c == "value" else pl.String) for c in _EVENT_COLS
    },
    "alert_notifications": {
        "id": pl.String,
        "receiver": pl.String,
        "group_key": pl.String,
        "status": pl.String,
        "severity": pl.String,
        "summary": pl.String,
        "at": TS,
        "alerts": pl.Int32,
        "body": pl.String,
    },
    "alert_feedback": {
        "fingerprint": pl.String,
        "rule": pl.String,
        "label": pl.String,
        "by_whom": pl.String,
        "note": pl.String,
        "at": TS,
        "event_time": TS,
    },
    "alert_silences": {
        "silence_id": pl.String,
        "matchers": pl.String,
        "starts_at": TS,
        "ends_at": TS,
        "created_by": pl.String,
        "comment": pl.String,
        "at": TS,
    },
}


class StoreError(WorkbenchError):
    """The alert store cannot be opened, written or read."""


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class AlertStore(ABC):
    """What every alert store offers: record, then query history."""

    placeholder = "?"
    name = "store"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @abstractmethod
    def _execute(self, sql: str, rows: Sequence[Sequence[Any]] | None = None) -> None:
        """Run ``sql`` once, or once per row of ``rows``."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @property
    @abstractmethod
    def prefix(self) -> str:
        """Qualifier of table names (``schema.``)."""

    def _create(self) -> None:
        for table, cols in _TABLES.items():
            self._execute(f"CREATE TABLE IF NOT EXISTS {self.prefix}{table} ({cols})")

    def _insert(self, table: str, cols: list[str], rows: list[tuple[Any, ...]], key: str) -> None:
        if not rows:
            return
        marks = ", ".join([self.placeholder] * len(cols))
        conflict = f" ON CONFLICT ({key}) DO NOTHING" if key else ""
        names = ", ".join(f'"{c}"' for c in cols)
        sql = f"INSERT INTO {self.prefix}{table} ({names}) VALUES ({marks}){conflict}"
        try:
            with self._lock:
                self._execute(sql, rows)
        except Exception as exc:
            raise StoreError(f"{self.name}: cannot write {len(rows)} row(s) to {table}: {exc}") from exc

    # -- writing --------------------------------------------------------------------
    def record_events(self, events: pl.DataFrame) -> None:
        """Append alert events (the ``alerts`` output rows)."""
        key = 'fingerprint, "at", to_state'
        if events.height and self._insert_frame("alert_events", events.select(_EVENT_COLS), key):
            return
        rows = list(events.select(_EVENT_COLS).iter_rows())
        self._insert("alert_events", _EVENT_COLS, rows, key)

    def _insert_frame(self, table: str, frame: pl.DataFrame, key: str) -> bool:
        """Bulk insert of a whole frame, where the backend can (False: use row inserts)."""
        return False

    def record_notifications(self, notes: Sequence[dict[str, Any]]) -> None:
        """Append notifications (one row each; the whole message as JSON in ``body``)."""
        cols = ["id", "receiver", "group_key", "status", "severity", "summary", "at", "alerts", "body"]
        rows = [
            (
                n["id"],
                n["receiver"],
                n["group_key"],
                n["status"],
                n["severity"],
                n["summary"],
                _dt(n["at"]),
                len(n["alerts"]),
                json.dumps(n, sort_keys=True, default=str),
            )
            for n in notes
        ]
        self._insert("alert_notifications", cols, rows, "id")

    def record_feedback(self, row: dict[str, Any]) -> None:
        """Append one feedback label (acknowledged, true_positive, false_positive)."""
        cols = ["fingerprint", "rule", "label", "by_whom", "note", "at", "event_time"]
        values = (row["fingerprint"], row["rule"], row["label"], row["by"], row["note"], _dt(row["at"]))
        self._insert("alert_feedback", cols, [(*values, _dt(row["event_time"]))], "")

    def record_silence(self, silence: Any, *, at: datetime | None = None) -> None:
        """Append a :class:`~workbench.alerts.matchers.Silence` as created or changed (expiry: a new row)."""
        from datetime import UTC

        def when(ms: int) -> datetime:
            return datetime.fromtimestamp(ms / 1000, UTC)

        cols = ["silence_id", "matchers", "starts_at", "ends_at", "created_by", "comment", "at"]
        matchers = ", ".join(str(m) for m in silence.matchers)
        row = (silence.silence_id, matchers, when(silence.starts_at), when(silence.ends_at))
        self._insert("alert_silences", cols, [(*row, silence.created_by, silence.comment, at)], "")

    # -- reading --------------------------------------------------------------------
    def _frame(self, table: str, where: dict[str, Any], since: datetime | None, until: datetime | None) -> pl.DataFrame:
        clauses, params = [], []
        for col, value in where.items():
            if value is not None:
                clauses.append(f"{col} = {self.placeholder}")
                params.append(value)
        if since is not None:
            clauses.append(f'"at" >= {self.placeholder}')
            params.append(since)
        if until is not None:
            clauses.append(f'"at" < {self.placeholder}')
            params.append(until)
        sql = f"SELECT * FROM {self.prefix}{table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += ' ORDER BY "at"' + (", fingerprint, to_state" if table == "alert_events" else "")
        try:
            with self._lock:
                cols, rows = self._query(sql, params)
        except Exception as exc:
            raise StoreError(f"{self.name}: cannot read {table}: {exc}") from exc
        schema = _SCHEMAS[table]
        frame = pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None) if rows else None
        if frame is None:
            return pl.DataFrame(schema=schema)
        casts = []
        for c, t in schema.items():
            if t == TS and isinstance(frame.schema[c], pl.Datetime):
                casts.append(pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("ms"))
            else:
                casts.append(pl.col(c).cast(t))
        return frame.select(casts)

    def events(
        self,
        *,
        rule: str | None = None,
        fingerprint: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pl.DataFrame:
        """Every recorded transition, oldest first (filters optional)."""
        return self._frame("alert_events", {"rule": rule, "fingerprint": fingerprint}, since, until)

    def notifications(self, *, receiver: str | None = None, since: datetime | None = None) -> pl.DataFrame:
        """Every recorded notification, oldest first."""
        return self._frame("alert_notifications", {"receiver": receiver}, since, None)

    def feedback(self, *, fingerprint: str | None = None, rule: str | None = None) -> pl.DataFrame:
        """Every recorded feedback label, oldest first."""
        return self._frame("alert_feedback", {"fingerprint": fingerprint, "rule": rule}, None, None)

    def silences(self) -> pl.DataFrame:
        """Every recorded silence change (creation, expiry), oldest first."""
        return self._frame("alert_silences", {}, None, None)

    def precision(self, *, rule: str | None = None) -> float | None:
        """True / (true + false) positives over the latest label of each alert; ``None`` without labels."""
        fb = self.feedback(rule=rule).filter(pl.col("label").is_in(["true_positive", "false_positive"]))
        if fb.height == 0:
            return None
        latest = fb.group_by("fingerprint").agg(pl.col("label").last())
        return float((latest["label"] == "true_positive").mean())  # type: ignore[arg-type]


def _check_schema(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ConfigError(f"alert store: schema must be a plain SQL identifier, not {name!r}")
    return name


class DuckDBStore(AlertStore):
    """Embedded alert store in a DuckDB file (or ``:memory:``)."""

    name = "duckdb"

    def __init__(self, path: str | Path = ":memory:", *, schema: str = "main") -> None:
        import duckdb

        super().__init__()
        self.path = str(path)
        self.schema = _check_schema(schema)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.name = f"duckdb {self.path}"
        try:
            self._con = duckdb.connect(self.path)
            self._con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error as exc:
            raise StoreError(f"alert store {self.path}: cannot open ({exc})") from exc
        if schema != "main":
            self._execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self._create()

    @property
    def prefix(self) -> str:  # noqa: D102
        return f"{self.schema}."

    def _execute(self, sql: str, rows: Sequence[Sequence[Any]] | None = None) -> None:
        if rows is None:
            self._con.execute(sql)
        else:
            self._con.executemany(sql, [list(r) for r in rows])

    def _query(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self._con.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()

    def _insert_frame(self, table: str, frame: pl.DataFrame, key: str) -> bool:  # noqa: D102
        # DuckDB scans the Arrow table directly: one statement for a storm of 20,000 events
        names = ", ".join(f'"{c}"' for c in frame.columns)
        try:
            with self._lock:
                self._con.register("__wb_rows", frame.to_arrow())
                try:
                    self._con.execute(
                        f"INSERT INTO {self.prefix}{table} ({names}) SELECT {names} FROM __wb_rows "
                        f"ON CONFLICT ({key}) DO NOTHING"
                    )
                finally:
                    self._con.unregister("__wb_rows")
        except Exception as exc:
            raise StoreError(f"{self.name}: cannot write {frame.height} row(s) to {table}: {exc}") from exc
        return True

    def close(self) -> None:  # noqa: D102
        self._con.close()


class PostgresStore(AlertStore):
    """Alert store in PostgreSQL (psycopg 3), in its own schema (created when missing).

    Parameters
    ----------
    dsn
        e.g. ``postgresql://root@127.0.0.1:5432/test``.
    schema
        Schema holding the three tables.
    """

    placeholder = "%s"

    def __init__(self, dsn: str, *, schema: str = "workbench_alerts") -> None:
        import psycopg

        super().__init__()
        self.dsn = dsn
        self.schema = _check_schema(schema)
        self.name = f"postgresql {re.sub(r'//[^@/]*@', '//', dsn)} schema {schema}"
        try:
            self._con = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"alert store {self.name}: cannot connect ({exc})") from exc
        self._execute("SET TIME ZONE 'UTC'")
        self._execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self._create()

    @property
    def prefix(self) -> str:  # noqa: D102
        return f"{self.schema}."

    def _execute(self, sql: str, rows: Sequence[Sequence[Any]] | None = None) -> None:
        with self._con.cursor() as cur:
            if rows is None:
                cur.execute(sql)
            else:
                cur.executemany(sql, rows)

    def _query(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._con.cursor() as cur:
            cur.execute(sql, params)
            return [d.name for d in cur.description or []], cur.fetchall()

    def drop(self) -> None:
        """Drop the store's schema and everything in it."""
        self._execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def close(self) -> None:  # noqa: D102
        self._con.close()


def open_store(url: str | Path | None) -> AlertStore:
    """``postgresql://…`` (``?schema=name`` optional) → :class:`PostgresStore`; a path or ``:memory:`` → DuckDB.

    Examples
    --------
    >>> open_store(":memory:").name
    'duckdb :memory:'
    """
    text = str(url) if url is not None else ":memory:"
    if text.startswith(("postgresql://", "postgres://")):
        m = re.search(r"[?&]schema=([^&]+)", text)
        dsn = re.sub(r"[?&]schema=[^&]+", "", text)
        return PostgresStore(dsn, schema=m.group(1) if m else "workbench_alerts")
    return DuckDBStore(text)

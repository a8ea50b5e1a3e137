"""The run history of scheduled jobs, in an embedded DuckDB file.

One row per run: job, scheduled time, start, end, status, output, error, and how
many fire times it stands for (``coalesced`` > 1 after downtime). Statuses:
``running``, ``ok``, ``failed``, ``skipped`` (the previous run of the job was still
going) and ``interrupted`` (the scheduler stopped while it ran).

Each call opens the file for its own short transaction, so ``workbench schedule
list`` can read while ``workbench schedule run`` writes (DuckDB lets one process
hold a file at a time; a busy file is retried for a few seconds). Times are stored
as UTC and read back as aware datetimes.

Examples
--------
>>> import tempfile
>>> from datetime import UTC, datetime
>>> h = RunHistory(Path(tempfile.mkdtemp()) / "runs.duckdb")
>>> t = datetime(2024, 1, 1, 6, tzinfo=UTC)
>>> run = h.start("daily", scheduled=t, started=t)
>>> h.finish(run, ended=t, status="ok", output="reports/daily.html")
>>> h.runs().select("job", "status", "output").row(0)
('daily', 'ok', 'reports/daily.html')
>>> h.last_scheduled("daily") == t
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import ConfigError

__all__ = ["STATUSES", "RunHistory"]

STATUSES = ("running", "ok", "failed", "skipped", "interrupted")

_SCHEMA = """
create sequence if not exists run_ids start 1;
create table if not exists runs (
    id bigint primary key default nextval('run_ids'),
    job varchar not null,
    scheduled timestamp not null,
    started timestamp,
    ended timestamp,
    status varchar not null,
    output varchar,
    error varchar,
    coalesced integer not null default 1
);
"""
_BUSY_WAIT_S = 10.0


def _naive_utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise ConfigError(f"run history: times must be timezone-aware, not {t!r}")
    return t.astimezone(UTC).replace(tzinfo=None)


class RunHistory:
    """Runs of scheduled jobs in the DuckDB file ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(_SCHEMA)

    @contextmanager
    def _connect(self, *, read_only: bool = False) -> Iterator[Any]:
        import duckdb

        if read_only and not self.path.exists():
            raise ConfigError(f"run history: no file at {str(self.path)!r}")
        deadline = time.monotonic() + _BUSY_WAIT_S
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:  # another process holds the file: wait for its transaction
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            yield con
        finally:
            con.close()

    def _write(self, sql: str, params: list[Any]) -> Any:
        with self._lock, self._connect() as con:
            return con.execute(sql, params).fetchone()

    def start(self, job: str, *, scheduled: datetime, started: datetime, coalesced: int = 1) -> int:
        """Record a run that starts now; returns its id."""
        row = self._write(
            "insert into runs (job, scheduled, started, status, coalesced) values (?, ?, ?, 'running', ?) returning id",
            [job, _naive_utc(scheduled), _naive_utc(started), coalesced],
        )
        return int(row[0])

    def finish(
        self, run: int, *, ended: datetime, status: str, output: str | None = None, error: str | None = None
    ) -> None:
        """Record how run ``run`` ended (``ok`` or ``failed``)."""
        if status not in ("ok", "failed"):
            raise ConfigError(f"run history: a run finishes 'ok' or 'failed', not {status!r}")
        self._write(
            "update runs set ended = ?, status = ?, output = ?, error = ? where id = ?",
            [_naive_utc(ended), status, output, error, run],
        )

    def skip(self, job: str, *, scheduled: datetime, at: datetime, reason: str, coalesced: int = 1) -> int:
        """Record a fire time that did not run (the previous run was still going)."""
        row = self._write(
            "insert into runs (job, scheduled, started, ended, status, error, coalesced) "
            "values (?, ?, ?, ?, 'skipped', ?, ?) returning id",
            [job, _naive_utc(scheduled), _naive_utc(at), _naive_utc(at), reason, coalesced],
        )
        return int(row[0])

    def interrupt(self, at: datetime) -> int:
        """Mark runs left ``running`` by a scheduler that stopped as ``interrupted``; returns how many."""
        with self._lock, self._connect() as con:
            rows = con.execute(
                "update runs set status = 'interrupted', ended = ?, "
                "error = 'the scheduler stopped while this run was going' where status = 'running' returning id",
                [_naive_utc(at)],
            ).fetchall()
        return len(rows)

    def last_scheduled(self, job: str) -> datetime | None:
        """The newest scheduled time recorded for ``job`` (any status)."""
        with self._lock, self._connect() as con:
            row = con.execute("select max(scheduled) from runs where job = ?", [job]).fetchone()
        return row[0].replace(tzinfo=UTC) if row and row[0] is not None else None

    def runs(self, job: str | None = None, *, limit: int = 100, status: str | None = None) -> pl.DataFrame:
        """Recorded runs, newest first, with aware UTC times and ``seconds`` (end − start)."""
        where, params = [], []
        if job is not None:
            where.append("job = ?")
            params.append(job)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = (
            "select id, job, scheduled, started, ended, status, output, error, coalesced from runs"
            + (f" where {' and '.join(where)}" if where else "")
            + " order by scheduled desc, id desc limit ?"
        )
        with self._lock, self._connect(read_only=True) as con:
            frame = con.sql(sql, params=[*params, int(limit)]).pl()
        times = ["scheduled", "started", "ended"]
        frame = frame.with_columns(pl.col(times).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        return frame.with_columns(
            ((pl.col("ended") - pl.col("started")).dt.total_milliseconds() / 1000).alias("seconds")
        )

    def counts(self, job: str | None = None) -> dict[str, int]:
        """Runs by status."""
        sql = "select status, count(*) from runs" + (" where job = ?" if job else "") + " group by 1"
        with self._lock, self._connect(read_only=True) as con:
            rows = con.execute(sql, [job] if job else []).fetchall()
        return {status: int(n) for status, n in rows}

    def __repr__(self) -> str:
        return f"RunHistory({str(self.path)!r})"

"""PostgreSQL's commit row: written with the rows in one transaction, checked on every resume.

A real PostgreSQL and a real Redis stream on loopback. Each table's commit row in
``<schema>.workbench_commits`` says which epoch of which run the table holds; a resume
takes over its run's row, and a table that lost output its checkpoint counts as
written (restored from an older backup, truncated) is refused, not silently resumed
with a hole.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
import pytest
from connectors import DSN, RedisPub, events, pg_drop, pg_windows, tag

from workbench.errors import CheckpointError, SinkError
from workbench.pipeline.ingest import ingest
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.postgres import COMMITS, PostgresSink

pytestmark = pytest.mark.services


def _commits(schema: str) -> list[tuple[str, str, str, int, int]]:
    with psycopg.connect(DSN) as c:
        return [
            (str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]))
            for r in c.execute(f'select run, pipeline, "table", epoch, "rows" from {schema}.{COMMITS} order by run')
        ]


def _checkpoint_epoch(out: Path) -> int:
    state = CheckpointStore(out / "checkpoint").load()
    assert state is not None
    return int(state["epoch"])


@pytest.fixture
def stream():
    pub = RedisPub()
    schema = f"wbtest_{tag()}"
    try:
        yield pub, schema
    finally:
        pub.cleanup()
        pg_drop(schema)


def _ingest(pub: RedisPub, out: Path, schema: str, **kwargs) -> dict:
    return ingest(
        pub.url, out, postgres=DSN, pg_schema=schema, lateness="1s", checkpoint_every=0.3, seconds=4, **kwargs
    )


def test_the_commit_row_follows_the_checkpoint_and_a_resume_keeps_its_run(stream, tmp_path):
    pub, schema = stream
    out = tmp_path / "run"
    pub.publish(events(0, 1500))
    _ingest(pub, out, schema)
    (run, pipeline, table, epoch, _rows) = _commits(schema)[0]
    assert len(_commits(schema)) == 1 and table == "windows" and pipeline.startswith("ingest:")
    assert epoch == _checkpoint_epoch(out)  # the checkpoint's epoch, written with its rows
    first_rows = pg_windows(schema)[0]
    assert first_rows > 0

    pub.publish(events(1500, 3000))
    _ingest(pub, out, schema)  # resumes from the checkpoint: the same run, a newer epoch
    [(run_again, _, _, epoch_again, _)] = _commits(schema)
    assert run_again == run and epoch_again == _checkpoint_epoch(out) > epoch
    rows, distinct, _ = pg_windows(schema)
    assert rows == distinct > first_rows  # nothing doubled

    _ingest(pub, out, schema, fresh=True)  # a new run: its own row, beside the old one's history
    assert len({r[0] for r in _commits(schema)}) == 2


@pytest.mark.parametrize("how", ["older backup", "truncated"])
def test_a_table_that_lost_committed_output_is_refused(stream, tmp_path, how):
    pub, schema = stream
    out = tmp_path / "run"
    pub.publish(events(0, 1500))
    _ingest(pub, out, schema)
    epoch = _checkpoint_epoch(out)
    assert epoch >= 2
    with psycopg.connect(DSN, autocommit=True) as c:
        if how == "older backup":  # the database restored to how it was two epochs ago
            c.execute(f"update {schema}.{COMMITS} set epoch = epoch - 2")
        else:
            c.execute(f"truncate {schema}.windows, {schema}.{COMMITS}")
    pub.publish(events(1500, 2000))
    with pytest.raises(CheckpointError) as caught:
        _ingest(pub, out, schema)
    message = str(caught.value)
    assert "\n" not in message
    assert f"PostgreSQL table {schema}.windows lost committed output" in message
    assert f"the checkpoint's {epoch}" in message and "--fresh" in message
    found = "none" if how == "truncated" else str(epoch - 2)
    assert f"says epoch {found}" in message


def test_a_failed_upsert_leaves_the_commit_row_where_it_was(stream):
    """The rows and the commit row are one transaction: neither moves without the other."""
    from streamz import Stream

    _, schema = stream
    head = Stream()
    sink = PostgresSink(head, DSN, "events", schema=schema, keys=["event_id"], pipeline="unit")
    try:
        head.emit(pl.DataFrame({"event_id": ["a", "b"], "v": [1.0, 2.0]}))
        sink.commit(1)
        assert sink.last_epoch() == 1 and sink.committed == 1
        head.emit(pl.DataFrame({"event_id": ["c"], "v": ["not a number"]}))  # COPY into a double column fails
        with pytest.raises(psycopg.Error):
            sink.commit(2)
        assert sink.last_epoch() == 1 and sink.committed == 1
        with psycopg.connect(DSN) as c:
            assert c.execute(f"select count(*) from {schema}.events").fetchone() == (2,)
        sink.forget()
        sink.commit(3)  # an epoch without rows still records that the table is at it
        assert sink.last_epoch() == 3
        assert [r[3:] for r in _commits(schema)] == [(3, 0)]
    finally:
        sink.close()


def test_an_unreadable_commit_row_is_one_line(stream):
    from streamz import Stream

    _, schema = stream
    sink = PostgresSink(Stream(), DSN, "events", schema=schema, pipeline="unit")
    sink.close()
    sink._conn = psycopg.connect(DSN)
    sink._conn.close()  # the server went away
    with pytest.raises(SinkError, match=rf"postgres sink '{schema}.events': cannot read its commit row"):
        sink.last_epoch()

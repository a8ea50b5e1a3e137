"""One test module, two alert stores: embedded DuckDB and the local PostgreSQL."""

import uuid
from datetime import UTC, datetime

import polars as pl
import pytest

from workbench.alerts.dispatch import Route
from workbench.alerts.manager import AlertManager
from workbench.alerts.rules import Threshold
from workbench.alerts.store import DuckDBStore, PostgresStore, StoreError, open_store

PG = "postgresql://root@127.0.0.1:5432/test"


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.services)])
def store(request, tmp_path):
    if request.param == "duckdb":
        s = DuckDBStore(tmp_path / "alerts.duckdb")
        yield s
        s.close()
    else:
        s = PostgresStore(PG, schema=f"wb_test_alerts_{uuid.uuid4().hex[:12]}")
        yield s
        s.drop()
        s.close()


def windows(*cpu_by_step):
    return [
        pl.DataFrame({"host": ["a", "b"], "window_end": [(i + 1) * 10_000] * 2, "cpu_mean": list(v)})
        for i, v in enumerate(cpu_by_step)
    ]


def run(store):
    am = AlertManager(
        [Threshold("hot", metric="cpu_mean", value=90, for_="10s", severity="critical", labels={"team": "infra"})],
        routes=[Route(receivers=("ops",), group_wait=0, group_interval="10s")],
        store=store,
        evaluation_interval="10s",  # one evaluation per 10 s window
    )
    for f in windows((95, 10), (95, 95), (95, 95), (10, 95), (10, 10)):
        am.process(f)
    return am


def test_every_transition_is_queryable_in_order(store):
    run(store)
    ev = store.events()
    assert ev.select("fingerprint", "from_state", "to_state").rows() == [
        ("hot/a", "inactive", "pending"),
        ("hot/a", "pending", "firing"),
        ("hot/b", "inactive", "pending"),
        ("hot/b", "pending", "firing"),
        ("hot/a", "firing", "resolved"),
        ("hot/b", "firing", "resolved"),
    ]
    assert ev.schema["at"] == pl.Datetime("ms", "UTC")
    assert ev["at"][0] == datetime(1970, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert '"team": "infra"' in ev["labels"][0]
    assert store.events(fingerprint="hot/b").height == 3
    assert store.events(since=datetime(1970, 1, 1, 0, 0, 40, tzinfo=UTC)).height == 2


def test_notifications_are_stored_once_by_id(store):
    am = run(store)
    notes = store.notifications()
    assert notes["id"].to_list() == [n["id"] for n in am.notifications]
    assert notes["status"].to_list() == ["firing", "firing", "firing", "resolved"]
    store.record_notifications(list(am.notifications))  # a replay after a restart
    assert store.notifications().height == notes.height


def test_replayed_events_are_not_duplicated(store):
    run(store)
    n = store.events().height
    run(store)
    assert store.events().height == n


def test_feedback_and_precision(store):
    am = run(store)
    am2 = AlertManager(am.rules, store=store, evaluation_interval="10s")
    for f in windows((95, 95), (95, 95)):
        am2.process(f)
    am2.acknowledge("hot/a", by="ana", note="on it")
    am2.mark("hot/a", "true_positive", by="ana")
    am2.mark("hot/b", "true_positive", by="bo")
    am2.mark("hot/b", "false_positive", by="bo", note="load test")  # the latest label counts
    fb = store.feedback()
    assert fb.select("fingerprint", "label", "by_whom").rows() == [
        ("hot/a", "acknowledged", "ana"),
        ("hot/a", "true_positive", "ana"),
        ("hot/b", "true_positive", "bo"),
        ("hot/b", "false_positive", "bo"),
    ]
    assert store.precision() == 0.5
    assert store.precision(rule="nope") is None


def test_open_store_by_url(tmp_path):
    s = open_store(tmp_path / "x.duckdb")
    assert isinstance(s, DuckDBStore)
    s.close()


@pytest.mark.services
def test_postgres_url_with_schema_and_a_clear_error_when_down():
    name = f"wb_test_alerts_{uuid.uuid4().hex[:12]}"
    s = open_store(f"{PG}?schema={name}")
    assert isinstance(s, PostgresStore) and s.schema == name
    s.drop()
    s.close()
    with pytest.raises(StoreError, match=r"alert store postgresql postgresql://127\.0\.0\.1:1/test .*cannot connect"):
        PostgresStore("postgresql://root@127.0.0.1:1/test")

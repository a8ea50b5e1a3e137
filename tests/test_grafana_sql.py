"""The README's Grafana section against the tables ``workbench run --postgres --alerts`` really writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://root@127.0.0.1:5432/test"
T0 = datetime(2025, 12, 5, tzinfo=UTC)
RULES = """\
evaluation_interval: 10s
rules:
  - {name: cpu_high, kind: threshold, metric: cpu_mean, op: ">", value: 60, for: 20s, severity: critical}
"""


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Grafana: windows and alerts from PostgreSQL")
    end = text.find("\n## ", start)  # the next section, or the end of the file
    return text[start:] if end < 0 else text[start:end]


def expand(sql: str, frm: str, to: str) -> str:
    """Grafana's macros, as its PostgreSQL data source expands them."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{frm}' AND '{to}'", sql)
    return re.sub(r"\$__timeGroupAlias\(([^,]+), \$__interval\)", r'floor(extract(epoch from \1)/60)*60 AS "time"', sql)


def events(path: Path) -> None:
    """Three hosts for 10 minutes; web-1 hot from minute 3 to 8."""
    t0 = int(T0.timestamp() * 1000)
    with path.open("w") as f:
        for i in range(3000):
            host = f"web-{i % 3}"
            cpu = 90.0 if host == "web-1" and 1000 < i < 2500 else 30.0 + i % 7
            rec = {"event_id": str(i), "ts": t0 + i * 200, "host": host, "cpu": cpu, "mem": 40.0}
            f.write(json.dumps(rec | {"latency_ms": 100.0, "status": 200}) + "\n")


@pytest.mark.services
def test_readme_grafana_queries_run_on_what_workbench_run_writes(tmp_path):
    psycopg = pytest.importorskip("psycopg")
    suffix = uuid.uuid4().hex[:10]
    windows_schema, alerts_schema = f"wb_grafana_{suffix}", f"wb_grafana_alerts_{suffix}"
    events(tmp_path / "events.jsonl")
    (tmp_path / "rules.yaml").write_text(RULES)
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {windows_schema}")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "run", "--source", str(tmp_path / "events.jsonl")]
            + ["--out", str(tmp_path / "out"), "--postgres", PG, "--pg-schema", windows_schema]
            + ["--rules", str(tmp_path / "rules.yaml"), "--alerts-schema", alerts_schema],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert summary["windows"] == 180 and summary["alerts"] == 3

        doc = section()
        queries = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
        assert len(queries) == 5
        with psycopg.connect(PG, autocommit=True) as con:
            # every column the README's table names is in the tables written
            columns = {
                (schema, table): {r[0] for r in rows}
                for (schema, table), rows in _columns(con, [windows_schema, alerts_schema]).items()
            }
            assert columns[(windows_schema, "windows")] == {
                "host", "window_start", "window_end", "count", "cpu_mean", "cpu_max", "mem_mean", "mem_max",
                "latency_mean", "latency_p50", "latency_p95", "latency_p99", "error_rate",
            }  # fmt: skip
            for name in ("fingerprint", "rule", "entity", "from_state", "to_state", "at", "active_at", "value"):
                assert f"`{name}" in doc and name in columns[(alerts_schema, "alert_events")]
            results = []
            for sql in queries:
                sql = sql.replace("public.windows", f"{windows_schema}.windows")
                sql = sql.replace("workbench_alerts.", f"{alerts_schema}.")
                cur = con.execute(expand(sql, "2025-12-05T00:00:00Z", "2025-12-05T01:00:00Z"))
                results.append(([d.name for d in cur.description], cur.fetchall()))
    finally:
        with psycopg.connect(PG, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {windows_schema} CASCADE")
            con.execute(f"DROP SCHEMA IF EXISTS {alerts_schema} CASCADE")

    (series_cols, series), (fleet_cols, fleet), (ann_cols, ann), (now_cols, now), (tl_cols, timeline) = results
    assert series_cols == ["time", "metric", "cpu_mean"] and len(series) == 180
    assert fleet_cols == ["time", "cpu_max", "events"] and sum(r[2] for r in fleet) == 3000
    assert ann_cols == ["time", "timeend", "text", "tags"]
    assert [(r[2], r[3]) for r in ann] == [("cpu_high on web-1", "critical")]
    assert ann[0][0] < ann[0][1]
    assert now_cols[:4] == ["fingerprint", "rule", "entity", "state"] and now == []  # resolved by the end
    assert tl_cols == ["time", "entity", "to_state"]
    assert [r[2] for r in timeline] == ["pending", "firing", "resolved"]


def _columns(con, schemas: list[str]) -> dict[tuple[str, str], list[tuple[str]]]:
    rows = con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns WHERE table_schema = ANY(%s)",
        [schemas],
    ).fetchall()
    out: dict[tuple[str, str], list[tuple[str]]] = {}
    for schema, table, column in rows:
        out.setdefault((schema, table), []).append((column,))
    return out

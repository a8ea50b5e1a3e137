"""``workbench run --source`` and ``workbench bench connectors`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from connectors import free_port

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_run_with_a_refused_broker_prints_one_line_naming_url_and_cause(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/events?group=wb"
    result = _cli("run", "--source", url, "--out", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"workbench: error: source '{url}': cannot connect") and "refused" in lines[0]


def test_serve_refuses_a_malformed_source_url_before_starting() -> None:
    result = _cli("serve", "--source", "mqtt://127.0.0.1:1883")
    assert result.returncode == 2 and "no topic" in result.stderr


@pytest.mark.services
@pytest.mark.slow  # a private redis-server and a publisher process
def test_bench_connectors_reports_both_rates_and_completes() -> None:
    result = _cli("bench", "connectors", "--events", "3000", "--connectors", "redis", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    redis = report["redis"]
    assert redis["complete"] and redis["windowed"] == 3000
    assert redis["publish_events_per_s"] > 0 and redis["pipeline_events_per_s"] > 0

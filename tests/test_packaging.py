"""Packaging contracts: dependency lists agree, the public surface is pinned, layers hold."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import workbench

from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI names
CONDA_NAMES = {"python-duckdb": "duckdb", "redis-py": "redis", "python-confluent-kafka": "confluent-kafka"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pypi = {_name(r) for r in project["project"]["dependencies"]}
    pypi |= {_name(r) for r in project["dependency-groups"]["dev"]}
    conda = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.-]+)", line)
        if m and m.group(1) != "python":
            conda.add(CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower()))
    assert conda == pypi


def test_lock_file_is_present_and_current():
    assert (ROOT / "uv.lock").exists()
    result = subprocess.run(["uv", "lock", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_public_api_is_pinned():
    assert sorted(workbench.__all__) == sorted(
        [
            "NETWORK_FLOWS",
            "SERVER_METRICS",
            "USER_EVENTS",
            "CheckpointError",
            "CheckpointStore",
            "ConfigError",
            "Field",
            "FileSource",
            "Lake",
            "ManualClock",
            "Pipeline",
            "Project",
            "RawBatch",
            "Schema",
            "SchemaError",
            "Session",
            "Simulator",
            "Sliding",
            "Source",
            "SourceError",
            "SystemClock",
            "Tumbling",
            "WorkbenchError",
            "aggregations",
            "get_schema",
            "replay",
            "write_simulation",
        ]
    )
    for name in workbench.__all__:
        assert hasattr(workbench, name), name


def test_nothing_below_views_imports_panel_or_bokeh():
    code = (
        "import sys, workbench, workbench.pipeline, workbench.replay, workbench.bench, workbench.cli, "
        "workbench.testing, workbench.sources.simulator, workbench.views.live, "
        "workbench.views.feed, workbench.evaluate.run\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('panel', 'bokeh', 'holoviews'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_the_package_has_no_side_effects(tmp_path):
    code = "import workbench, os; print(sorted(os.listdir('.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_is_declared_and_runs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["workbench"] == "workbench.cli:main"
    out = cli("--help")
    assert out.returncode == 0
    for command in ("replay", "simulate", "query", "bench", "serve"):
        assert command in out.stdout

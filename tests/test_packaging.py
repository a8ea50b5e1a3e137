"""Packaging contracts: dependency lists agree, the public surface is pinned, layers hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import workbench

from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI names
CONDA_NAMES = {
    "python-duckdb": "duckdb",
    "redis-py": "redis",
    "python-confluent-kafka": "confluent-kafka",
    "prometheus_client": "prometheus-client",
    "python-xxhash": "xxhash",
}


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
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")  # where `make` installs it
    result = subprocess.run([uv, "lock", "--check"], cwd=ROOT, capture_output=True, text=True)
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
            "notebook",
            "replay",
            "write_simulation",
        ]
    )
    for name in workbench.__all__:
        assert hasattr(workbench, name), name


def test_nothing_below_views_imports_panel_or_bokeh():
    code = (
        "import sys, workbench, workbench.pipeline, workbench.pipeline.replay, workbench.bench, workbench.cli, "
        "workbench.testing, workbench.sources.simulator, workbench.feeds.live, workbench.pipeline.core, "
        "workbench.pipeline.nodes, workbench.pipeline.alerting, workbench.pipeline.ingest, "
        "workbench.feeds.feed, workbench.evaluate.run, workbench.models.catalog\n"
        "workbench.cli.build_parser()\n"
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


def test_a_wrong_argument_is_one_line_naming_the_option_and_the_value():
    for args, names in (
        (["replay", "e.jsonl", "--max-rows", "many"], ["workbench replay: error:", "--max-rows", "'many'"]),
        (["bench", "checkpoint", "--keys", "x"], ["workbench bench checkpoint: error:", "--keys", "'x'"]),
        (["run", "--bogus"], ["workbench: error:", "--bogus"]),
        ([], ["workbench: error:", "command"]),
    ):
        done = cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (args, done.stderr)
        assert all(n in lines[0] for n in names) and "--help` lists the options" in lines[0], lines
    done = cli("bench", "redis://ops:hunter2@broker/x")  # the value is echoed: its password is not
    assert done.returncode == 2 and "hunter2" not in done.stderr and "ops:***@broker" in done.stderr


def test_the_command_starts_without_the_engine():
    """``workbench --help`` and every sub-command's parser import no polars, river, streamz or panel."""
    code = (
        "import sys, workbench, workbench.cli\n"
        "workbench.cli.build_parser()\n"
        "heavy = ('polars', 'river', 'streamz', 'panel', 'bokeh', 'numpy', 'duckdb', 'pyarrow', 'jupyter_client')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_layout_follows_the_layers():
    """Benchmarks live in ``workbench/bench/`` only; the assembly layer is a package."""
    package = ROOT / "workbench"
    home = package / "bench"
    stray = [p for p in package.rglob("bench*") if p != home and home not in p.parents]
    assert stray == []
    assert (package / "pipeline" / "__init__.py").exists()
    assert (package / "feeds" / "__init__.py").exists()


def test_the_import_contract_is_configured_and_kept():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = project["tool"]["importlinter"]["contracts"]
    assert any(c["type"] == "layers" for c in contracts)
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_panel_is_banned_below_the_presentation_layer():
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    banned = ruff["flake8-tidy-imports"]["banned-api"]
    assert {"panel", "bokeh", "holoviews"} <= set(banned)
    allowed = {k for k, v in ruff["per-file-ignores"].items() if "TID251" in v}
    assert not any(k.startswith(("workbench/pipeline", "workbench/feeds", "workbench/models")) for k in allowed)


#: ``panel serve`` scripts: importing one starts the live pipeline (with the checkout's settings)
SERVED_SCRIPTS = {"workbench.apps.monitor_app", "workbench.apps.setup_live"}


def test_every_exception_class_is_in_the_tree_of_errors_py():
    import importlib
    import pkgutil

    import workbench.errors

    for info in pkgutil.walk_packages(workbench.__path__, "workbench."):
        if info.name.rsplit(".", 1)[-1].startswith("_") or ".bench." in info.name or info.name in SERVED_SCRIPTS:
            continue
        importlib.import_module(info.name)
    seen, todo = set(), [workbench.errors.WorkbenchError, workbench.errors.WorkbenchWarning]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo.extend(c for c in cls.__subclasses__() if c.__module__.startswith("workbench.") and c not in seen)
    # a private class (``_KeyError``) is caught in its own module and never leaves it
    public = [c for c in seen if not c.__name__.startswith("_")]
    missing = sorted(c.__name__ for c in public if c.__name__ not in (workbench.errors.__doc__ or ""))
    assert missing == []

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def metric(i: int, *, host: str = "h1", seconds: float | None = None, **over) -> dict:
    """One valid server_metrics record as a dict."""
    ts = T0 + timedelta(seconds=i if seconds is None else seconds)
    rec = {
        "event_id": f"e{i}",
        "ts": int(ts.timestamp() * 1000),
        "host": host,
        "cpu": 10.0 + i % 50,
        "mem": 40.0,
        "latency_ms": 100.0 + i,
        "status": 500 if i % 10 == 0 else 200,
        "service": "web",
        "region": "eu-west-1",
    }
    rec.update(over)
    return rec


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    """Run ``workbench ARGS…`` as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)], capture_output=True, text=True)


def line(rec: dict) -> bytes:
    return json.dumps(rec).encode() + b"\n"


@pytest.fixture
def metric_lines():
    return lambda n, **kw: b"".join(line(metric(i, **kw)) for i in range(n))


SESSION_ARGS = ["--check-unused-sessions", "1000", "--unused-session-lifetime", "1000"]


@contextlib.contextmanager
def serving(log_name: str = "serve.log", **env: str):
    """``workbench serve`` on a free port (``env``: more ``WORKBENCH_*`` settings); the /monitor URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    artifacts = Path(__file__).parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log = open(artifacts / log_name, "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        # ended sessions are freed within ~2 s here (the multi-session test counts them)
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--", *SESSION_ARGS],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # the multi-session tests open dozens of pages from one client (loopback) within a minute:
        # above the per-client page limit a real user meets (60/min, tested in test_serve_security)
        env={**os.environ, "WORKBENCH_PAGE_RATE": "2000", "WORKBENCH_PROBE_RATE": "2000", **env},
    )
    url = f"http://localhost:{port}/monitor"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30):
                break
        except OSError:
            time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def served_monitor():
    """``workbench serve`` with the default settings, shared by the tests that only look."""
    with serving() as url:
        yield url

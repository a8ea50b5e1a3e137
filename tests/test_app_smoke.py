"""Smoke test: `workbench serve` serves the live monitor at /monitor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_monitor_page():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        body = ""
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/monitor", timeout=30) as r:
                    body = r.read().decode()
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        assert "Workbench" in body and "bokeh" in body.lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)

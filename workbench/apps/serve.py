"""``workbench serve``: ``panel serve`` with sensible defaults for the monitor app."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["app_path", "serve_command", "serve"]


def app_path() -> Path:
    """The served app file: ``apps/monitor.py`` of a checkout, else the package's copy."""
    checkout = Path.cwd() / "apps" / "monitor.py"
    return checkout if checkout.exists() else Path(__file__).with_name("monitor_app.py")


def serve_command(
    *,
    port: int = 5006,
    address: str = "localhost",
    allow_origin: str | None = None,
    show: bool = False,
    extra: list[str] | None = None,
) -> list[str]:
    """The ``panel serve`` command line."""
    origins = {f"localhost:{port}", f"127.0.0.1:{port}", f"{address}:{port}"}
    if allow_origin:
        origins.add(allow_origin)
    cmd = [
        sys.executable,
        "-m",
        "panel",
        "serve",
        str(app_path()),
        "--port",
        str(port),
        "--address",
        address,
        "--setup",
        str(Path(__file__).with_name("setup_live.py")),
        "--num-procs",
        "1",
        "--plugins",
        "workbench.apps.routes",
        # an ended session (tab closed, connection lost) is freed within ~20 s;
        # reconnect=True lets a page reconnect to its session before that
        "--check-unused-sessions",
        "5000",
        "--unused-session-lifetime",
        "15000",
        "--keep-alive",
        "10000",
    ]
    for origin in sorted(origins):
        cmd += ["--allow-websocket-origin", origin]
    if show:
        cmd.append("--show")
    return cmd + list(extra or [])


def serve(**kwargs: Any) -> int:
    """Run ``panel serve`` in the foreground; returns its exit code.

    ``source`` (a URL, e.g. ``prometheus://127.0.0.1:9100/metrics``) replaces the
    simulator as the live pipeline's source; ``schema`` (a built-in name or a schema
    file) is what its events follow; ``rules`` (a rules file, or a project file's
    inline rules) is evaluated on the live windows instead of the demo rules. They
    reach the served process through its environment (``WORKBENCH_SOURCE``,
    ``WORKBENCH_SCHEMA``, ``WORKBENCH_RULES``).
    """
    extra = kwargs.pop("extra", None) or []
    source = kwargs.pop("source", None)
    schema = kwargs.pop("schema", None)
    rules = kwargs.pop("rules", None)
    if rules:
        from workbench.alerts.loader import load_config

        load_config(rules)  # a bad rules file fails here, with one message, not in the server
    if schema:
        from workbench.schema import get_schema

        s = get_schema(schema)  # a bad schema file fails here, with one message
        schema = str(Path(s.path).resolve()) if s.path else s.name
    cmd = serve_command(extra=[a for a in extra if a != "--"], **kwargs)
    print("serving:", " ".join(cmd), flush=True)  # noqa: T201 - the CLI tells the user what runs
    env = server_env()
    if source:
        from workbench.sources.factory import from_url

        from_url(source)  # a malformed URL fails here, with one message, not in the server
        env["WORKBENCH_SOURCE"] = source
    if schema:
        env["WORKBENCH_SCHEMA"] = schema
    inline = None
    if isinstance(rules, Mapping):  # a project file's inline rules: a file for the server's lifetime
        import tempfile

        import yaml

        fd, inline = tempfile.mkstemp(prefix="workbench-rules-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(dict(rules), f)
        rules = inline
    if rules:
        env["WORKBENCH_RULES"] = str(Path(rules).resolve())
    try:
        return subprocess.call(cmd, env=env)
    finally:
        if inline is not None:
            Path(inline).unlink(missing_ok=True)


def server_env() -> dict[str, str]:
    """The server's environment: memory freed when sessions end goes back to the OS.

    Python's small-object allocator keeps an arena while one object in it lives, so a
    burst of sessions leaves RSS high long after they end; with ``PYTHONMALLOC=malloc``,
    Arrow's buffers (the pandas frames sent to the browser) on the system allocator,
    and two glibc arenas, the heap trim done after sessions end can return it.
    """
    env = dict(os.environ)
    env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    env.setdefault("PYTHONMALLOC", "malloc")
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env

"""``workbench serve``: ``panel serve`` with sensible defaults for the monitor app."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["app_path", "banner", "serve", "serve_command", "serve_setup"]


def app_path() -> Path:
    """The served app file: ``apps/monitor.py`` of a checkout, else the package's copy."""
    checkout = Path.cwd() / "apps" / "monitor.py"
    return checkout if checkout.exists() else Path(__file__).with_name("monitor_app.py")


def origins(port: int, address: str, allow_origin: str | list[str] | None = None) -> list[str]:
    """The exact ``host:port`` origins (and Host headers) the server accepts."""
    found = {f"localhost:{port}", f"127.0.0.1:{port}"}
    if address not in ("0.0.0.0", "::", ""):
        found.add(f"{address}:{port}")
    extra = [allow_origin] if isinstance(allow_origin, str) else list(allow_origin or [])
    return sorted(found | set(extra))


def serve_command(
    *,
    port: int = 5006,
    address: str = "localhost",
    allow_origin: str | list[str] | None = None,
    show: bool = False,
    extra: list[str] | None = None,
    auth_module: bool = False,
    tls: tuple[str, str] | None = None,
    behind_proxy: bool = False,
    xsrf: bool = True,
) -> list[str]:
    """The ``panel serve`` command line (it holds no secret: those go through the environment)."""
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
    for origin in origins(port, address, allow_origin):
        cmd += ["--allow-websocket-origin", origin]
    if xsrf:
        cmd.append("--enable-xsrf-cookies")
    if auth_module:
        cmd += ["--auth-module", str(Path(__file__).with_name("auth_module.py"))]
    if tls is not None:
        cmd += ["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]]
    if behind_proxy:
        cmd.append("--use-xheaders")
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
    extra = [a for a in kwargs.pop("extra", None) or [] if a != "--"]
    security = kwargs.pop("security", None) or {}
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
    env = server_env()
    setup = serve_setup(
        port=kwargs.get("port", 5006),
        address=kwargs.get("address", "localhost"),
        allow_origin=kwargs.get("allow_origin"),
        extra=extra,
        env=env,
        **security,
    )
    command: dict[str, Any] = setup.pop("command")  # type: ignore[assignment]
    cmd = serve_command(extra=extra, **kwargs, **command)
    print(banner(str(setup["profile"]), kwargs.get("address", "localhost"), str(setup["auth"])), flush=True)  # noqa: T201
    print("serving:", " ".join(cmd), flush=True)  # noqa: T201 - the CLI tells the user what runs
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
        return run_server(cmd, env)
    finally:
        if inline is not None:
            Path(inline).unlink(missing_ok=True)


def run_server(cmd: list[str], env: Mapping[str, str]) -> int:
    """Run the server in the foreground and end with it: its exit code, or KeyboardInterrupt after Ctrl-C.

    SIGTERM and SIGHUP are passed on and the server is waited for, so a supervisor that
    stops ``workbench serve`` sees it exit only when the server has checkpointed and
    let go of its files (the served app's DuckDB store is locked while it runs). Ctrl-C
    reaches the server from the terminal too; ``kill -INT`` on this process alone is
    passed on. The server is never killed: it ends its run.
    """
    import signal
    import threading

    child = subprocess.Popen(cmd, env=dict(env))
    # signal handlers can only be set in the main thread (a caller's thread just waits)
    main = threading.current_thread() is threading.main_thread()
    passed = (signal.SIGTERM, signal.SIGHUP) if main else ()
    previous = {s: signal.signal(s, lambda signum, _frame: child.send_signal(signum)) for s in passed}
    interrupted = False
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                interrupted = True
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if interrupted:
        raise KeyboardInterrupt
    return code


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


def banner(profile: str, address: str, auth: str) -> str:
    """The first line ``workbench serve`` prints: the profile, and in dev that it is not for a network."""
    if profile == "prod":
        return f"workbench serve --profile prod: {auth}; every action checked and audited"
    return (
        f"workbench serve (dev profile, {auth}): for this machine only, NOT for a network; "
        "serve a team with --profile prod (README: Serving for a team)"
    )


def _secret(env: dict[str, str], kind: str, file: str | None, *, create: bool) -> str | None:
    """A secret's hex from ``--…-file``, ``WORKBENCH_<KIND>_KEY(_FILE)``, or (``create``) random for this run."""
    import secrets

    from workbench.storage.keys import load_key

    if file:
        env[f"WORKBENCH_{kind.upper()}_KEY_FILE"] = file
    if any(env.get(f"WORKBENCH_{kind.upper()}_KEY{s}") for s in ("", "_FILE")):
        return load_key(kind, env=env).material.hex()
    return secrets.token_hex(32) if create else None


def serve_setup(
    *,
    port: int,
    address: str,
    allow_origin: str | list[str] | None,
    extra: list[str],
    env: dict[str, str],
    profile: str = "dev",
    credentials: str | None = None,
    oauth_provider: str | None = None,
    oauth_roles: str | None = None,
    cookie_secret_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    behind_proxy: bool = False,
    xsrf: bool = True,
    lake: str | None = None,
) -> dict[str, object]:
    """Check the profile (a ``ConfigError`` naming each refused setting and its fix) and fill ``env``.

    The server gets its secrets through ``env`` only: the cookie secret
    (``BOKEH_COOKIE_SECRET``/``PANEL_COOKIE_SECRET``), the session-signing key
    (``BOKEH_SECRET_KEY``, random per start unless ``WORKBENCH_SESSION_KEY(_FILE)`` is
    set) and the policy (``WORKBENCH_SERVE_POLICY``, no secret in it).
    """
    from workbench.apps.access import Policy
    from workbench.errors import ConfigError
    from workbench.security.audit import audit_path
    from workbench.security.credentials import Credentials
    from workbench.security.profile import ServeOptions, problems

    credentials = credentials or env.get("WORKBENCH_CREDENTIALS") or None
    cookie = _secret(env, "cookie", cookie_secret_file, create=False)
    allowed = origins(port, address, allow_origin)
    options = ServeOptions(
        profile=profile,
        address=address,
        origins=[allow_origin] if isinstance(allow_origin, str) else list(allow_origin or []),
        credentials=credentials,
        oauth_provider=oauth_provider,
        cookie_secret=cookie is not None,
        oauth_encryption_key=bool(env.get("PANEL_OAUTH_ENCRYPTION")),
        xsrf=xsrf,
        signed_sessions="unsigned" not in extra,
        tls_cert=tls_cert,
        tls_key=tls_key,
        behind_proxy=behind_proxy,
        extra=tuple(extra),
    )
    found = problems(options)
    if found:
        raise ConfigError(f"serve --profile {profile}: refused to start:\n  " + "\n  ".join(str(p) for p in found))
    if credentials:
        Credentials(credentials).users()  # a missing or unreadable file fails here, with one message
    roles: dict[str, object] = {}
    if oauth_roles:
        import yaml

        roles = yaml.safe_load(Path(oauth_roles).read_text()) or {}
    cookie = cookie or _secret(env, "cookie", None, create=True)
    assert cookie is not None
    env["BOKEH_COOKIE_SECRET"] = env["PANEL_COOKIE_SECRET"] = cookie
    env["BOKEH_SECRET_KEY"] = _secret(env, "session", None, create=True) or ""
    env["BOKEH_SIGN_SESSIONS"] = "yes"
    env["BOKEH_XSRF_COOKIES"] = "yes" if xsrf else "no"
    if oauth_provider:
        env["PANEL_OAUTH_PROVIDER"] = oauth_provider
    policy = Policy(
        profile=profile,
        hosts=tuple(allowed),
        credentials=str(Path(credentials).resolve()) if credentials else None,
        oauth=bool(oauth_provider),
        oauth_roles=dict(roles),
        tls=bool(tls_cert and tls_key),
        behind_proxy=behind_proxy,
        audit=str(audit_path(env, near=Path(lake) if lake else Path(env.get("WORKBENCH_LAKE", "data/lake"))).resolve()),
        page_rate=int(env.get("WORKBENCH_PAGE_RATE", "60")),
        probe_rate=int(env.get("WORKBENCH_PROBE_RATE", "120")),
        login_rate=int(env.get("WORKBENCH_LOGIN_RATE", "10")),
        dev_role=env.get("WORKBENCH_DEV_ROLE", "admin"),
    )
    env["WORKBENCH_SERVE_POLICY"] = policy.to_env()
    auth = (
        f"users of {credentials}"
        if credentials
        else f"OAuth ({oauth_provider})"
        if oauth_provider
        else "no sign-in: everyone is the local user"
    )
    return {
        "profile": profile,
        "auth": auth,
        "command": {
            "auth_module": bool(credentials),
            "tls": (tls_cert, tls_key) if tls_cert and tls_key else None,
            "behind_proxy": behind_proxy,
            "xsrf": xsrf,
        },
    }

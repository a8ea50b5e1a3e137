"""``workbench serve`` (the monitoring app, by ``panel serve``), ``workbench users`` and ``workbench doctor``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``serve``, ``users`` and ``doctor`` to the ``workbench`` sub-parsers ``sub``."""
    v = sub.add_parser("serve", help="serve the monitoring app (panel serve with sensible defaults)")
    v.add_argument("--port", type=int, default=5006)
    v.add_argument("--address", default="localhost")
    v.add_argument(
        "--allow-origin", action="append", default=None, help="extra exact websocket origin HOST:PORT (repeatable)"
    )
    v.add_argument("--show", action="store_true", help="open a browser")
    v.add_argument(
        "--source", help="live source URL instead of the simulator, e.g. prometheus://127.0.0.1:9100/metrics"
    )
    v.add_argument("--schema", help="built-in schema name or schema file S.yaml of the --source events")
    v.add_argument("--rules", help="alert rules file evaluated on the live windows instead of the demo rules")
    v.add_argument("--project", help="serve a project file's live source, schema, port and address")
    g = v.add_argument_group("security (README: Serving for a team)")
    g.add_argument(
        "--profile",
        choices=["dev", "prod"],
        default="dev",
        help="prod refuses to start unless sign-in, exact origins, TLS or loopback … are set (dev: this machine only)",
    )
    g.add_argument("--credentials", help="users and roles file (argon2 hashes; `workbench users add`)")
    g.add_argument("--oauth-provider", help="sign in through Panel's OAuth provider NAME (PANEL_OAUTH_* variables)")
    g.add_argument("--oauth-roles", help="YAML mapping of an ID-token claim to roles: {claim, roles, default}")
    g.add_argument("--cookie-secret-file", help="file holding the cookie secret (or WORKBENCH_COOKIE_KEY)")
    g.add_argument("--tls-cert", help="TLS certificate file (with --tls-key)")
    g.add_argument("--tls-key", help="TLS private key file")
    g.add_argument("--behind-proxy", action="store_true", help="a TLS proxy in front: trust X-Forwarded-*")
    g.add_argument("--no-xsrf", action="store_true", help="no XSRF cookies (dev only)")
    v.add_argument("panel_args", nargs=argparse.REMAINDER, help="passed on to panel serve")
    v.set_defaults(func=_serve)

    u = sub.add_parser("users", help="users and roles of a credentials file (for serve --credentials)")
    us = u.add_subparsers(dest="users_command", required=True)
    a = us.add_parser("add", help="add a user or change their role and password (password from a prompt or stdin)")
    a.add_argument("name")
    a.add_argument("--role", choices=["viewer", "operator", "admin"], required=True)
    a.add_argument("--credentials", help="the file (default: WORKBENCH_CREDENTIALS)")
    a.set_defaults(func=_users_add)
    r = us.add_parser("remove", help="remove a user")
    r.add_argument("name")
    r.add_argument("--credentials", help="the file (default: WORKBENCH_CREDENTIALS)")
    r.set_defaults(func=_users_remove)
    ls = us.add_parser("list", help="users and their roles")
    ls.add_argument("--credentials", help="the file (default: WORKBENCH_CREDENTIALS)")
    ls.set_defaults(func=_users_list)

    d = sub.add_parser("doctor", help="Bokeh and Panel versions against the serving advisories, and a verdict")
    d.set_defaults(func=_doctor)


def _serve(args: argparse.Namespace) -> int:
    from workbench.apps.serve import serve

    options = {"port": args.port, "address": args.address, "source": args.source, "schema": args.schema}
    if args.project:
        from workbench.project.cli import project_serve_options

        options = project_serve_options(args.project)
    if args.rules:
        options["rules"] = args.rules
    security = {
        "profile": args.profile,
        "credentials": args.credentials,
        "oauth_provider": args.oauth_provider,
        "oauth_roles": args.oauth_roles,
        "cookie_secret_file": args.cookie_secret_file,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "behind_proxy": args.behind_proxy,
        "xsrf": not args.no_xsrf,
    }
    return serve(allow_origin=args.allow_origin, show=args.show, extra=args.panel_args, security=security, **options)


def _file(args: argparse.Namespace) -> str:
    import os

    from workbench.errors import ConfigError

    path = args.credentials or os.environ.get("WORKBENCH_CREDENTIALS")
    if not path:
        raise ConfigError("users: no credentials file; give --credentials FILE or set WORKBENCH_CREDENTIALS")
    return str(path)


def _users_add(args: argparse.Namespace) -> int:
    import getpass

    from workbench.errors import ConfigError
    from workbench.security.credentials import Credentials

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError(f"user {args.name!r}: the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    path = _file(args)
    Credentials(path).add(args.name, args.role, password)
    sys.stdout.write(f"user {args.name} ({args.role}) in {path}\n")
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    from workbench.security.credentials import Credentials

    Credentials(_file(args)).remove(args.name)
    sys.stdout.write(f"user {args.name} removed\n")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    from workbench.security.credentials import Credentials

    for name, role in sorted(Credentials(_file(args)).users().items()):
        sys.stdout.write(f"{name}\t{role}\n")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from workbench.security.profile import ADVISORIES, MIN_VERSIONS, _at_least, versions

    found = versions()
    bad = 0
    for name, have in found.items():
        least = MIN_VERSIONS.get(name)
        if least is None:
            sys.stdout.write(f"{name:8} {have}\n")
            continue
        ok = _at_least(have, least)
        bad += not ok
        sys.stdout.write(f"{name:8} {have:12} {'ok' if ok else 'TOO OLD'} (needs >= {least}: {ADVISORIES[name]})\n")
    verdict = "ready for --profile prod" if not bad else "NOT ready for --profile prod: upgrade the packages above"
    sys.stdout.write(f"verdict: {verdict}\n")
    return 0 if not bad else 1

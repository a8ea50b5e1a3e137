"""``workbench serve``: the monitoring app, served by ``panel serve`` with the shared pipeline started once."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``serve`` to the ``workbench`` sub-parsers ``sub``."""
    v = sub.add_parser("serve", help="serve the monitoring app (panel serve with sensible defaults)")
    v.add_argument("--port", type=int, default=5006)
    v.add_argument("--address", default="localhost")
    v.add_argument("--allow-origin", default=None, help="extra websocket origin (host:port)")
    v.add_argument("--show", action="store_true", help="open a browser")
    v.add_argument(
        "--source", help="live source URL instead of the simulator, e.g. prometheus://127.0.0.1:9100/metrics"
    )
    v.add_argument("--schema", help="built-in schema name or schema file S.yaml of the --source events")
    v.add_argument("--rules", help="alert rules file evaluated on the live windows instead of the demo rules")
    v.add_argument("--project", help="serve a project file's live source, schema, port and address")
    v.add_argument("panel_args", nargs=argparse.REMAINDER, help="passed on to panel serve")
    v.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from workbench.apps.serve import serve

    options = {"port": args.port, "address": args.address, "source": args.source, "schema": args.schema}
    if args.project:
        from workbench.project.cli import project_serve_options

        options = project_serve_options(args.project)
    if args.rules:
        options["rules"] = args.rules
    return serve(allow_origin=args.allow_origin, show=args.show, extra=args.panel_args, **options)

"""The ``workbench`` command: thin wrappers over the package (``workbench --help`` lists the sub-commands).

Each wing of the package adds its own sub-commands: its ``cli.py`` has a
``register(sub)`` that adds parsers to the sub-parsers ``sub`` and points each at a
function of that module. A command's function imports what it needs when it runs, so
building the parser imports nothing heavy and ``workbench --help`` starts fast
(``workbench bench startup`` measures it). To add a command: write ``register`` in
the wing's ``cli.py`` and name the module in :data:`WINGS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from workbench.errors import WorkbenchError

__all__ = ["WINGS", "build_parser", "main"]

#: the modules that add sub-commands, in the order ``--help`` lists them
WINGS = (
    "workbench.pipeline.cli",  # replay, run
    "workbench.sources.cli",  # simulate
    "workbench.storage.cli",  # query
    "workbench.models.cli",  # detect
    "workbench.evaluate.cli",  # nab
    "workbench.alerts.cli",  # alerts check|backtest
    "workbench.apps.cli",  # serve, users, doctor
    "workbench.reports.cli",  # export, report
    "workbench.schedule.cli",  # schedule run|list
    "workbench.project.cli",  # schema infer|check, init
    "workbench.bench.cli",  # bench engine|models|alerts|connectors|ui|metrics|startup
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong argument as one line (no usage block), secrets masked; its sub-parsers too."""

    def error(self, message: str) -> NoReturn:
        from workbench.masking import mask

        self.exit(2, f"{self.prog}: error: {mask(message)} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = _Parser(prog="workbench", description="Live monitoring workbench.")
    sub = p.add_subparsers(dest="command", required=True)
    for wing in WINGS:
        importlib.import_module(wing).register(sub)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script.

    A user error is one line on stderr (``workbench: error: …``, secrets masked) and exit code 2;
    ``--debug`` (anywhere on the line) shows the traceback instead. Ctrl-C ends with 130.
    """
    from workbench.masking import mask, mask_logs

    mask_logs()  # no password or token in any log line
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("workbench: interrupted\n")
        return 130
    except (WorkbenchError, OSError) as exc:
        if debug:
            raise
        message = str(exc) if isinstance(exc, WorkbenchError) else _os_error(exc)
        sys.stderr.write(f"workbench: error: {mask(' '.join(message.split()))}\n")
        return 2


def _os_error(exc: OSError) -> str:
    """An OS error as one line: what, which file."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}:{where}" if exc.strerror else str(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

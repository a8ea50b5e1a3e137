"""``workbench schema infer FILE`` and ``workbench schema check FILE --schema S``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``schema`` sub-commands to the ``workbench`` parser's sub-parsers."""
    s = sub.add_parser("schema", help="bring your own data: draft a schema from a file, check a file against one")
    ssub = s.add_subparsers(dest="schema_command", required=True)
    i = ssub.add_parser("infer", help="write a commented draft schema (YAML) for a JSONL, CSV or Parquet file")
    i.add_argument("file", help="JSONL, CSV or Parquet file")
    i.add_argument("--out", help="schema file to write (default: print it)")
    i.add_argument("--rows", type=int, default=10_000, help="records read to infer from (default: 10000)")
    i.set_defaults(func=_infer)
    c = ssub.add_parser("check", help="count the records a schema rejects, per reason, with one example each")
    c.add_argument("file", help="JSONL, CSV or Parquet file")
    c.add_argument("--schema", required=True, help="built-in schema name or schema file S.yaml")
    c.add_argument(
        "--max-dead-share", type=float, default=0.5, help="exit 3 when more than this share is rejected (default: 0.5)"
    )
    c.set_defaults(func=_check)
    register_init(sub)


def _say(text: object) -> None:
    sys.stdout.write(f"{text}\n")


def _infer(args: argparse.Namespace) -> int:
    from workbench.project.infer import infer_schema

    draft = infer_schema(args.file, rows=args.rows)
    if args.out is None:
        sys.stdout.write(draft)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(draft)
    _say(f"draft schema for {args.file} → {out}; read it, then: workbench schema check {args.file} --schema {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from workbench.project.check import check_file, format_reasons

    report = check_file(args.file, args.schema)
    records, rejected = report["records"], report["rejected"]
    share = rejected / records if records else 0.0
    _say(
        f"{args.file}: {records:,} records, {report['valid']:,} valid, {rejected:,} rejected "
        f"({share:.1%}) by schema {report['schema']!r}".replace("%)", " %)")
    )
    if report["extra_fields"]:
        _say(f"undeclared numeric fields kept as metrics: {', '.join(report['extra_fields'])}")
    if rejected:
        _say("rejected, per reason (count, reason code, field, an example, its record):")
        _say(format_reasons(report["reasons"], raw=True))
    if not 0 <= args.max_dead_share <= 1:
        from workbench.errors import ConfigError

        raise ConfigError(f"--max-dead-share must be within [0, 1], not {args.max_dead_share}")
    return 3 if share > args.max_dead_share else 0


def register_init(sub: Any) -> None:
    """Add ``workbench init FILE|URL``."""
    i = sub.add_parser("init", help="write a commented workbench.yaml (and a draft schema) for a file or URL")
    i.add_argument("source", help="JSONL, CSV or Parquet file, or a source URL")
    i.add_argument("--out", default="workbench.yaml", help="project file to write (default: workbench.yaml)")
    i.add_argument("--force", action="store_true", help="overwrite existing files")
    i.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from workbench.project.init import init_project

    written = init_project(args.source, args.out, force=args.force)
    _say(f"wrote {', '.join(str(p) for p in written)}; read them, then: workbench replay --project {args.out}")
    return 0


def replay_project(args: argparse.Namespace) -> int:
    """``workbench replay --project workbench.yaml``: the project's pipeline over its file source."""
    import json
    import time

    from workbench.project.check import dead_share_error, read_dead_letters
    from workbench.project.config import Project
    from workbench.storage.ownership import OutputLock

    project = with_rules(Project.load(args.project), args.rules)
    if not project.is_file:
        from workbench.errors import ConfigError

        raise ConfigError(f"project file {args.project}: source: replay reads a file, not {project.source!r} (use run)")
    out = Path(project.resolve(project.out))
    with OutputLock(out, what="workbench replay --project"):  # one run at a time writes a folder
        if args.fresh:
            _clear(out)
        pipe = project.pipeline()
        t0 = time.perf_counter()
        try:
            pipe.run()
        finally:
            pipe.close()
    summary = {
        **pipe.counts(),
        "windows": pipe.outputs["windows"].metrics.rows_out,
        "seconds": round(time.perf_counter() - t0, 3),
        "complete": pipe.source.exhausted,
        "outputs": sorted(pipe.outputs),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _say(json.dumps(summary, indent=2))
    share = args.max_dead_share if args.max_dead_share is not None else project.max_dead_share
    failed = dead_share_error(summary, share, read_dead_letters(out))
    if failed:
        sys.stderr.write(f"workbench: {failed}\n")
        return 3
    return 0


def run_project(args: argparse.Namespace, stop: Any) -> int:
    """``workbench run --project workbench.yaml``: the project's pipeline until its source ends or ``stop`` is set."""
    import json
    import threading
    import time

    from workbench.pipeline.metrics import served
    from workbench.project.config import Project
    from workbench.storage.ownership import OutputLock

    project = with_rules(Project.load(args.project), args.rules)
    lock = OutputLock(Path(project.resolve(project.out)), what="workbench run --project").acquire()
    try:
        if getattr(args, "fresh", False):
            _clear(Path(project.resolve(project.out)))
        pipe = project.pipeline(stop=stop)
    except BaseException:
        lock.release()
        raise
    finished = threading.Event()
    t0 = time.perf_counter()

    def watch() -> None:  # the run stays on this thread, so its errors reach the caller
        while not finished.wait(0.1):
            if stop.is_set() or (args.seconds is not None and time.perf_counter() - t0 >= args.seconds):
                pipe.source.stop()
                return

    threading.Thread(target=watch, name="wb-project-watch", daemon=True).start()
    try:
        with served(pipe, args.metrics_port, args.metrics_addr):
            pipe.run()
    finally:
        finished.set()
        pipe.close()
        lock.release()
    summary = {
        **pipe.counts(),
        "windows": pipe.outputs["windows"].metrics.rows_out,
        "batches": pipe.batches,
        "seconds": round(time.perf_counter() - t0, 3),
        "outputs": sorted(pipe.outputs),
    }
    _say(json.dumps(summary, indent=2, default=str))
    return 0


def _clear(out: Path) -> None:
    """``--fresh``: remove a project's checkpoint and outputs (scores of every detector too)."""
    import shutil

    if not out.is_dir():
        return
    parts = ["checkpoint", "windows", "dead_letter", "late", "alerts", "outbox.jsonl", "summary.json"]
    for target in [*(out / p for p in parts), *out.glob("scores*")]:
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def with_rules(project: Any, rules: str | None) -> Any:
    """The project with its alert rules replaced by the rules file ``rules`` (given on the command line)."""
    import dataclasses

    return project if rules is None else dataclasses.replace(project, alerts=str(Path(rules).resolve()))


def project_serve_options(path: str) -> dict[str, Any]:
    """``workbench serve --project``: the served source, schema, alert rules, port and address of a project file."""
    from workbench.errors import ConfigError
    from workbench.project.config import Project

    project = Project.load(path)
    if project.is_file:
        raise ConfigError(
            f"project file {path}: source: serve needs a live source URL, not the file {project.source!r}"
        )
    schema = project.resolve(project.schema) if project.schema.endswith((".yaml", ".yml")) else project.schema
    rules = project.resolve(project.alerts) if isinstance(project.alerts, str) else project.alerts
    options = {"source": project.source, "schema": schema, "port": project.port, "address": project.address}
    return {**options, "rules": rules}

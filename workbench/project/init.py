"""``workbench init FILE|URL``: a commented ``workbench.yaml`` to start a project from.

For a file, a draft schema is inferred and written beside the project file
(``<stem>.schema.yaml``), and every numeric metric gets the default aggregations
(count, mean, max, p95); for a URL the built-in ``server_metrics`` schema is assumed.

Examples
--------
>>> import tempfile, pathlib, json
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> rows = [{"at": f"2024-01-01T00:00:{i:02d}Z", "host": "a", "mem": 1.0 + i} for i in range(10)]
>>> _ = (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
>>> written = init_project(folder / "m.jsonl", folder / "workbench.yaml")
>>> [p.name for p in written]
['m.schema.yaml', 'workbench.yaml']
>>> from workbench.project.config import Project
>>> p = Project.load(folder / "workbench.yaml")
>>> p.schema, p.aggregations
('m.schema.yaml', (('mem', ('mean', 'max', 'p95')),))
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.errors import ConfigError
from workbench.schema import get_schema

__all__ = ["init_project"]


def init_project(source: str | Path, out: str | Path = "workbench.yaml", *, force: bool = False) -> list[Path]:
    """Write a commented project file for ``source`` (and a draft schema for a file); returns the files written."""
    out = Path(out)
    source = str(source)
    is_url = "://" in source
    written: list[Path] = []
    for path in [out] if is_url else [out, out.parent / f"{Path(source).stem}.schema.yaml"]:
        if path.exists() and not force:
            raise ConfigError(f"init: {path} exists; remove it or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_url:
        schema_ref, schema = "server_metrics", get_schema("server_metrics")
        source_ref = source
    else:
        from workbench.project.infer import infer_schema

        schema_path = out.parent / f"{Path(source).stem}.schema.yaml"
        schema_path.write_text(infer_schema(source))
        written.append(schema_path)
        schema_ref, schema = schema_path.name, get_schema(schema_path)
        source_ref = os.path.relpath(Path(source).resolve(), out.parent.resolve())
    out.write_text(_draft(source_ref, schema_ref, schema.metrics, schema.by, is_url, Path(source).stem))
    written.append(out)
    return written


def _draft(source: str, schema_ref: str, metrics: list[str], by: list[str], is_url: bool, stem: str) -> str:
    first = metrics[0] if metrics else "value"
    lines = [
        "# Workbench project. Run it: workbench replay --project workbench.yaml"
        + (" (a file) or workbench run --project workbench.yaml (a URL)" if is_url else ""),
        "# In a notebook: wb.Project.load('workbench.yaml').pipeline(). Paths are relative to this file.",
        f"source: {source}  # a JSONL/CSV/Parquet file, or mqtt://, redis://, nats://, kafka://, http(s)://",
        f"schema: {schema_ref}  # a built-in name (server_metrics …) or a schema file",
        "",
        "dedupe:",
        "  # ttl: 1m5s  # how long (event time) a key is remembered; default: lateness + 1m",
        "",
        "windows:",
        "  kind: tumbling  # tumbling | sliding (with slide:) | session (with gap:, no size:)",
        "  size: 1m",
        "  # slide: 10s",
        "  lateness: 5s  # events later than this behind the newest go to the late output",
        f"  # by: [{', '.join(by)}]  # default: the schema's entity",
        "",
        "# per metric, the window aggregations (count is always there); pNN is a percentile",
        "aggregations:",
        *([f"  {m}: [mean, max, p95]" for m in metrics] or ["  {}"]),
        "",
        "# per window column, an online detector: robust_z, snarimax, holt_winters, hst, ensemble, context",
        "detectors:",
        f"  # {first}_mean: robust_z",
        "",
        "# alert rules: a rules file (workbench alerts check FILE), or inline:",
        "# alerts: rules.yaml",
        "# alerts:",
        "#   rules:",
        f"#     - {{name: high_{first}, kind: threshold, metric: {first}_max, op: '>', value: 100, for: 2m}}",
        "",
        "outputs:",
        f"  out: out/{stem if not is_url else 'live'}  # windows, dead letters, late, checkpoint (resumes)",
        "  max_dead_share: 0.5  # more dead-lettered than this: exit code 3",
        "",
        "serve:",
        "  port: 5006",
        "  address: localhost",
    ]
    if not metrics:
        lines[lines.index("aggregations:") + 1] = "  {}  # the schema has no numeric metric: count only"
    return "\n".join(lines) + "\n"

"""A project file, ``workbench.yaml``: source, schema, windows, aggregations, detectors, alerts, outputs.

``workbench init FILE|URL`` writes a commented one (:func:`draft_project`);
``workbench replay|run --project workbench.yaml`` run it; in a notebook
``wb.Project.load("workbench.yaml").pipeline()`` gives the same pipeline. Paths in the
file are relative to the file. A mistake is one :class:`~workbench.errors.ConfigError`
naming the file, the key path and the value.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "workbench.yaml").write_text(
...     "source: events.jsonl\\nschema: server_metrics\\nwindows: {kind: sliding, size: 1m, slide: 10s}\\n"
...     "aggregations: {cpu: [mean, p99]}\\n")
>>> p = Project.load(folder / "workbench.yaml")
>>> p.window, [a.meta.output_name() for a in p.aggs()]
(Sliding(size='1m', step='10s', offset=0), ['count', 'cpu_mean', 'cpu_p99'])
>>> _ = (folder / "bad.yaml").write_text("source: x.jsonl\\nwindows: {kind: tumblin}\\n")
>>> Project.load(folder / "bad.yaml")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: project file .../bad.yaml: windows.kind: expected one of [...], not 'tumblin'
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import ConfigError, WorkbenchError
from workbench.operators import aggregations as agg
from workbench.operators.windows import Session, Sliding, Tumbling, WindowSpec
from workbench.pipeline import Pipeline
from workbench.schema import Schema

__all__ = ["AGGREGATIONS", "Project"]

_TOP = (
    "source",
    "schema",
    "dedupe",
    "windows",
    "aggregations",
    "detectors",
    "alerts",
    "outputs",
    "serve",
    "pseudonymize",
)
_WINDOWS = ("kind", "size", "slide", "gap", "lateness", "by")
_OUTPUTS = ("out", "max_dead_share", "max_rows", "checkpoint_every")
_SERVE = ("port", "address")
_KINDS = ("tumbling", "sliding", "session")
#: Aggregation names a project file may list per metric (plus ``pNN``, a percentile).
AGGREGATIONS = ("count", "mean", "max", "min", "sum", "std", "distinct", "p50", "p95", "p99")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class Project:
    """A monitoring project as values: build its pipeline with :meth:`pipeline`.

    Parameters
    ----------
    source
        A file (JSONL, CSV, Parquet) or a source URL.
    schema
        Built-in schema name or schema file.
    window
        Window spec.
    lateness
        Allowed lateness.
    by
        Window key (default: the schema's entity).
    aggregations
        Metric → aggregation names (empty: the schema's defaults).
    detectors
        Window column → detector name.
    alerts
        A rules file path, or an alert configuration mapping (``rules``, ``routes`` …).
    out
        Output folder (windows, dead letters, late, checkpoint, alerts).
    dedupe_ttl
        How long a dedupe key is remembered (default: lateness + 1 min).
    max_dead_share, max_rows, checkpoint_every
        Run options, as the command line's.
    port, address
        Serve options.
    pseudonymize
        Fields (user ids, IPs) replaced by keyed pseudonyms right after validation
        (the key: ``WORKBENCH_PSEUDONYM_KEY`` or ``WORKBENCH_PSEUDONYM_KEY_FILE``).
    path
        The project file.
    """

    source: str
    schema: str = "server_metrics"
    window: WindowSpec = field(default_factory=lambda: Tumbling("10s"))
    lateness: str = "5s"
    by: tuple[str, ...] | None = None
    aggregations: tuple[tuple[str, tuple[str, ...]], ...] = ()
    detectors: tuple[tuple[str, str], ...] = ()
    alerts: str | Mapping[str, Any] | None = None
    out: str = "out"
    dedupe_ttl: str | None = None
    max_dead_share: float = 0.5
    max_rows: int = 100_000
    checkpoint_every: str = "10s"
    port: int = 5006
    address: str = "localhost"
    pseudonymize: tuple[str, ...] = ()
    path: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> Project:
        """Read and check a project file."""
        import yaml

        path = Path(path)
        where = f"project file {path}"
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            raise ConfigError(f"{where}: not valid YAML: {at}{getattr(exc, 'problem', None) or exc}") from None
        try:
            return _from_mapping(data, path)
        except _KeyError as exc:
            raise ConfigError(f"{where}: {exc.key}: {exc.message}") from None

    def resolve(self, value: str) -> str:
        """A path of the project file, relative to the file (URLs and names pass through)."""
        if self.path is None or "://" in value or Path(value).is_absolute():
            return value
        return str(Path(self.path).parent / value)

    @property
    def is_file(self) -> bool:
        """Whether the source is a file (not a URL)."""
        return "://" not in self.source

    def load_schema(self) -> Schema:
        """The schema (a schema file's undeclared numeric fields resolved from a file source)."""
        from workbench.project.infer import resolve_schema

        schema = self.resolve(self.schema) if self.schema.endswith((".yaml", ".yml")) else self.schema
        return resolve_schema(schema, self.resolve(self.source) if self.is_file else None)

    def aggs(self, schema: Schema | None = None) -> list[pl.Expr] | None:
        """The window aggregations: ``count`` plus those listed per metric (None: the schema's defaults)."""
        if not self.aggregations:
            return None
        out = [agg.count()]
        known = schema.names if schema is not None else None
        for metric, names in self.aggregations:
            if known is not None and metric not in known:
                raise ConfigError(
                    f"project file {self.path}: aggregations.{metric}: not a field of schema {schema.name!r}; "  # type: ignore[union-attr]
                    f"fields: {', '.join(known)}"
                )
            out += [_aggregation(metric, name) for name in names if name != "count"]
        return out

    def pipeline(
        self, *, name: str | None = None, checkpoints: bool = True, stop: threading.Event | None = None
    ) -> Pipeline:
        """The project's pipeline: windows (and scores, alerts) written to ``out``.

        ``checkpoints=False`` builds it without a checkpoint store (e.g. to explore in
        a notebook without resuming). With a live source and a schema file whose
        ``extra`` is ``keep-numeric``, building waits for the source's first batch (at
        most 30 s, or until ``stop`` is set) to learn the undeclared numeric fields.
        """
        from workbench.project.infer import prime_schema
        from workbench.sources.factory import from_url
        from workbench.sources.files import FileSource
        from workbench.storage.checkpoints import CheckpointStore
        from workbench.storage.lake import Lake

        s = self.load_schema()
        out = Path(self.resolve(self.out))
        source = (
            FileSource(self.resolve(self.source), max_rows=self.max_rows) if self.is_file else from_url(self.source)
        )
        if not self.is_file:
            source, s = prime_schema(source, s, stop=stop)
        pipe = Pipeline(
            source,
            name=name or f"project:{out.resolve()}",
            checkpoints=CheckpointStore(out / "checkpoint") if checkpoints else None,
            checkpoint_every=self.checkpoint_every,
            checkpoint_batches=20 if self.is_file else None,
        )
        by = list(self.by) if self.by is not None else None
        windows = pipe.standard(
            s,
            self.window,
            by=by,
            aggs=self.aggs(s),
            lateness=self.lateness,
            dedupe_ttl=self.dedupe_ttl,
            pseudonymize=list(self.pseudonymize) or None,
        )
        by_detector: dict[str, list[str]] = {}
        for column, detector in self.detectors:
            by_detector.setdefault(detector, []).append(column)
        keys = by if by is not None else s.by
        for i, (detector, features) in enumerate(sorted(by_detector.items())):
            output = "scores" if i == 0 else f"scores_{detector}"
            pipe.output(output, windows.score(detector, features=features, by=keys, name=output))
        if self.alerts is not None:
            from workbench.alerts.loader import load_config

            config = self.alerts if isinstance(self.alerts, Mapping) else self.resolve(self.alerts)
            # with detectors the rules read the scored window rows (every window column plus the first
            # detector's anomaly_score, threshold, is_anomaly), so an anomaly rule fires
            upstream = "scores" if "scores" in pipe.outputs else "windows"
            pipe.alerts(
                load_config(config), by=keys[0] if keys else None, outbox=out / "outbox.jsonl", upstream=upstream
            )
        pipe.to_lake(Lake(out, partition=not self.is_file))
        return pipe


class _KeyError(WorkbenchError):
    """A project file's key and what is wrong with it (``Project.load`` adds the file)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _aggregation(metric: str, name: str) -> pl.Expr:
    simple = {"mean": agg.mean, "max": agg.max, "min": agg.min, "sum": agg.sum, "std": agg.std}
    if name in simple:
        return simple[name](metric)
    if name == "distinct":
        return agg.distinct(metric)
    m = _PERCENTILE.match(name)
    if m:
        return agg.quantile(metric, float(m.group(1)) / 100)
    raise ConfigError(f"aggregation {name!r} of {metric!r}: expected one of {list(AGGREGATIONS)} or pNN")


def _section(data: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise _KeyError(key, f"expected a mapping, not {value!r}")
    for k in value:
        if k not in allowed:
            raise _KeyError(f"{key}.{k}", f"unknown key; expected one of {list(allowed)}")
    return value


def _text(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise _KeyError(key, f"expected a text value, not {value!r}")
    return str(value)


def _window(w: Mapping[str, Any]) -> WindowSpec:
    kind = w.get("kind", "tumbling")
    if kind not in _KINDS:
        raise _KeyError("windows.kind", f"expected one of {list(_KINDS)}, not {kind!r}")
    wrong = {"tumbling": ("slide", "gap"), "sliding": ("gap",), "session": ("size", "slide")}[kind]
    for k in wrong:
        if k in w:
            raise _KeyError(f"windows.{k}", f"does not apply to {kind} windows")
    key = "windows.gap" if kind == "session" else "windows.size"
    try:
        if kind == "session":
            return Session(_text(w.get("gap", "30s"), "windows.gap"))
        size = _text(w.get("size", "10s"), "windows.size")
        if kind == "sliding":
            key = "windows.slide"
            return Sliding(size, _text(w.get("slide", size), "windows.slide"))
        return Tumbling(size)
    except ConfigError as exc:
        raise _KeyError(key, str(exc)) from None


def _from_mapping(data: Any, path: Path) -> Project:
    if not isinstance(data, Mapping):
        raise _KeyError("(top)", f"expected a mapping with 'source', not {type(data).__name__}")
    for k in data:
        if k not in _TOP:
            raise _KeyError(str(k), f"unknown key; expected one of {list(_TOP)}")
    if "source" not in data:
        raise _KeyError("source", "missing: a file (JSONL, CSV, Parquet) or a source URL")
    w = _section(data, "windows", _WINDOWS)
    o = _section(data, "outputs", _OUTPUTS)
    v = _section(data, "serve", _SERVE)
    d = _section(data, "dedupe", ("ttl",))
    by = w.get("by")
    if by is not None:
        by = [by] if isinstance(by, str) else by
        if not isinstance(by, list) or not all(isinstance(b, str) for b in by):
            raise _KeyError("windows.by", f"expected a field name or a list of them, not {w.get('by')!r}")
    aggregations = []
    for metric, names in _section(data, "aggregations", tuple(data.get("aggregations") or ())).items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names:
            raise _KeyError(f"aggregations.{metric}", f"expected a list of aggregation names, not {names!r}")
        for n in names:
            if n not in AGGREGATIONS and not (isinstance(n, str) and _PERCENTILE.match(n)):
                raise _KeyError(f"aggregations.{metric}", f"expected names from {list(AGGREGATIONS)} or pNN, not {n!r}")
        aggregations.append((str(metric), tuple(names)))
    detectors = []
    for column, detector in _section(data, "detectors", tuple(data.get("detectors") or ())).items():
        from workbench.models.detect import DETECTORS  # only a project with detectors pays for river

        if detector not in DETECTORS:
            raise _KeyError(f"detectors.{column}", f"expected one of {sorted(DETECTORS)}, not {detector!r}")
        detectors.append((str(column), str(detector)))
    alerts = data.get("alerts")
    if alerts is not None:
        if not isinstance(alerts, str | Mapping):
            raise _KeyError("alerts", f"expected a rules file or a mapping with 'rules', not {alerts!r}")
        from workbench.alerts.loader import load_config

        rules = alerts if isinstance(alerts, Mapping) or Path(alerts).is_absolute() else path.parent / alerts
        try:
            load_config(rules)
        except ConfigError as exc:
            raise _KeyError("alerts", str(exc)) from None
    share = o.get("max_dead_share", 0.5)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise _KeyError("outputs.max_dead_share", f"expected a number within [0, 1], not {share!r}")
    port = v.get("port", 5006)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _KeyError("serve.port", f"expected a port number, not {port!r}")
    hidden = data.get("pseudonymize") or []
    hidden = [hidden] if isinstance(hidden, str) else hidden
    if not isinstance(hidden, list) or not all(isinstance(f, str) and f for f in hidden):
        raise _KeyError("pseudonymize", f"expected a field name or a list of them, not {data.get('pseudonymize')!r}")
    max_rows = o.get("max_rows", 100_000)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows <= 0:
        raise _KeyError("outputs.max_rows", f"expected a positive integer, not {max_rows!r}")
    from workbench.config import parse_duration

    durations = {"windows.lateness": w.get("lateness", "5s"), "dedupe.ttl": d.get("ttl")}
    durations["outputs.checkpoint_every"] = o.get("checkpoint_every", "10s")
    for key, value in durations.items():
        if value is not None:
            try:
                parse_duration(value, what=key)
            except ConfigError as exc:
                raise _KeyError(key, str(exc)) from None
    return Project(
        source=_text(data["source"], "source"),
        schema=_text(data.get("schema", "server_metrics"), "schema"),
        window=_window(w),
        lateness=str(w.get("lateness", "5s")),
        by=tuple(by) if by is not None else None,
        aggregations=tuple(aggregations),
        detectors=tuple(detectors),
        alerts=alerts,
        out=_text(o.get("out", "out"), "outputs.out"),
        dedupe_ttl=None if d.get("ttl") is None else str(d["ttl"]),
        max_dead_share=float(share),
        max_rows=max_rows,
        checkpoint_every=str(o.get("checkpoint_every", "10s")),
        port=port,
        address=_text(v.get("address", "localhost"), "serve.address"),
        pseudonymize=tuple(hidden),
        path=str(path),
    )

"""A draft schema from a data file: ``workbench schema infer FILE``.

The first records of a JSONL, CSV or Parquet file are read; each column gets a
kind, its observed range (as commented-out bound suggestions) and a unit guessed
from its name; the time field and its format, the dedupe key and the entity are
guessed and say why. The draft is YAML with comments, to be read and edited.

Examples
--------
>>> import tempfile, pathlib, json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
>>> rows = [{"id": f"r{i}", "observed_at": f"2024-01-01T00:00:{i:02d}Z", "server": "a",
...          "mem_mb": 1000.5 + i} for i in range(20)]
>>> _ = path.write_text("".join(json.dumps(r) + "\\n" for r in rows))
>>> draft = infer_schema(path)
>>> from workbench.schema_file import schema_from_mapping
>>> import yaml
>>> s = schema_from_mapping(yaml.safe_load(draft), where="draft", name="m")
>>> s.time, s.time_format, s.key, s.entity, s.metrics, s.field("mem_mb").unit
('observed_at', 'iso', 'id', 'server', ['mem_mb'], 'MB')
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from pathlib import Path

import polars as pl

from workbench.errors import ConfigError, SourceError
from workbench.operators.extra import numeric_extras
from workbench.schema import Schema, get_schema
from workbench.sources.base import RawBatch, Source

__all__ = ["infer_schema", "prime_schema", "resolve_schema", "sample"]

log = logging.getLogger(__name__)

_TIME_NAMES = re.compile(r"^(ts|time|timestamp|datetime|date|event_time|.*_(at|time|ts))$", re.IGNORECASE)
_KEY_NAMES = re.compile(r"^(id|uuid|event_id|.*_id|.*_uuid)$", re.IGNORECASE)
_ENTITY_NAMES = re.compile(r"host|server|instance|node|device|machine|service|name|src", re.IGNORECASE)
_UNITS = (
    (re.compile(r"(?i:(_|^)(mb|mib))$|[a-z](Mb|MB|MiB)$"), "MB"),
    (re.compile(r"(_|^)(gb|gib)$", re.I), "GB"),
    (re.compile(r"(_|^)(kb|kib)$", re.I), "kB"),
    (re.compile(r"(_|^)bytes$", re.I), "B"),
    (re.compile(r"(_|^)ms$", re.I), "ms"),
    (re.compile(r"(_|^)(s|sec|seconds)$", re.I), "s"),
    (re.compile(r"(_|^)(pct|percent)$|^cpu$", re.I), "%"),
)
# epoch ranges of the years 2000-2099, by unit
_EPOCHS: tuple[tuple[str, float, float], ...] = (
    ("epoch_s", 9.466e8, 4.1025e9),
    ("epoch_ms", 9.466e11, 4.1025e12),
    ("epoch_us", 9.466e14, 4.1025e15),
    ("epoch_ns", 9.466e17, 4.1025e18),
)
_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
_OFFSET = r"(?:[Zz]|[+-]\d{2}:?\d{2})$"


def sample(path: str | Path, rows: int = 10_000) -> pl.DataFrame:
    """The first ``rows`` records of a JSONL, CSV or Parquet file, types inferred.

    Broken JSON lines are skipped (a sample only guides the schema).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"file {str(path)!r}: does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _sample_jsonl(path, rows)
        if suffix == ".csv":
            return pl.read_csv(path, n_rows=rows, infer_schema_length=rows)
        if suffix == ".parquet":
            return pl.read_parquet(path, n_rows=rows)
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"file {str(path)!r}: cannot be read: {str(exc).splitlines()[0]}") from None
    raise ConfigError(f"file {str(path)!r}: unknown format {path.suffix!r}; expected .jsonl, .ndjson, .csv or .parquet")


def _sample_jsonl(path: Path, rows: int) -> pl.DataFrame:
    lines: list[bytes] = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                lines.append(line)
            if len(lines) >= rows:
                break
    return _sample_lines(lines)


def _sample_lines(lines: list[bytes]) -> pl.DataFrame:
    lines = [line if line.endswith(b"\n") else line + b"\n" for line in lines]
    try:
        return pl.read_ndjson(io.BytesIO(b"".join(lines)), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        good = []
        for line in lines:  # a one-off over the sample, not a hot path
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                good.append(json.dumps(record).encode())
        return pl.read_ndjson(io.BytesIO(b"\n".join(good)), infer_schema_length=None) if good else pl.DataFrame()


def resolve_schema(schema: str | Path | Schema, path: str | Path | None) -> Schema:
    """``schema`` with ``extra: keep-numeric`` resolved from the first records of ``path``.

    Undeclared numeric fields become optional float fields (metrics); other schemas,
    or no file, pass through.
    """
    s = get_schema(schema)
    if s.extra != "keep-numeric" or path is None or not Path(path).is_file():
        return s  # a live source: prime_schema() learns them from its first batch
    return s.with_fields(numeric_extras(sample(path, 1_000), s))


def prime_schema(
    source: Source, schema: str | Path | Schema, *, wait: float = 30.0, stop: threading.Event | None = None
) -> tuple[Source, Schema]:
    """A live source's ``extra: keep-numeric`` resolved from its first batch.

    The first batch with records is read (waiting up to ``wait`` seconds, or until
    ``stop`` is set); its undeclared numeric fields become optional float fields,
    and the source comes back wrapped in a :class:`~workbench.sources.primed.PrimedSource`
    that yields that batch first, so nothing is read twice or lost. Other schemas
    pass through with the source unchanged; with no record in time the undeclared
    fields are dropped, with a warning.
    """
    from workbench.sources.primed import PrimedSource

    s = get_schema(schema)
    if s.extra != "keep-numeric":
        return source, s
    source.schema = s  # a source of untyped fields (flat Redis entries) types numbers by it
    source.start()
    batches = source.batches()
    done = threading.Event()

    def watch() -> None:  # the reading loop blocks for data: a stop or the deadline ends it
        deadline = time.monotonic() + wait
        while not done.wait(0.05):
            if (stop is not None and stop.is_set()) or time.monotonic() >= deadline:
                source.stop()
                return

    watcher = threading.Thread(target=watch, name="wb-prime-schema", daemon=True)
    watcher.start()
    first = None
    try:
        for batch in batches:
            if batch.rows:
                first = batch
                break
    finally:
        done.set()
        watcher.join()
    if first is None:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        log.warning(
            "schema %r: extra: keep-numeric: no record from the source within %g s to learn undeclared "
            "fields from; they are dropped: declare them in the schema",
            s.name,
            wait,
        )
        return source, s
    found = numeric_extras(_batch_sample(first), s)
    if found:
        log.info("schema %r: undeclared numeric fields kept as metrics: %s", s.name, ", ".join(f.name for f in found))
    s = s.with_fields(found)
    source.schema = s
    return PrimedSource(source, first, batches), s


def _batch_sample(batch: RawBatch) -> pl.DataFrame:
    if batch.frame is not None:
        return batch.frame
    return _sample_lines([line for line in bytes(batch.data or b"").split(b"\n") if line.strip()])


def _time_format(col: pl.Series) -> tuple[str, str] | None:
    """``(format, naive)`` when ``col`` holds times (ISO text or epoch numbers), else None."""
    values = col.drop_nulls()
    if values.len() == 0:
        return None
    if values.dtype == pl.String:
        iso = values.str.contains(_ISO)
        if not iso.all():
            return None
        return ("iso", "reject") if values.str.contains(_OFFSET).all() else ("iso", "UTC")
    if isinstance(values.dtype, pl.Datetime):
        return ("iso", "UTC" if values.dtype.time_zone is None else "reject")
    if values.dtype.is_numeric():
        low, high = float(values.min()), float(values.max())  # type: ignore[arg-type]
        for fmt, lo, hi in _EPOCHS:
            if lo <= low and high < hi:
                return fmt, "reject"
    return None


def _kind(dtype: pl.DataType) -> str | None:
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.String:
        return "str"
    return None


def _unit(name: str) -> str:
    return next((unit for pattern, unit in _UNITS if pattern.search(name)), "")


def _yaml_name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def infer_schema(path: str | Path, *, rows: int = 10_000) -> str:
    """A commented draft schema file (YAML) for the records of ``path``.

    Parameters
    ----------
    path
        JSONL, CSV or Parquet file.
    rows
        Records read to infer from.
    """
    path = Path(path)
    df = sample(path, rows)
    if df.width == 0 or df.height == 0:
        raise ConfigError(f"file {str(path)!r}: no records to infer a schema from")
    times = {c: found for c in df.columns if (found := _time_format(df[c])) is not None}
    named = [c for c in times if _TIME_NAMES.match(c)]
    time = named[0] if named else next(iter(times), None)
    strings = [c for c in df.columns if df.schema[c] == pl.String and c != time]
    unique = [c for c in strings if df[c].null_count() == 0 and df[c].n_unique() == df.height]
    key = next((c for c in unique if _KEY_NAMES.match(c)), unique[0] if unique else None)
    limit = max(50, df.height // 20)
    few = [c for c in strings if c != key and df[c].n_unique() <= limit]
    entity = next((c for c in few if _ENTITY_NAMES.search(c)), few[0] if few else None)

    out = [
        f"# Draft schema inferred from {path.name} ({df.height:,} records read). Check every line:",
        "# bounds are commented out and show the observed range; uncomment the ones that are rules.",
        f"name: {_yaml_name(path.stem)}",
    ]
    if time is None:
        out += ["# no time field found: name it here (epoch numbers or ISO-8601 text)", "time: {field: ts}"]
    else:
        fmt, naive = times[time]
        why = "its name" if time in named else "its values"
        out += ["time:", f"  field: {_yaml_name(time)}  # guessed from {why}"]
        out.append(f"  format: {fmt}  # auto | epoch_s | epoch_ms | epoch_us | epoch_ns | iso")
        if naive == "reject":
            out.append("  naive: reject  # times without a UTC offset are rejected (or name a zone, e.g. UTC)")
        else:
            out.append(f"  naive: {naive}  # the times carry no UTC offset: they are read in this zone; check it")
    if key is not None:
        out.append(f"key: {_yaml_name(key)}  # unique in the sample: repeats of it are dropped as duplicates")
    else:
        out.append("key: hash  # no unique id field: a record repeated exactly is a duplicate (or: none)")
    if entity is not None:
        out.append(f"entity: {_yaml_name(entity)}  # windows are per {entity} ({df[entity].n_unique()} seen)")
    else:
        out.append("entity: []  # no low-cardinality text field: one series for everything")
    out.append("extra: keep-numeric  # fields not declared below: keep-numeric | drop | reject")
    out.append("fields:")
    for name in df.columns:
        col = df[name]
        kind = "ts" if name == time else _kind(col.dtype)
        if kind is None:
            out.append(f"  # {_yaml_name(name)}: a {col.dtype} column; not supported, left out")
            continue
        out += [f"  {_yaml_name(name)}:", f"    kind: {kind}"]
        unit = _unit(name) if kind in ("float", "int") else ""
        if unit:
            out.append(f"    unit: {json.dumps(unit)}  # guessed from the name")
        if col.null_count():
            out.append(f"    required: false  # {col.null_count() / df.height:.0%} missing in the sample")
        if kind in ("float", "int") and col.drop_nulls().len():
            low, high = _num(col.min()), _num(col.max())  # type: ignore[arg-type]
            out += [f"    # min: {low}  # observed minimum", f"    # max: {high}  # observed maximum"]
    return "\n".join(out) + "\n"

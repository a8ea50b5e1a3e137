"""Schema files: an event schema declared in YAML instead of Python.

The form (every key but ``fields`` is optional)::

    name: host_metrics
    time:
      field: observed_at      # the event-time field, any name (default: ts)
      format: iso             # auto | epoch_s | epoch_ms | epoch_us | epoch_ns | iso
      naive: UTC              # ISO times without an offset: reject, or read them in this zone
    key: id                   # dedupe key: a field, none, or hash (of the whole record)
    entity: host              # window key: one field or a list
    extra: keep-numeric       # undeclared fields: keep-numeric | drop | reject
    fields:
      id: {kind: str}
      host: {kind: str, doc: Host name.}
      mem: {kind: float, unit: MB, min: 0, from: memUsedMb}
      cpu: {kind: float, unit: "%", min: 0, max: 100, required: false}

A field is ``{kind, unit, min, max, required, doc, from, max_length}``; ``from`` is its
name in the input (a rename). The time field may be left out of ``fields``. Every
mistake is one :class:`~workbench.errors.SchemaError` naming the file, the key path
and the value.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "s.yaml"
>>> _ = path.write_text("time: {field: at, format: iso}\\nkey: none\\nentity: host\\n"
...     "fields:\\n  host: {kind: str}\\n  mem: {kind: float, unit: MB}\\n")
>>> s = load_schema(path)
>>> s.name, s.time, s.dedupe, s.metrics, s.extra
('s', 'at', 'none', ['mem'], 'keep-numeric')
>>> _ = path.write_text("fields:\\n  mem: {kind: flaot}\\n")
>>> load_schema(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.SchemaError: schema file .../s.yaml: fields.mem.kind: expected one of [...], not 'flaot'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, SchemaError
from workbench.schema import DEDUPES, EXTRAS, TIME_FORMATS, Field, Schema

__all__ = ["load_schema", "schema_from_mapping"]

_TOP = ("name", "time", "key", "entity", "extra", "fields", "max_record_bytes", "doc")
_TIME = ("field", "format", "naive")
_FIELD = ("kind", "unit", "min", "max", "required", "doc", "from", "max_length")
_KINDS = ("float", "int", "str", "ts")


def load_schema(path: str | Path) -> Schema:
    """Read and check a schema file.

    Parameters
    ----------
    path
        A YAML schema file.

    Returns
    -------
    Schema
        The schema, named after the file unless it says ``name:``.
    """
    import yaml

    path = Path(path)
    where = f"schema file {path}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise SchemaError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SchemaError(f"{where}: not valid YAML: {at}{problem}") from None
    return schema_from_mapping(data, where=where, name=path.stem, path=str(path))


def schema_from_mapping(data: Any, *, where: str, name: str, path: str | None = None) -> Schema:
    """Build a schema from the parsed content of a schema file (``where`` prefixes errors).

    Examples
    --------
    >>> schema_from_mapping({"fields": {"ts": {"kind": "ts"}, "x": {"kind": "int"}}, "key": "hash",
    ...     "entity": []}, where="demo", name="demo").dedupe
    'hash'
    """

    def fail(key: str, message: str) -> SchemaError:
        return SchemaError(f"{where}: {key}: {message}")

    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: expected a mapping with 'fields', not {type(data).__name__}")
    _known(data, _TOP, "", fail)
    time = data.get("time", {})
    if isinstance(time, str):
        time = {"field": time}
    if not isinstance(time, Mapping):
        raise fail("time", f"expected a mapping with field, format, naive (or a field name), not {time!r}")
    _known(time, _TIME, "time.", fail)
    time_field = _text(time.get("field", "ts"), "time.field", fail)
    time_format = _choice(time.get("format", "auto"), TIME_FORMATS, "time.format", fail)
    naive = _text(time.get("naive", "reject"), "time.naive", fail)

    raw_fields = data.get("fields")
    if not isinstance(raw_fields, Mapping) or not raw_fields:
        raise fail("fields", f"expected a non-empty mapping of field name to its declaration, not {raw_fields!r}")
    fields = [_field(str(n), spec, fail) for n, spec in raw_fields.items()]
    times = [f.name for f in fields if f.kind == "ts"]
    if len(times) > 1:
        raise fail("fields", f"one time field (kind ts) is allowed, not {len(times)}: {times}")
    if times and times[0] != time_field:
        raise fail("time.field", f"{time_field!r} is not the field of kind ts ({times[0]!r})")
    names = [f.name for f in fields]
    if time_field not in names:
        fields.insert(0, Field(time_field, "ts", doc="Event time."))
    elif fields[names.index(time_field)].kind != "ts":
        raise fail(f"fields.{time_field}.kind", f"the time field must have kind ts, not {raw_fields[time_field]}")
    _check_renames(fields, fail)

    key_value = data.get("key", "none")
    key_value = "none" if key_value is None else _text(key_value, "key", fail)
    dedupe = key_value if key_value in ("none", "hash") else "key"
    key = key_value if dedupe == "key" else None
    entity_value = data.get("entity", [])
    if isinstance(entity_value, str):
        entity: str | tuple[str, ...] = entity_value
    elif isinstance(entity_value, list) and all(isinstance(e, str) for e in entity_value):
        entity = tuple(entity_value)
    else:
        raise fail("entity", f"expected a field name or a list of them, not {entity_value!r}")
    names = [f.name for f in fields]
    for role, values in (("key", [key] if key else []), ("entity", [entity] if isinstance(entity, str) else entity)):
        for v in values:
            if v not in names:
                raise fail(role, f"{v!r} is not a field; fields: {names}")
    extra = _choice(data.get("extra", "keep-numeric"), EXTRAS, "extra", fail)
    max_bytes = data.get("max_record_bytes", 65_536)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise fail("max_record_bytes", f"expected a positive integer, not {max_bytes!r}")
    assert dedupe in DEDUPES
    try:
        return Schema(
            _text(data.get("name", name), "name", fail),
            tuple(fields),
            key=key,
            time=time_field,
            entity=entity,
            max_record_bytes=max_bytes,
            time_format=time_format,  # type: ignore[arg-type]
            naive=naive,
            dedupe=dedupe,  # type: ignore[arg-type]
            extra=extra,  # type: ignore[arg-type]
            path=path,
        )
    except (SchemaError, ConfigError) as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _known(data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str, fail: Any) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise fail(f"{prefix}{unknown[0]}", f"unknown key; expected one of {list(allowed)}")


def _text(value: Any, key: str, fail: Any) -> str:
    if not isinstance(value, str) or not value:
        raise fail(key, f"expected a name, not {value!r}")
    return value


def _choice(value: Any, allowed: tuple[str, ...], key: str, fail: Any) -> str:
    if value not in allowed:
        raise fail(key, f"expected one of {list(allowed)}, not {value!r}")
    return str(value)


def _number(value: Any, key: str, fail: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise fail(key, f"expected a number, not {value!r}")
    try:
        number = float(value)  # YAML reads 1e6 (no dot) as text
    except (TypeError, ValueError):
        raise fail(key, f"expected a number, not {value!r}") from None
    if math.isnan(number):
        raise fail(key, f"expected a number, not {value!r}")
    return number


def _field(name: str, spec: Any, fail: Any) -> Field:
    at = f"fields.{name}"
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping):
        raise fail(at, f"expected a mapping with kind (or just the kind), not {spec!r}")
    _known(spec, _FIELD, f"{at}.", fail)
    kind = _choice(spec.get("kind"), _KINDS, f"{at}.kind", fail)
    low = _number(spec.get("min"), f"{at}.min", fail)
    high = _number(spec.get("max"), f"{at}.max", fail)
    if (low is not None or high is not None) and kind not in ("float", "int"):
        raise fail(at, f"min and max apply to numbers, not to kind {kind!r}")
    if low is not None and high is not None and low > high:
        raise fail(at, f"min must be <= max, not {spec.get('min')!r} > {spec.get('max')!r}")
    required = spec.get("required", True)
    if not isinstance(required, bool):
        raise fail(f"{at}.required", f"expected true or false, not {required!r}")
    max_length = spec.get("max_length", 256)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
        raise fail(f"{at}.max_length", f"expected a positive integer, not {max_length!r}")
    source = spec.get("from")
    if source is not None:
        source = _text(source, f"{at}.from", fail)
    return Field(
        name,
        kind,  # type: ignore[arg-type]
        required=required,
        min=low,
        max=high,
        max_length=max_length,
        doc=str(spec.get("doc", "") or ""),
        unit=str(spec.get("unit", "") or ""),
        source=source,
    )


def _check_renames(fields: list[Field], fail: Any) -> None:
    """An input name maps to one field, and never to the name of another field."""
    names = {f.name for f in fields}
    seen: dict[str, str] = {}
    for f in fields:
        if f.source is None or f.source == f.name:
            continue
        if f.source in names:
            raise fail(f"fields.{f.name}.from", f"{f.source!r} is already a field; rename it too or pick another name")
        if f.source in seen:
            raise fail(f"fields.{f.name}.from", f"{f.source!r} is already renamed to {seen[f.source]!r}")
        seen[f.source] = f.name

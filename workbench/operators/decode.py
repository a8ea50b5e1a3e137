"""Bulk decoding of NDJSON and tabular input, designed for dirty data.

First, the native fast path (:mod:`workbench.native`, when built) takes every simple
line — a flat object of schema fields, plain ASCII strings, numbers of the field's
type — straight into columns, and leaves the others (typically under 1 %) to the
general path below, line by line. It only decides what is certainly accepted, so both
paths give the same result.

A typed NDJSON decode in polars fails for the *whole* batch on one broken line, so
the general path is one pass that never leaves bulk code for clean lines:

1. Lines the parser would choke on are found vectorised — oversize records and
   invalid UTF-8 (by byte class), records that are not a JSON object (first/last
   byte), ``NaN``/``Infinity`` literals (``memchr`` search) — and blanked in a copy of
   the batch (same length, so line spans hold; polars skips blank lines).
2. One ``pl.read_ndjson`` decodes the rest with ``ignore_errors``: a wrong-typed
   number becomes null, and string fields arrive as text.
3. Only rows with a null number, or a string that looks like a JSON number, bool,
   object or array, are checked exactly against their raw line with :mod:`json` —
   a JSON string is never accepted as a number, nor a number as a string.
4. Should the bulk decode still fail (a pathological line no check caught), the lines
   are bisected until the culprit is isolated.

Every rejected line keeps its exact raw bytes and a reason.

Examples
--------
>>> from workbench.schema import SERVER_METRICS
>>> good = b'{"event_id":"a","ts":1700000000000,"host":"h1","cpu":1.5,"mem":2.0,'
>>> good += b'"latency_ms":3.0,"status":200}\\n'
>>> bad = b'{"event_id":"b","ts":1700000000000,"host":"h1","cpu":"1.5"}\\n'
>>> out = decode_ndjson(good + bad + b'{"event_id": \\n', SERVER_METRICS)
>>> out.frame.height, out.dead.height
(1, 2)
>>> out.dead["reason"].to_list()
["field 'cpu' must be a number, got a JSON string: '1.5'", 'broken JSON: the record is not a complete JSON object']
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from workbench import native
from workbench.native.lines import high_bytes, occurrences
from workbench.native.lines import newlines as find_newlines
from workbench.native.strings import first_byte_in
from workbench.schema import Schema

__all__ = ["DEAD_LETTER_SCHEMA", "Decoded", "RawLines", "decode_frame", "decode_ndjson"]

#: Columns of every dead-letter frame: the node, a stable ``reason_code`` to group by, the
#: ``field`` concerned (if any), the human ``reason`` and the exact ``raw`` record. A pipeline
#: adds ``ingested_at`` and the source ``offset`` of the batch.
DEAD_LETTER_SCHEMA = pl.Schema(
    {"node": pl.String, "reason_code": pl.String, "field": pl.String, "reason": pl.String, "raw": pl.Binary}
)

#: Reason codes, by the start or shape of the reason text (first match wins).
REASON_CODES: tuple[tuple[str, str], ...] = (
    (r"^future timestamp: ", "future_timestamp"),
    (r"^ragged CSV line ", "ragged_line"),
    (r"^unreadable Parquet row group ", "bad_row_group"),
    (r"^missing field ", "missing_field"),
    (r"^unknown field", "unknown_field"),
    (r" is outside \[", "out_of_bounds"),
    (r" does not fit a 64-bit integer", "out_of_bounds"),
    (r" is NaN$", "not_a_number"),
    (r" is infinite$", "infinite"),
    (r" characters long; limit ", "too_long"),
    (r" has no UTC offset", "naive_time"),
    (r"looks like epoch seconds|outside the years|not a valid time|is neither |not a number of epoch", "bad_time"),
    (r" must be |^wrong type|cannot parse ", "wrong_type"),
    (r"^broken JSON", "broken_json"),
    (r"^invalid UTF-8", "invalid_utf8"),
    (r"^record is [\d,]+ bytes", "too_large"),
    (r"^node '.*' failed", "node_failed"),
)


class RawLines:
    """The raw bytes of a batch with the spans of its non-blank lines.

    Row ``i`` of a batch decoded from ``data`` is line ``i`` here; ``first`` and
    ``last`` hold each line's first and last byte.
    """

    __slots__ = ("data", "ends", "first", "last", "starts")

    def __init__(self, data: bytes | bytearray, newlines: np.ndarray | None = None) -> None:
        self.data = data
        buf = np.frombuffer(data, dtype=np.uint8)
        nl = find_newlines(data) if newlines is None else newlines
        starts = np.concatenate(([0], nl + 1))
        ends = np.concatenate((nl, [len(data)]))
        # first and last byte of every line, gathered once (the decoder's checks use them)
        nonempty = ends > starts
        last = buf[np.maximum(ends - 1, 0)] if len(buf) else np.zeros(len(ends), dtype=np.uint8)
        # strip a trailing CR; blank (whitespace-only) lines are skipped as polars does
        cr = nonempty & (last == 13)
        if cr.any():
            ends = ends - cr.astype(ends.dtype)
            last[cr] = buf[np.maximum(ends[cr] - 1, 0)]
        keep = ends > starts
        starts, ends, last = starts[keep], ends[keep], last[keep]
        first = buf[starts] if len(starts) else np.zeros(0, dtype=np.uint8)
        if len(starts):
            # whitespace-only lines: cheap check on the first byte, exact check on those few
            maybe_blank = np.flatnonzero((first == 32) | (first == 9))
            if len(maybe_blank):
                blank = np.zeros(len(starts), dtype=bool)
                for i in maybe_blank:
                    blank[i] = not data[starts[i] : ends[i]].strip()
                starts, ends, first, last = starts[~blank], ends[~blank], first[~blank], last[~blank]
        self.starts = starts
        self.ends = ends
        self.first = first
        self.last = last

    def binary(self) -> pl.Series:
        """The lines as a polars Binary series over the same memory (no copy).

        Each value runs to the next line's start, so it may carry the newline.
        """
        n = len(self.starts)
        offsets = np.empty(n + 1, dtype=np.int64)
        offsets[:n] = self.starts
        offsets[n] = self.ends[-1] if n else 0
        arr = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(self.data)]
        )
        return pl.Series("raw", arr)

    def __len__(self) -> int:
        return len(self.starts)

    def line(self, i: int) -> bytes:
        """The raw bytes of line ``i`` (without its newline)."""
        return bytes(self.data[self.starts[i] : self.ends[i]])

    def lines(self, idx: np.ndarray | list[int]) -> list[bytes]:
        """The raw bytes of several lines."""
        return [self.line(int(i)) for i in idx]


@dataclass(frozen=True)
class Decoded:
    """Result of decoding one batch.

    Attributes
    ----------
    frame
        Records in the schema's wire types, one row per accepted line, plus a
        ``__line`` column (the line index in the batch) when the input was NDJSON.
    dead
        Rejected lines: ``node``, ``reason``, ``raw`` (exact bytes).
    records
        Records seen (non-blank lines, or rows of a tabular input).
    raw
        The batch's lines, to fetch the raw record of a row rejected later.
    """

    frame: pl.DataFrame
    dead: pl.DataFrame
    records: int
    raw: RawLines | None = None


def dead_letters(node: str, reasons: list[str], raws: list[bytes]) -> pl.DataFrame:
    """Build a dead-letter frame; the reason code and field are read from each reason.

    Examples
    --------
    >>> dead_letters("validate", ["field 'mem' = 14917.1 is outside [0, 100]"], [b"{}"]).row(0)[:3]
    ('validate', 'out_of_bounds', 'mem')
    """
    reason = pl.col("reason")
    code = pl.lit("other")
    for pattern, name in reversed(REASON_CODES):
        code = pl.when(reason.str.contains(pattern)).then(pl.lit(name)).otherwise(code)
    frame = pl.DataFrame({"node": [node] * len(reasons), "reason": reasons, "raw": raws})
    if frame.height == 0:
        return pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return frame.select(
        "node",
        code.alias("reason_code"),
        reason.str.extract(r"field '([^']*)'").alias("field"),
        "reason",
        "raw",
    ).cast(dict(DEAD_LETTER_SCHEMA))  # type: ignore[arg-type]


def rows_as_json(frame: pl.DataFrame) -> list[bytes]:
    """Each row as one JSON line: the raw record of a row that did not arrive as bytes.

    Split on ``\\n`` only: JSON may carry U+2028 and other line separators unescaped
    inside strings, and ``str.splitlines`` would cut a record there.

    Examples
    --------
    >>> rows_as_json(pl.DataFrame({"a": ["x\\u2028y", "z"], "__line": [0, 1]}))
    [b'{"a":"x\\xe2\\x80\\xa8y"}', b'{"a":"z"}']
    """
    if frame.height == 0:
        return []
    return frame.drop("__line", strict=False).write_ndjson().encode().split(b"\n")[:-1]


def _read(data: bytes | bytearray, schema: Schema) -> pl.DataFrame:
    # ignore_errors: a wrong-typed value becomes null (such rows are then checked
    # exactly); a syntax error still fails the whole call, so those lines go first.
    # rechunk: the reader returns dozens of chunks per column, and every later
    # operation on such a frame pays per chunk (``is_null`` 30x slower than on one)
    return pl.read_ndjson(io.BytesIO(data), schema=schema.wire_schema, ignore_errors=True).rechunk()


def decode_ndjson(
    data: bytes | bytearray, schema: Schema, *, node: str = "decode", newlines: np.ndarray | None = None
) -> Decoded:
    """Decode NDJSON bytes strictly into ``schema``'s wire types.

    Parameters
    ----------
    data
        Whole lines of NDJSON.
    schema
        The event schema.
    node
        Node name written into dead letters.
    newlines
        Positions of the ``\\n`` bytes in ``data``, when the source found them already.

    Returns
    -------
    Decoded
        Accepted rows (with ``__line``), dead letters and the raw lines.
    """
    raw = RawLines(data, newlines)
    n = len(raw)
    if n == 0:
        return Decoded(_empty_wire(schema), dead_letters(node, [], []), 0, raw)
    fast = native.parse_ndjson(raw.data, raw.starts, raw.ends, schema)
    if fast is not None:
        return _decode_rest(raw, schema, node, *fast)
    reasons = _unparseable(raw, schema)
    if reasons:
        data = _without(raw, sorted(reasons))
    keep = np.ones(n, dtype=bool)
    keep[list(reasons)] = False
    good = np.flatnonzero(keep)
    frames: list[pl.DataFrame] = []
    try:
        frame = _read(data, schema) if len(good) else None
    except pl.exceptions.PolarsError:
        frame = None
    if frame is not None and frame.height == len(good):
        frames.append(frame.with_columns(_line_numbers(good)))
    elif len(good):
        _decode_lines(raw, good, schema, frames, reasons)
    frame = pl.concat(frames) if frames else _empty_wire(schema)
    if len(frames) > 1:
        frame = frame.sort("__line")
    return _finish(frame, raw, schema, node, reasons)


def _decode_rest(raw: RawLines, schema: Schema, node: str, taken: np.ndarray, frame: pl.DataFrame) -> Decoded:
    """Finish a batch whose simple lines the native decoder took: the rest as before.

    The rest are the lines it flagged — typically under 1 % — each checked in Python
    for what the bulk checks of :func:`_unparseable` look for, then decoded by polars
    and type-checked exactly. The native rows need no type check: it takes a value only
    when its JSON type is the field's.
    """
    frame = frame.with_columns(_line_numbers(np.flatnonzero(taken)))
    rest = np.flatnonzero(~taken)
    reasons: dict[int, str] = {}
    if len(rest):
        for i in rest.tolist():
            why = _line_unparseable(raw.line(i), schema)
            if why is not None:
                reasons[i] = why
        good = np.array([i for i in rest.tolist() if i not in reasons], dtype=np.int64)
        frames: list[pl.DataFrame] = []
        _decode_lines(raw, good, schema, frames, reasons)
        if frames:
            slow = pl.concat(frames).sort("__line") if len(frames) > 1 else frames[0]
            found = _wrong_types(slow, raw, schema)
            if found:
                reasons.update(found)
                slow = _drop_lines(slow, found)
            if slow.height:  # few rows, merged in line order
                frame = pl.concat([frame, slow]).sort("__line")
    return _result(frame, raw, node, reasons)


def _line_unparseable(line: bytes, schema: Schema) -> str | None:
    """What :func:`_unparseable` finds, for one line (the same checks, the same order)."""
    if len(line) > schema.max_record_bytes:
        return _oversize(len(line), schema)
    why = _utf8_reason(line)
    if why is not None:
        return why
    if not _is_object(line):
        return _NOT_AN_OBJECT
    if any(token in line for token in _NOT_JSON):
        return check_record(line, schema)
    return None


_NOT_AN_OBJECT = "broken JSON: the record is not a complete JSON object"


def _oversize(size: int, schema: Schema) -> str:
    return f"record is {size:,} bytes; a {schema.name} record is at most {schema.max_record_bytes:,}"


def _utf8_reason(line: bytes) -> str | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8: byte 0x{line[exc.start]:02x} at position {exc.start}"
    return None


def _is_object(line: bytes) -> bool:
    text = line.strip()
    return text.startswith(b"{") and text.endswith(b"}")


def _line_numbers(idx: np.ndarray) -> pl.Series:
    """The ``__line`` column: cast in numpy first (polars converts int64 to UInt32 value by value, 60x slower)."""
    return pl.Series("__line", idx.astype(np.uint32, copy=False))


def _empty_wire(schema: Schema) -> pl.DataFrame:
    return pl.DataFrame(schema={**schema.wire_schema, "__line": pl.UInt32})


def _unparseable(raw: RawLines, schema: Schema) -> dict[int, str]:
    """Lines the bulk decoder cannot parse, found without touching each line in Python.

    Oversize records and invalid UTF-8 (by byte class), records that are not a JSON
    object (first and last byte), and ``NaN`` / ``Infinity`` literals (by a ``memchr``
    search, then checked exactly). Anything subtler is caught by bisection.
    """
    reasons: dict[int, str] = {}
    sizes = raw.ends - raw.starts
    for big in np.flatnonzero(sizes > schema.max_record_bytes):
        reasons[int(big)] = _oversize(int(sizes[big]), schema)
    for line_no, reason in _invalid_utf8_lines(raw).items():
        reasons.setdefault(line_no, reason)
    for k in np.flatnonzero((raw.first != 123) | (raw.last != 125)):  # not '{' … '}'
        i = int(k)
        if i in reasons:
            continue
        if not _is_object(raw.line(i)):
            reasons[i] = _NOT_AN_OBJECT
    for i in _lines_with_literals(raw):
        if i not in reasons:
            why = check_record(raw.line(i), schema)
            if why is not None:
                reasons[i] = why
    return reasons


#: Literals that are not JSON but that the bulk parser chokes on.
_NOT_JSON = (b"NaN", b"Infinity")


def _lines_with_literals(raw: RawLines) -> list[int]:
    """Lines holding ``NaN`` or ``Infinity`` anywhere (in a string too: they are checked exactly).

    Their first bytes are rare in JSON, so a ``memchr`` search of the whole batch finds
    them; data where they are common is searched per line by polars instead.
    """
    limit = len(raw) // 16 + 256
    found = [occurrences(raw.data, token, limit=limit) for token in _NOT_JSON]
    if any(f is None for f in found):
        lines = raw.binary()
        hit = lines.bin.contains(_NOT_JSON[0]) | lines.bin.contains(_NOT_JSON[1])
        return hit.arg_true().to_list()
    at = np.concatenate([f for f in found if f is not None])
    return _lines_of(raw, np.sort(at))


#: How a string decoded from a JSON number, bool, object or array starts.
_NOT_A_STRING_START = b"-0123456789 tf{["
#: A decoded string value JSON may have carried as a number, bool, object or array.
_NOT_A_STRING = r"^(?:-?\d[\d.eE+-]*|true|false|\{.*\}|\[.*\])$"


def _finish(frame: pl.DataFrame, raw: RawLines, schema: Schema, node: str, reasons: dict[int, str]) -> Decoded:
    """Reject rows whose values had the wrong JSON type, and build the result."""
    found = _wrong_types(frame, raw, schema)
    if found:
        reasons = {**reasons, **found}
        frame = _drop_lines(frame, found)
    return _result(frame, raw, node, reasons)


def _result(frame: pl.DataFrame, raw: RawLines, node: str, reasons: dict[int, str]) -> Decoded:
    bad = sorted(reasons)
    return Decoded(frame, dead_letters(node, [reasons[i] for i in bad], raw.lines(bad)), len(raw), raw)


def _drop_lines(frame: pl.DataFrame, lines: dict[int, str]) -> pl.DataFrame:
    at = np.searchsorted(frame["__line"].to_numpy(), sorted(lines))  # __line ascends
    keep = np.ones(frame.height, dtype=bool)
    keep[at] = False
    return frame.filter(pl.Series(keep))


def _wrong_types(frame: pl.DataFrame, raw: RawLines, schema: Schema) -> dict[int, str]:
    """Rows of a polars-decoded frame whose values had the wrong JSON type, with the reason.

    The decoder turns a wrong-typed number into null, and reads string fields as
    text, so a JSON ``123`` and ``"123"`` both arrive as ``"123"``. Rows with a null
    number, or a string that looks like a number, bool, object or array, are few:
    their raw lines are checked exactly, one by one.
    """
    nums = [f.name for f in schema.fields if f.kind in ("float", "int")]
    strs = [f.name for f in schema.fields if f.kind == "str"]
    found: dict[int, str] = {}
    if frame.height and (nums or strs):
        # cheap and exact as a pre-filter: a value JSON sent as a number, bool, object or
        # array starts with one of these bytes (read from the string views, no string walked)
        maybe = np.zeros(frame.height, dtype=bool)
        for c in nums:
            if frame[c].null_count():
                maybe |= frame[c].is_null().to_numpy()
        for c in strs:
            maybe |= first_byte_in(frame[c], _NOT_A_STRING_START)
        rows = np.flatnonzero(maybe)
        if len(rows):
            few = frame[rows].rechunk()  # a compact copy (see validate_frame)
            exact = [pl.col(c).is_null() for c in nums]
            exact += [pl.col(c).str.contains(_NOT_A_STRING).fill_null(False) for c in strs]
            for i in few.filter(pl.any_horizontal(exact))["__line"].to_list():
                reason = check_record(raw.line(i), schema)
                if reason is not None:
                    found[i] = reason
    return found


def _without(raw: RawLines, bad: list[int]) -> bytes:
    """The batch minus lines ``bad`` (sorted), in one copy: the runs between them joined.

    The runs are memoryviews: slicing the ``bytearray`` itself would copy each first.
    """
    with memoryview(raw.data) as view:
        parts, at = [], 0
        for i in bad:
            parts.append(view[at : int(raw.starts[i])])
            at = int(raw.ends[i])
        parts.append(view[at:])
        joined = b"\n".join(parts)
        for part in parts:
            part.release()
    return joined


def _decode_lines(
    raw: RawLines,
    idx: np.ndarray,
    schema: Schema,
    frames: list[pl.DataFrame],
    reasons: dict[int, str],
) -> None:
    """Decode lines ``idx`` in bulk, bisecting around any line that still fails."""
    if len(idx) == 0:
        return
    blob = b"\n".join(raw.lines(idx)) + b"\n"
    try:
        frame = _read(blob, schema)
    except pl.exceptions.PolarsError as exc:
        if len(idx) == 1:
            line = raw.line(int(idx[0]))
            reasons[int(idx[0])] = check_record(line, schema) or _polars_reason(exc)
            return
        mid = len(idx) // 2
        _decode_lines(raw, idx[:mid], schema, frames, reasons)
        _decode_lines(raw, idx[mid:], schema, frames, reasons)
        return
    frames.append(frame.with_columns(_line_numbers(idx)))


def _polars_reason(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "parse" in msg and "as" in msg and "cannot" in msg:
        return f"wrong type: {msg}"
    return f"broken JSON: {msg}"


def _lines_of(raw: RawLines, positions: np.ndarray) -> list[int]:
    """Distinct line indices holding the given (sorted) byte positions."""
    if not len(positions):
        return []
    idx = np.searchsorted(raw.starts, positions, side="right") - 1
    idx = idx[np.concatenate(([True], idx[1:] != idx[:-1]))]
    return [int(i) for i in idx if i >= 0]


def _invalid_utf8_lines(raw: RawLines) -> dict[int, str]:
    """Lines holding invalid UTF-8: only lines with non-ASCII bytes are decoded."""
    bad: dict[int, str] = {}
    for i in _lines_of(raw, high_bytes(raw.data)):
        why = _utf8_reason(raw.line(i))
        if why is not None:
            bad[i] = why
    return bad


_JSON_NAMES = {str: "a JSON string", bool: "a JSON boolean", list: "a JSON array", dict: "a JSON object"}


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def check_record(line: bytes, schema: Schema) -> str | None:
    """Check one record exactly against ``schema``'s JSON types.

    Returns the reason it is rejected, or ``None`` when the types are right (value
    rules such as bounds are checked later, in bulk).

    Examples
    --------
    >>> from workbench.schema import SERVER_METRICS
    >>> check_record(b'{"event_id": 5}', SERVER_METRICS)
    "field 'event_id' must be a string, got a JSON number: 5"
    >>> check_record(b'{"cpu": NaN}', SERVER_METRICS)
    "field 'cpu' is NaN"
    """
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"broken JSON: {exc}"
    if not isinstance(record, dict):
        return f"broken JSON: expected a JSON object, got {_json_type(record)}"
    for f in schema.fields:
        value = record.get(f.name)
        if value is None:
            continue
        shown = _show(value)
        if f.kind == "str" and not isinstance(value, str):
            return f"field {f.name!r} must be a string, got {_json_type(value)}: {shown}"
        if f.kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"field {f.name!r} must be a number, got {_json_type(value)}: {shown}"
            if isinstance(value, float) and math.isnan(value):
                return f"field {f.name!r} is NaN"
            if isinstance(value, float) and math.isinf(value):
                return f"field {f.name!r} is infinite"
            if f.kind == "int" and isinstance(value, float):
                return f"field {f.name!r} must be an integer, got {shown}"
            if f.kind == "int" and not -(2**63) <= value < 2**63:
                return f"field {f.name!r} = {value} does not fit a 64-bit integer"
        epoch = schema.time_format.startswith("epoch")
        allowed: tuple[type, ...] = (int, float) if epoch else (str,) if schema.time_format == "iso" else (str, int)
        if f.kind == "ts" and (isinstance(value, bool) or not isinstance(value, allowed)):
            expected = {"auto": "epoch milliseconds or an ISO-8601 string", "iso": "an ISO-8601 string"}.get(
                schema.time_format, "a number"
            )
            return f"field {f.name!r} must be {expected}, got {_json_type(value)}: {shown}"
    return None


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_frame(frame: pl.DataFrame, schema: Schema, *, node: str = "decode") -> Decoded:
    """Convert a tabular batch (CSV, Parquet) strictly into the wire types.

    Strings are parsed as numbers where the schema says so (a CSV has no JSON
    types); a value that does not parse is dead-lettered with its row as JSON, and so
    is a typed value that would change in the conversion (``200.9`` in a float column
    for an int field): no silent casts.

    Examples
    --------
    >>> from workbench.schema import SERVER_METRICS
    >>> df = pl.DataFrame({"event_id": ["a", "b"], "ts": ["1700000000000"] * 2,
    ...     "host": ["h", "h"], "cpu": ["1.5", "x"], "mem": [1.0, 1.0],
    ...     "latency_ms": [1.0, 1.0], "status": [200, 200]})
    >>> out = decode_frame(df, SERVER_METRICS)
    >>> out.frame.height, out.dead["reason"].to_list()
    (1, ["field 'cpu': cannot parse 'x' as float"])
    """
    n = frame.height
    wire = schema.wire_schema
    cols = []
    problems = []
    for f in schema.fields:
        if f.name not in frame.columns:
            cols.append(pl.lit(None, dtype=wire[f.name]).alias(f.name))
            continue
        src = pl.col(f.name)
        target = pl.String() if f.kind in ("str", "ts") else wire[f.name]
        cast = src.cast(target, strict=False)
        if frame.schema[f.name] == pl.String and f.kind in ("float", "int"):
            cast = src.str.strip_chars().cast(target, strict=False)
        cols.append(cast.alias(f.name))
        problems.append(
            pl.when(src.is_not_null() & cast.is_null()).then(
                pl.format(f"field '{f.name}': cannot parse '{{}}' as {f.kind}", src.cast(pl.String))
            )
        )
        dtype = frame.schema[f.name]
        if f.kind in ("float", "int") and dtype != pl.String and dtype != target:
            # a typed column (Parquet) converts only without loss: 200.9 is no int status
            problems.append(
                pl.when(src.is_not_null() & cast.is_not_null() & (cast.cast(dtype, strict=False) != src)).then(
                    pl.format(
                        f"field '{f.name}': cannot parse '{{}}' as {f.kind} without loss (a {dtype} column)",
                        src.cast(pl.String),
                    )
                )
            )
    out = frame.select(
        *cols,
        __line=pl.int_range(n, dtype=pl.UInt32),
        __reason=pl.coalesce(problems) if problems else pl.lit(None, pl.String),
    )
    bad = out.filter(pl.col("__reason").is_not_null())
    good = out.filter(pl.col("__reason").is_null()).drop("__reason")
    raws = rows_as_json(frame[bad["__line"].to_list()])
    return Decoded(good, dead_letters(node, bad["__reason"].to_list(), raws), n, None)

"""CSV and Parquet read row by row: a bad line or row group is a dead letter, not the end of the run.

* **CSV** is read in blocks cut at line ends; offsets are byte positions after the
  header line. A line whose field count differs from the header's (a ragged line) is
  returned as a dead letter with its line number and bytes; the rest of its batch is
  decoded as usual. Counting fields is vectorised when a block has no quote character;
  a block with quotes is split by Python's ``csv`` module (quoted commas and line
  breaks then count right inside a block). An empty file, a binary one (NUL bytes) or
  one that is not UTF-8 in its header is one :class:`~workbench.errors.SourceError`.
* **Parquet** is read one row group at a time (pyarrow); offsets are row numbers. A row
  group that cannot be read (corrupt pages) is one dead letter naming the group and its
  rows; a file whose footer cannot be read (truncated, not Parquet) is one
  ``SourceError``.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "e.csv"
>>> _ = p.write_text("a,b\\n1,2\\n3\\n4,5\\n")
>>> header, start = csv_header(p)
>>> [(b.frame.height, b.dead) for b in csv_batches(p, header, start, 2, max_rows=10, block_bytes=1 << 16)]
[(2, [('ragged CSV line 3: 1 field, the header has 2', b'3')])]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import SourceError
from workbench.native.lines import newlines

__all__ = ["TabularBatch", "csv_batches", "csv_header", "parquet_batches"]

_HEAD = 1 << 16


@dataclass
class TabularBatch:
    """Rows read (all strings for CSV), dead letters ``(reason, raw)``, and where the reader stands after."""

    frame: pl.DataFrame
    offset: int
    line: int  # CSV: the file line number the next batch starts at (Parquet: row number)
    dead: list[tuple[str, bytes]] = field(default_factory=list)


def csv_header(path: Path) -> tuple[list[str], int]:
    """The header's column names and the byte offset of the first data line; unreadable files raise."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    where = f"file source {str(path)!r}"
    if not head.strip():
        raise SourceError(f"{where}: the CSV file is empty (no header line)")
    if b"\x00" in head:
        raise SourceError(f"{where}: not a CSV text file (binary data: NUL bytes in its first {len(head)} bytes)")
    end = head.find(b"\n")
    if end < 0 and len(head) == _HEAD:
        raise SourceError(f"{where}: no line end in the first {_HEAD} bytes: not a CSV file with a header line")
    first = head[: end + 1] if end >= 0 else head
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(f"{where}: the CSV header is not UTF-8 text") from None
    names = next(csv.reader([text.rstrip("\r\n")]), [])
    if not [n for n in names if n.strip()]:
        raise SourceError(f"{where}: the CSV header line is blank")
    if len(set(names)) != len(names):
        raise SourceError(f"{where}: the CSV header repeats a column name: {names}")
    return names, len(first)


def _read(path: Path, pos: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(pos)
        return f.read(size)


def csv_batches(
    path: Path, header: list[str], offset: int, line: int, *, max_rows: int, block_bytes: int
) -> Iterator[TabularBatch]:
    """Batches of at most ``max_rows`` lines from byte ``offset`` (file line number ``line``)."""
    size = block_bytes
    while True:
        data = _read(path, offset, size)
        if not data:
            return
        nl = newlines(data)
        at_eof = len(data) < size
        if len(nl) >= max_rows:
            cut = int(nl[max_rows - 1]) + 1
        elif not at_eof:
            if not len(nl):
                size *= 2
                continue
            cut = int(nl[-1]) + 1
        else:
            cut = len(data)
        chunk = data[:cut]
        frame, dead, lines = _parse(chunk, header, line)
        offset += cut
        line += lines
        size = block_bytes
        yield TabularBatch(frame, offset, line, dead)


def _parse(chunk: bytes, header: list[str], first: int) -> tuple[pl.DataFrame, list[tuple[str, bytes]], int]:
    """Rows of ``chunk`` as strings, ragged lines as dead letters, and the number of lines it spans."""
    n = len(header)
    if b'"' in chunk:
        return _parse_quoted(chunk, header, first)
    buf = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if not len(ends) or ends[-1] != len(chunk) - 1:
        ends = np.append(ends, len(chunk))  # the last line lacks its newline
    starts = np.concatenate(([0], ends[:-1] + 1))
    commas = np.flatnonzero(buf == 44)
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    stripped = ends - starts - (buf[np.maximum(ends - 1, 0)] == 13)  # a trailing \r does not count
    blank = stripped <= 0
    bad = (fields != n) & ~blank
    dead = [
        (_ragged(first + int(i), int(fields[i]), n), chunk[starts[i] : ends[i]].rstrip(b"\r"))
        for i in np.flatnonzero(bad)
    ]
    if dead:
        keep = np.flatnonzero(~bad & ~blank)
        chunk = b"".join(chunk[starts[i] : ends[i]] + b"\n" for i in keep)
    frame = _frame(chunk, header) if chunk.strip() else pl.DataFrame(schema=dict.fromkeys(header, pl.String))
    return frame, dead, len(starts)


def _frame(chunk: bytes, header: list[str]) -> pl.DataFrame:
    return pl.read_csv(chunk, has_header=False, new_columns=header, infer_schema=False, encoding="utf8-lossy")


def _parse_quoted(chunk: bytes, header: list[str], first: int) -> tuple[pl.DataFrame, list[tuple[str, bytes]], int]:
    n = len(header)
    text = chunk.decode("utf-8", errors="replace")
    rows, dead = [], []
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 0
    for record in reader:
        line = first + start
        start = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != n:
            raw = ",".join(record).encode()
            dead.append((_ragged(line, len(record), n), raw))
            continue
        rows.append(record)
    frame = pl.DataFrame(rows, schema=dict.fromkeys(header, pl.String), orient="row")
    return frame, dead, chunk.count(b"\n") + (not chunk.endswith(b"\n"))


def _ragged(line: int, got: int, want: int) -> str:
    return f"ragged CSV line {line}: {got} field{'s' if got != 1 else ''}, the header has {want}"


def parquet_batches(path: Path, offset: int, *, max_rows: int) -> Iterator[TabularBatch]:
    """Batches of at most ``max_rows`` rows from row ``offset``, one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"file source {str(path)!r}"
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{where}: not a readable Parquet file ({' '.join(str(exc).split())})") from None
    row = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if row + n <= offset:
            row += n
            continue
        try:
            frame = pl.from_arrow(pf.read_row_group(g))
        except (pa.ArrowException, OSError) as exc:
            reason = f"unreadable Parquet row group {g} (rows {row}-{row + n - 1}): {' '.join(str(exc).split())}"
            row += n
            yield TabularBatch(pl.DataFrame(), row, row, [(reason, b"")])
            continue
        assert isinstance(frame, pl.DataFrame)
        frame = frame.slice(max(0, offset - row))
        done = row + n - frame.height
        for part in frame.iter_slices(max_rows):
            done += part.height
            yield TabularBatch(part, done, done)
        row += n

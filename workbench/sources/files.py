"""File source: replay JSONL, CSV or Parquet, or tail a growing JSONL file.

Offsets are byte positions (JSONL, CSV: after the header line) or row numbers
(Parquet); ``seek`` resumes exactly there, so a replay restarted from a checkpoint
reads each record once. CSV and Parquet are read row by row (:mod:`.tabular`): a
ragged CSV line or an unreadable row group is a dead letter naming its line or group.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "e.jsonl"
>>> _ = p.write_text('{"a": 1}\\n{"a": 2}\\n{"a": 3}\\n')
>>> src = FileSource(p, max_rows=2)
>>> [(b.rows, b.offset) for b in src.batches()]
[(2, 18), (1, 27)]
>>> src.seek(18)
>>> [bytes(b.data) for b in src.batches()]
[b'{"a": 3}\\n']
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from workbench.clock import Clock
from workbench.config import parse_duration
from workbench.errors import ConfigError, SourceError
from workbench.native.lines import newlines
from workbench.sources.base import RawBatch, Source
from workbench.sources.tabular import csv_batches, csv_header, parquet_batches

__all__ = ["FileSource"]

_BLOCK = 64 << 10  # bytes fingerprinted at each end of a file (identity)
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class FileSource(Source):
    """Read events from a file.

    Parameters
    ----------
    path
        The file. Its format comes from the suffix (``.jsonl``/``.ndjson``, ``.csv``,
        ``.parquet``) unless ``format`` says otherwise.
    max_rows
        Records per batch at most.
    block_bytes
        JSONL is read in blocks of about this size.
    speed
        ``None`` replays as fast as possible; ``1.0`` paces by event time in real
        time, ``10.0`` ten times faster (needs ``time_field``).
    follow
        Keep reading as the file grows (``tail -f``); a partial last line waits for
        its newline, and a partial batch is emitted after ``max_delay``.
    max_delay
        Longest a record waits in follow mode before its batch is emitted.
    poll
        How often to look for new data in follow mode.
    """

    replayable = True

    def __init__(
        self,
        path: str | Path,
        *,
        format: str | None = None,  # noqa: A002
        max_rows: int = 100_000,
        block_bytes: int = 16 << 20,
        speed: float | None = None,
        time_field: str = "ts",
        follow: bool = False,
        max_delay: str | float | timedelta = 0.5,
        poll: str | float | timedelta = 0.1,
        name: str = "file",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock)
        self.path = Path(path)
        fmt = format or _FORMATS.get(self.path.suffix.lower())
        if fmt not in ("jsonl", "csv", "parquet"):
            raise ConfigError(
                f"file source {str(self.path)!r}: unknown format {self.path.suffix!r}; "
                "use .jsonl, .ndjson, .csv or .parquet, or pass format="
            )
        if max_rows <= 0:
            raise ConfigError(f"file source: max_rows must be > 0, not {max_rows}")
        if speed is not None and speed <= 0:
            raise ConfigError(f"file source: speed must be > 0 (or None for as fast as possible), not {speed}")
        if follow and fmt != "jsonl":
            raise ConfigError(f"file source: follow works with JSONL files, not {fmt}")
        self.format = fmt
        self.max_rows = max_rows
        self.block_bytes = block_bytes
        self.speed = speed
        self.time_field = time_field
        self.follow = follow
        self.max_delay_s = parse_duration(max_delay, what="max_delay") / 1000
        self.poll_s = parse_duration(poll, what="poll") / 1000
        self.offset = 0
        self._line = 0  # CSV: the file line number at ``offset``
        self._pace: tuple[float, float] | None = None  # (event ms, monotonic) at start

    @property
    def bulk(self) -> bool:
        """A file read as fast as possible never waits for data."""
        return not self.follow and self.speed is None

    def seek(self, offset: Any) -> None:
        """Continue from a byte offset (JSONL, CSV) or row number (Parquet)."""
        if not isinstance(offset, int) or offset < 0:
            raise SourceError(f"file source {str(self.path)!r}: offset must be an int >= 0, not {offset!r}")
        self.offset = offset
        self._line = 0  # CSV: counted again from the offset
        self._pace = None

    def identity(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """What a checkpoint checks on resume: the path (relative to ``relative_to``), format, size, fingerprint.

        The fingerprint is a SHA-256 of the file's first and last 64 KiB, so another
        file, a truncated one or one rewritten in place is told apart without reading
        it whole. A file being followed (``follow``) grows: only its first block counts.
        """
        import hashlib
        import os

        path = self.path.resolve()
        shown = os.path.relpath(path, Path(relative_to).resolve()) if relative_to is not None else str(path)
        if not path.exists():
            return {"kind": "file", "path": shown, "format": self.format, "size": None, "fingerprint": None}
        if self.follow:  # a growing file: its size and ends change by design
            return {"kind": "file", "path": shown, "format": self.format, "size": None, "fingerprint": None}
        size = path.stat().st_size
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(_BLOCK))
            if size > _BLOCK:
                f.seek(max(_BLOCK, size - _BLOCK))
                digest.update(f.read(_BLOCK))
        return {
            "kind": "file",
            "path": shown,
            "format": self.format,
            "size": size,
            "fingerprint": digest.hexdigest()[:32],
        }

    def _open_check(self) -> None:
        if not self.path.exists() and not self.follow:
            raise SourceError(f"file source: {str(self.path)!r} does not exist")

    def _batches(self) -> Iterator[RawBatch]:
        self._open_check()
        if self.format == "jsonl":
            yield from self._jsonl()
        else:
            yield from self._tabular()

    # -- JSONL -------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[RawBatch]:
        size = self.block_bytes
        waiting_since: float | None = None  # follow mode: when complete lines first waited
        while not self.stopped:
            data = self._read_block(self.offset, size)
            at_eof = len(data) < size
            nl = newlines(data)  # found once: they count the lines and cut the batch
            if len(nl) >= self.max_rows:
                cut = int(nl[self.max_rows - 1]) + 1
            elif not at_eof:
                if not len(nl):  # one line longer than a block: read more at once
                    size *= 2
                    continue
                cut = int(nl[-1]) + 1
            elif not self.follow:
                cut = len(data)  # the last line may lack its newline
            else:
                cut = int(nl[-1]) + 1 if len(nl) else 0
                now = self.clock.monotonic()
                if cut and waiting_since is None:
                    waiting_since = now
                if not cut or now - (waiting_since or now) < self.max_delay_s:
                    self.clock.sleep(self.poll_s)
                    continue
            if cut == 0:
                return
            waiting_since, size = None, self.block_bytes
            del data[cut:]  # in place: a batch is never copied
            nl = nl[: int(np.searchsorted(nl, cut))]
            self.offset += cut
            self._pace_to(data)
            yield RawBatch(data=data, offset=self.offset, rows=len(nl) + (data[-1] != 10), newlines=nl)

    def _read_block(self, pos: int, size: int) -> bytearray:
        """Up to ``size`` bytes from ``pos``, in a buffer the batch can then be cut from."""
        buf = bytearray(size)
        got = 0
        try:
            with open(self.path, "rb", buffering=0) as f:
                f.seek(pos)
                view = memoryview(buf)
                while got < size:
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
                view.release()
        except FileNotFoundError:
            if self.follow:
                return bytearray()
            raise SourceError(f"file source: {str(self.path)!r} disappeared while reading") from None
        del buf[got:]
        return buf

    # -- CSV / Parquet -----------------------------------------------------------------
    def _tabular(self) -> Iterator[RawBatch]:
        """CSV and Parquet row by row: bad lines and row groups become dead letters (:mod:`.tabular`)."""
        if self.format == "csv":
            header, start = csv_header(self.path)
            if self.offset < start:
                self.offset, self._line = start, 2
            elif not self._line:  # resumed at a byte offset: count the lines before it once
                self._line = 1 + _count_lines(self.path, self.offset)
            batches = csv_batches(
                self.path, header, self.offset, self._line, max_rows=self.max_rows, block_bytes=self.block_bytes
            )
        else:
            batches = parquet_batches(self.path, self.offset, max_rows=self.max_rows)
        for b in batches:
            if self.stopped:
                return
            self.offset, self._line = b.offset, b.line
            meta = {"dead": b.dead} if b.dead else {}
            yield RawBatch(frame=b.frame, offset=self.offset, rows=b.frame.height + len(b.dead), meta=meta)

    # -- pacing ------------------------------------------------------------------------
    def _pace_to(self, batch: bytes | bytearray) -> None:
        """At a speed factor, sleep until the batch's last event time is due."""
        if self.speed is None:
            return
        last = _event_ms(batch.rstrip(b"\n").rsplit(b"\n", 1)[-1], self.time_field)
        if last is None:
            return
        now = self.clock.monotonic()
        if self._pace is None:
            first = _event_ms(batch.split(b"\n", 1)[0], self.time_field)
            self._pace = (float(first if first is not None else last), now)
        t0, m0 = self._pace
        due = m0 + (last - t0) / 1000 / self.speed
        self.clock.sleep(due - now)


def _count_lines(path: Path, end: int) -> int:
    """Newlines in the first ``end`` bytes of ``path``."""
    count, pos = 0, 0
    with open(path, "rb") as f:
        while pos < end:
            block = f.read(min(16 << 20, end - pos))
            if not block:
                break
            count += len(newlines(block))
            pos += len(block)
    return count


def _event_ms(line: bytes | bytearray, field: str) -> float | None:
    """Event time of one line in epoch ms (None when it cannot be read)."""
    try:
        value = json.loads(line).get(field)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp() * 1000
        except ValueError:
            return None
    return None

"""The Parquet lake: ``<root>/<output>/date=YYYY-MM-DD/part-<epoch>.parquet``, queried with DuckDB.

Sinks write one file per output, partition and checkpoint epoch, atomically. A file
whose epoch is newer than the last checkpoint is removed on restore, so a restart
after a crash neither loses nor doubles rows.

A lake holding ``_encryption.json`` is encrypted at rest (Parquet modular encryption,
:mod:`workbench.storage.lakecrypt`): it is written and read with the master keys of
``WORKBENCH_LAKE_KEYS_FILE`` (or the ``kms`` given), transparently, and a read without
them fails with a message naming the lake. Queries of an encrypted lake decrypt into
memory before DuckDB sees the rows.

Examples
--------
>>> import tempfile, polars as pl
>>> lake = Lake(tempfile.mkdtemp())
>>> from datetime import datetime, UTC
>>> df = pl.DataFrame({"host": ["a"], "window_start": [datetime(2024, 1, 1, tzinfo=UTC)], "count": [3]})
>>> _ = lake.write("windows", df, epoch=1)
>>> lake.query("select host, count from windows").rows()
[('a', 3)]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

import polars as pl
from streamz import Stream

from workbench.errors import ConfigError, EncryptionError
from workbench.storage.atomic import atomic_write
from workbench.storage.held import HeldSink
from workbench.storage.kms import KmsClient, LocalKeyFile, lake_keys_path
from workbench.storage.lakecrypt import MARKER, LakeEncryption, ParquetCrypto, key_material_path, read_marker

__all__ = ["Lake", "LakeSink"]

_PART = re.compile(r"part-(\d{8})(?:-\d+)?\.parquet$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Lake:
    """A folder of Parquet outputs.

    Parameters
    ----------
    root
        Lake folder (``data/lake`` by default in the CLI).
    partition
        Partition files by ``date=`` of the time column (``False``: flat files).
    encryption
        Encrypt the lake at rest with this spec (recorded in ``_encryption.json`` at the
        first write); a lake that holds the marker is encrypted without it.
    kms
        The key client (default: the key file of ``WORKBENCH_LAKE_KEYS_FILE``).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        partition: bool = True,
        encryption: LakeEncryption | None = None,
        kms: KmsClient | None = None,
    ) -> None:
        self.root = Path(root)
        self.partition = partition
        self.encryption = encryption
        self.kms = kms
        self._crypto: ParquetCrypto | None = None

    @property
    def encrypted(self) -> bool:
        """Whether the lake is (or is to be) encrypted at rest."""
        return self.encryption is not None or (self.root / MARKER).exists()

    def crypto(self) -> ParquetCrypto:
        """The lake's encryption, with its keys; fails with a clear message without them."""
        if self._crypto is None:
            if self.kms is None:
                path = lake_keys_path()
                try:
                    self.kms = LocalKeyFile(path)
                except EncryptionError as exc:
                    raise EncryptionError(
                        f"lake {str(self.root)!r} is encrypted (Parquet modular encryption) and cannot be read "
                        f"without its master keys: no key file at {path}. Set WORKBENCH_LAKE_KEYS_FILE to the "
                        "lake's key file"
                    ) from exc
            self._crypto = ParquetCrypto(self.kms, what=f"lake {str(self.root)!r}")
        return self._crypto

    def _spec(self) -> LakeEncryption | None:
        marked = read_marker(self.root)
        if self.encryption is not None and marked is not None and marked != self.encryption:
            raise ConfigError(f"lake {str(self.root)!r}: encrypted as {marked}, not {self.encryption}")
        return marked or self.encryption

    def outputs(self) -> list[str]:
        """Names of the outputs holding at least one file."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.rglob("*.parquet")))

    def write(self, output: str, frame: pl.DataFrame, *, epoch: int, time: str | None = None) -> list[Path]:
        """Write ``frame`` as the files of ``epoch`` (replacing any of the same epoch)."""
        if not _NAME.match(output):
            raise ConfigError(f"lake output {output!r}: use letters, digits and underscores")
        if frame.height == 0:
            return []
        base = self.root / output
        time = time or next((c for c in ("window_start", "ts") if c in frame.columns), None)
        paths: list[Path] = []
        if self.partition and time is not None and frame.schema[time] == pl.Datetime("ms", "UTC"):
            parts = frame.with_columns(__date=pl.col(time).dt.date().cast(pl.String)).partition_by(
                "__date", as_dict=True, include_key=False
            )
            for (date,), part in sorted(parts.items(), key=lambda kv: str(kv[0])):
                paths.append(self._write_file(base / f"date={date}" / f"part-{epoch:08d}.parquet", part))
        else:
            paths.append(self._write_file(base / f"part-{epoch:08d}.parquet", frame))
        return paths

    def _write_file(self, path: Path, frame: pl.DataFrame) -> Path:
        spec = self._spec()
        if spec is None:
            atomic_write(path, lambda f: frame.write_parquet(f, compression="zstd", statistics=True))
            return path
        if not (self.root / MARKER).exists():
            marker = spec.to_json().encode()

            def write(f: BinaryIO) -> None:
                f.write(marker)

            atomic_write(self.root / MARKER, write)
        self.crypto().write(path, frame, spec)
        return path

    def files(self, output: str | None = None) -> list[Path]:
        """The Parquet files of ``output`` (default: every output), sorted."""
        base = self.root if output is None else self.root / output
        return sorted(base.rglob("*.parquet")) if base.exists() else []

    def rollback(self, output: str, epoch: int) -> int:
        """Delete files of ``output`` written after ``epoch``; returns how many."""
        removed = 0
        base = self.root / output
        if not base.exists():
            return 0
        for path in base.rglob("part-*.parquet"):
            m = _PART.search(path.name)
            if m and int(m.group(1)) > epoch:
                path.unlink()
                key_material_path(path).unlink(missing_ok=True)
                removed += 1
        return removed

    def last_epoch(self, output: str) -> int:
        """The newest epoch with a file in ``output`` (0 when none)."""
        base = self.root / output
        epochs = [int(m.group(1)) for p in base.rglob("part-*.parquet") if (m := _PART.search(p.name))]
        return max(epochs, default=0)

    def read(self, output: str) -> pl.DataFrame:
        """All rows of ``output`` (empty frame when none)."""
        files = self.files(output)
        if not files:
            return pl.DataFrame()
        if self.encrypted:
            crypto = self.crypto()
            return pl.concat([crypto.read(f) for f in files], how="diagonal_relaxed")
        return pl.read_parquet(files, hive_partitioning=False)

    def query(self, sql: str) -> pl.DataFrame:
        """Run DuckDB SQL; every output is a view named after it.

        An SQL error is a :class:`ConfigError` with DuckDB's own message and the tables.

        Examples
        --------
        >>> import tempfile
        >>> Lake(tempfile.mkdtemp()).query("select * from dead_letter")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: query: Catalog Error: Table with name dead_letter does not exist! ...
        """
        import duckdb

        con = duckdb.connect()
        try:
            tables = self.outputs()
            if self.encrypted:  # decrypted into memory: DuckDB cannot read key-wrapped Parquet itself
                for name in tables:
                    con.register(name, self.read(name).to_arrow())
            else:
                for name in tables:
                    pattern = str(self.root / name / "**" / "*.parquet").replace("'", "''")
                    con.execute(
                        f"create view {name} as select * from read_parquet('{pattern}', "
                        "hive_partitioning = false, union_by_name = true)"
                    )
            try:
                return con.sql(sql).pl()
            except duckdb.Error as exc:
                message = " ".join(str(exc).split())
                raise ConfigError(f"query: {message}; tables: {', '.join(tables) or 'none'}") from None
        finally:
            con.close()


class LakeSink(HeldSink):
    """A streamz node that keeps the frames it receives until a checkpoint commits them.

    ``commit(epoch)`` writes the held rows as that epoch's files; ``rollback(epoch)``
    removes files of later epochs. Held rows are bounded by the checkpoint interval.
    """

    def __init__(self, upstream: Stream, lake: Lake, output: str, *, time: str | None = None) -> None:
        super().__init__(upstream, stream_name=f"lake:{output}")
        self.lake = lake
        self.output = output
        self.time = time
        self.rows_written = 0

    def commit(self, epoch: int) -> None:
        """Write held rows as ``epoch``'s files."""
        frame = self.held()
        if frame is None:
            return
        self.lake.write(self.output, frame, epoch=epoch, time=self.time)
        self.rows_written += frame.height
        self.forget()

    def rollback(self, epoch: int) -> None:
        """Forget held rows and delete files newer than ``epoch``."""
        super().rollback(epoch)
        self.lake.rollback(self.output, epoch)

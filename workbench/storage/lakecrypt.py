"""Encryption at rest for the lake: Parquet modular encryption with keys wrapped by a KMS client.

Each Parquet file gets its own data keys: one for the footer, one per column group.
They are wrapped (double wrapping: by per-run key-encryption keys, themselves wrapped by
the master keys of a :class:`~workbench.storage.kms.KmsClient`) and kept *outside*
the file, in ``_KEY_MATERIAL_FOR_<file>.json`` beside it, so re-wrapping them under
new master keys (:meth:`ParquetCrypto.rotate`) never rewrites data.

A lake is encrypted when it holds ``_encryption.json`` (the :class:`LakeEncryption`
spec: which master key protects the footer and which columns; no secrets). Every
writer and reader of that lake then encrypts and decrypts, with the keys from
``WORKBENCH_LAKE_KEYS_FILE``, and fails with a message naming the lake without them.

Examples
--------
>>> spec = LakeEncryption(column_keys={"pii": ["host"], "columns": ["*"]})
>>> spec.columns_for(["host", "ts", "cpu"])
{'pii': ['host'], 'columns': ['ts', 'cpu']}
>>> LakeEncryption.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import ConfigError, EncryptionError
from workbench.storage.atomic import atomic_write
from workbench.storage.kms import KmsClient

__all__ = ["MARKER", "LakeEncryption", "ParquetCrypto", "key_material_path", "read_marker"]

MARKER = "_encryption.json"
_ALL = "*"


@dataclass(frozen=True)
class LakeEncryption:
    """Which master keys protect a lake's footers and columns (a value: no secrets).

    Parameters
    ----------
    footer_key
        Master key id for every file's footer (schema, statistics).
    column_keys
        Master key id → the columns it protects; ``"*"`` stands for every column no
        other key names. Columns no key names are left in plain text.
    """

    footer_key: str = "footer"
    column_keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"columns": (_ALL,)})

    def __post_init__(self) -> None:
        keys = {str(k): tuple(v) for k, v in dict(self.column_keys).items()}
        stars = [k for k, cols in keys.items() if _ALL in cols]
        if len(stars) > 1:
            raise ConfigError(f"lake encryption: only one master key may take '*', not {stars}")
        object.__setattr__(self, "column_keys", keys)

    def __hash__(self) -> int:
        return hash((self.footer_key, tuple(sorted(self.column_keys.items()))))

    def master_key_ids(self) -> list[str]:
        """Every master key id the spec names."""
        return sorted({self.footer_key, *self.column_keys})

    def columns_for(self, columns: Iterable[str]) -> dict[str, list[str]]:
        """Master key id → the given columns it encrypts (empty groups left out)."""
        columns = list(columns)
        named = {c for cols in self.column_keys.values() for c in cols if c != _ALL}
        out = {}
        for key, cols in self.column_keys.items():
            mine = [c for c in columns if c in cols or (_ALL in cols and c not in named)]
            if mine:
                out[key] = mine
        return out

    def to_json(self) -> str:
        """The spec as the lake's ``_encryption.json``."""
        keys = {k: list(v) for k, v in self.column_keys.items()}
        doc = {"format": 1, "scheme": "parquet-modular", "footer_key": self.footer_key, "column_keys": keys}
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LakeEncryption:
        """Parse ``_encryption.json``."""
        doc = json.loads(text)
        if doc.get("format") != 1 or doc.get("scheme") != "parquet-modular":
            raise ConfigError(f"lake encryption: unknown marker {doc.get('format')!r}/{doc.get('scheme')!r}")
        return cls(footer_key=doc["footer_key"], column_keys={k: tuple(v) for k, v in doc["column_keys"].items()})


def read_marker(root: Path) -> LakeEncryption | None:
    """The lake's encryption spec, or ``None`` for a plain lake."""
    path = Path(root) / MARKER
    return LakeEncryption.from_json(path.read_text()) if path.exists() else None


def key_material_path(parquet: Path) -> Path:
    """Where a file's wrapped keys are kept (pyarrow's naming)."""
    return parquet.with_name(f"_KEY_MATERIAL_FOR_{parquet.name}.json")


def _adapter(kms: KmsClient) -> Any:
    import pyarrow.parquet.encryption as pe

    class _Bridge(pe.KmsClient):
        def __init__(self, _config: Any) -> None:
            pe.KmsClient.__init__(self)

        def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
            return kms.wrap_key(key_bytes, master_key_identifier)

        def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
            return kms.unwrap_key(wrapped_key, master_key_identifier)

    return _Bridge


class ParquetCrypto:
    """Writes and reads encrypted Parquet files with one KMS client.

    Parameters
    ----------
    kms
        The client that wraps and unwraps data keys.
    what
        Names the data in messages (``"lake data/lake"``).
    """

    def __init__(self, kms: KmsClient, *, what: str = "lake") -> None:
        import pyarrow.parquet.encryption as pe

        self.kms = kms
        self.what = what
        self._pe = pe
        self._factory = pe.CryptoFactory(_adapter(kms))
        self._conn = pe.KmsConnectionConfig()
        self._generation = kms.generation()

    def write(self, path: Path, frame: pl.DataFrame, spec: LakeEncryption) -> None:
        """Write ``frame`` to ``path`` encrypted (atomically), its wrapped keys beside it."""
        import pyarrow.parquet as pq

        config = self._pe.EncryptionConfiguration(
            footer_key=spec.footer_key,
            column_keys=spec.columns_for(frame.columns),
            double_wrapping=True,
            internal_key_material=False,  # kept beside the file: rotation re-wraps without rewriting it
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        generation = self.kms.generation()
        if generation != self._generation:  # rotated elsewhere: cached key-encryption keys are wrapped by old keys
            self._factory.remove_cache_entries_for_all_tokens()
            self._generation = generation
        try:
            props = self._factory.file_encryption_properties(self._conn, config, str(path))
        except OSError as exc:
            raise EncryptionError(f"{self.what}: cannot encrypt {path}: {exc}") from exc
        table = frame.to_arrow()
        atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd", encryption_properties=props))

    def read(self, path: Path) -> pl.DataFrame:
        """Decrypt and read one file."""
        import pyarrow.parquet as pq

        try:
            props = self._factory.file_decryption_properties(self._conn, self._pe.DecryptionConfiguration(), str(path))
            table = pq.read_table(path, decryption_properties=props)
        except (OSError, EncryptionError) as exc:
            raise EncryptionError(f"{self.what}: cannot decrypt {path}: {exc}") from exc
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def rotate(self, files: Callable[[], Iterable[Path]]) -> int:
        """New master key versions; re-wrap every file's keys with them; retire the old ones.

        Data files are not rewritten: only their ``_KEY_MATERIAL_FOR_*.json``. ``files``
        lists the files; it is called again after each pass, until a pass finds no file
        it has not re-wrapped (a writer may add some meanwhile; writers pick up the new
        versions at their next file). Until the end, old and new versions both unwrap, so
        an interrupted rotation leaves every file readable (run it again). Returns how
        many files were re-wrapped.
        """
        self.kms.rotate()
        self._factory.remove_cache_entries_for_all_tokens()
        done: set[Path] = set()
        while todo := [p for p in files() if p not in done]:
            for path in todo:
                try:
                    self._factory.rotate_master_keys(self._conn, str(path), double_wrapping=True)
                except OSError as exc:
                    raise EncryptionError(f"{self.what}: cannot re-wrap the keys of {path}: {exc}") from exc
                done.add(path)
        self._factory.remove_cache_entries_for_all_tokens()
        self.kms.retire()
        return len(done)

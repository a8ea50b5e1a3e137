"""``workbench query``, ``keys`` (lake encryption keys), ``backup`` and ``restore``: the parsers and what they run.

Keys never appear on the command line or in the output: commands name the key file
(from ``WORKBENCH_LAKE_KEYS_FILE`` or the per-user default) and key versions only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _say(text: object) -> None:
    sys.stdout.write(f"{text}\n")


def _column_keys(pairs: list[str] | None) -> dict[str, tuple[str, ...]]:
    from workbench.errors import ConfigError

    out: dict[str, tuple[str, ...]] = {}
    for pair in pairs or ["columns=*"]:
        name, sep, cols = pair.partition("=")
        if not sep or not name or not cols:
            raise ConfigError(f"--column-key: expected KEY=col,col (or KEY=*), not {pair!r}")
        out[name] = tuple(c.strip() for c in cols.split(",") if c.strip())
    return out


def _keys_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.errors import ConfigError
    from workbench.storage.kms import LocalKeyFile, lake_keys_path
    from workbench.storage.lake import Lake
    from workbench.storage.lakecrypt import MARKER, LakeEncryption, read_marker

    spec = LakeEncryption(footer_key=args.footer_key, column_keys=_column_keys(args.column_key))
    root = Path(args.lake)
    if read_marker(root) is not None:
        raise ConfigError(f"lake {str(root)!r} is already encrypted ({root / MARKER})")
    if Lake(root).files():
        raise ConfigError(
            f"lake {str(root)!r} already holds plain Parquet files; encryption starts with an empty lake "
            "(replay or ingest into a new folder)"
        )
    path = lake_keys_path()
    kms = LocalKeyFile(path) if path.exists() else LocalKeyFile.create(path, spec.master_key_ids())
    added = kms.add(spec.master_key_ids())
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(spec.to_json())
    if added:
        _say(f"new master keys {added} in {path}")
    _say(f"lake {root} is encrypted from now on; master keys in {path} (keep a copy: without it the lake is lost)")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from workbench.errors import ConfigError
    from workbench.storage.lake import Lake

    lake = Lake(args.lake)
    if not lake.encrypted:
        raise ConfigError(f"lake {str(lake.root)!r} is not encrypted: nothing to rotate")
    crypto = lake.crypto()
    n = crypto.rotate(lake.files)
    versions: dict[str, list[int]] = getattr(crypto.kms, "versions", dict)()
    _say(f"re-wrapped the data keys of {n} files (no data rewritten); master key versions now {versions}")
    return 0


def _audit(action: str, what: str, folder: str, *, after: object = None, outcome: str = "ok", detail: str = "") -> None:
    """Append ``action`` by the user running the command to the audit log (see ``audit_cli``)."""
    from workbench.security.audit import audit_cli

    audit_cli(action, what, folder=folder, after=after, outcome=outcome, detail=detail)


def _backup(args: argparse.Namespace) -> int:
    from workbench.storage.backup import backup
    from workbench.storage.keys import load_key

    key = load_key("backup", create=True)
    what = f"{args.folder} -> {args.out}"
    try:
        manifest = backup(args.folder, args.out, key=key)
    except Exception as exc:
        _audit("backup", what, args.folder, outcome="failed", detail=str(exc))
        raise
    _audit(
        "backup",
        what,
        args.folder,
        after={"files": len(manifest["files"]), "checkpoint_epoch": manifest["checkpoint_epoch"]},
    )
    size = sum(f["size"] for f in manifest["files"])
    epoch = manifest["checkpoint_epoch"]
    at = f"at checkpoint epoch {epoch}" if epoch is not None else "(no checkpoint: every file as it is)"
    _say(f"backed up {len(manifest['files'])} files ({size:,} bytes) of {args.folder} {at} to {args.out}")
    _say(f"encrypted with the backup key from {key.source} (key id {key.key_id}); keep a copy of that key")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.storage.backup import restore

    what = f"{args.archive} -> {args.into}"
    try:
        manifest = restore(args.archive, args.into)
    except Exception as exc:
        # beside the archive: a failed restore leaves no folder behind
        _audit("restore", what, str(Path(args.archive).parent), outcome="failed", detail=str(exc))
        raise
    _audit(
        "restore",
        what,
        args.into,
        after={"files": len(manifest["files"]), "checkpoint_epoch": manifest["checkpoint_epoch"]},
    )
    epoch = manifest["checkpoint_epoch"]
    _say(
        f"restored {len(manifest['files'])} files into {args.into}, every checksum verified (checkpoint epoch {epoch})"
    )
    return 0


def _query(args: argparse.Namespace) -> int:
    import polars as pl

    from workbench.storage.lake import Lake

    result = Lake(args.lake).query(args.sql)
    if args.format == "csv":
        sys.stdout.write(result.write_csv())
    elif args.format == "json":
        sys.stdout.write(result.write_json() + "\n")
    else:
        with pl.Config(tbl_rows=args.limit, tbl_cols=-1, fmt_str_lengths=60):
            _say(result)
    return 0


def register(sub: Any) -> None:
    """Add ``query``, ``keys init``, ``keys rotate``, ``backup`` and ``restore`` to the ``workbench`` sub-commands."""
    q = sub.add_parser("query", help="run DuckDB SQL over the Parquet lake")
    q.add_argument("sql")
    q.add_argument("--lake", default="data/lake", help="lake folder (default: data/lake)")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--limit", type=int, default=50, help="rows shown in table format")
    q.set_defaults(func=_query)

    k = sub.add_parser("keys", help="encryption keys of the lake (init, rotate)")
    ks = k.add_subparsers(dest="keys_command", required=True)
    i = ks.add_parser("init", help="encrypt a new lake: create its master keys (if needed) and its marker")
    i.add_argument("--lake", required=True, help="lake folder (empty or new)")
    i.add_argument("--footer-key", default="footer", help="master key id for footers (default: footer)")
    i.add_argument(
        "--column-key",
        action="append",
        metavar="KEY=COL,COL",
        help="master key id and the columns it protects; '*' for the rest (default: columns=*)",
    )
    i.set_defaults(func=_keys_init)
    r = ks.add_parser("rotate", help="new master key versions; re-wrap every file's data keys without rewriting data")
    r.add_argument("--lake", required=True, help="lake folder")
    r.set_defaults(func=_keys_rotate)

    b = sub.add_parser("backup", help="an encrypted copy of a run folder at a checkpoint boundary, with checksums")
    b.add_argument("--from", dest="folder", default="data", help="run folder: lake, checkpoint, stores (default: data)")
    b.add_argument("--out", required=True, help="archive file to write (key: WORKBENCH_BACKUP_KEY or _FILE)")
    b.set_defaults(func=_backup)
    r = sub.add_parser("restore", help="verify a backup and restore it into a new folder")
    r.add_argument("archive", help="archive written by workbench backup")
    r.add_argument("--into", required=True, help="new (or empty) folder to restore into")
    r.set_defaults(func=_restore)

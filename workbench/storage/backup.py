"""Backups of a run folder: consistent at a checkpoint boundary, encrypted, verified by restoring.

A run folder (what ``workbench replay --out`` or ``workbench ingest --out`` fills)
holds the lake, the checkpoints and whatever else the run keeps there: an alert
store, an outbox log, an audit log. :func:`backup` copies it while the pipeline may
still run: it first reads and verifies the newest checkpoint (epoch *E*), then copies
every file except lake files of epochs after *E* (the replay from *E* writes them
again) and the other checkpoints, so the copy is the state of the checkpoint
boundary *E*. Lake files of epochs up to *E* never change once *E* is written.
Files that are not epoch-stamped (an alert store, logs) are copied as they are.

The archive is a tar stream with a manifest of every file's SHA-256, sealed with
AES-256-GCM in chunks (:mod:`workbench.storage.sealed`) under the backup key
(``WORKBENCH_BACKUP_KEY`` / ``_FILE``, else the per-user ``~/.config/workbench/backup.key``).
:func:`restore` opens it (any alteration fails), writes it into a new folder,
verifies every checksum against the manifest, and only then moves it into place.
Pipelines named after their folder (``replay:<folder>``, ``ingest:<folder>``) have
their restored checkpoint renamed to the new folder, re-authenticated with the
checkpoint key, so the restored run resumes there.

Keys are never in a backup: an encrypted lake still needs ``WORKBENCH_LAKE_KEYS_FILE``,
the checkpoints the checkpoint key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from workbench.errors import CheckpointError, ConfigError, EncryptionError
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.keys import SecretKey, load_key
from workbench.storage.sealed import SealedReader, SealedWriter

__all__ = ["backup", "restore"]

MANIFEST = "MANIFEST.json"
_PART = re.compile(r"^(?:_KEY_MATERIAL_FOR_)?part-(\d{8})(?:-\d+)?\.parquet(?:\.json)?$")
_CKPT = re.compile(r"^checkpoint-(\d{8,})\.wbck$")
_TEMP = re.compile(r"^\..*\.tmp-\d+$")  # an atomic write in flight
_READ = 1 << 20


def _checkpoint_folder(root: Path) -> Path | None:
    found = sorted({p.parent for p in root.rglob("checkpoint-*.wbck") if _CKPT.match(p.name)})
    if len(found) > 1:
        raise ConfigError(f"backup of {root}: several checkpoint folders {[str(f) for f in found]}; back up one run")
    return found[0] if found else None


def _boundary(store: CheckpointStore) -> tuple[int, Path, bytes, dict[Path, bytes]]:
    """The newest checkpoint's epoch, file and bytes, and its section files' bytes: read and verified first."""
    for _ in range(5):  # a running pipeline may prune the files between listing and reading them
        files = store.files()
        if not files:
            break
        try:
            data = files[0].read_bytes()
            epoch = int(store.read(files[0], data)["epoch"])
            sections = {path: path.read_bytes() for path in store.fetched.values()}
        except FileNotFoundError:
            continue
        except CheckpointError:
            if files[0].exists():
                raise
            continue  # pruned while its sections were read
        return epoch, files[0], data, sections
    raise CheckpointError(f"backup: no readable checkpoint in {store.folder}")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def backup(root: str | Path, out: str | Path, *, key: SecretKey | None = None) -> dict[str, Any]:
    """Write an encrypted, consistent copy of the run folder ``root`` to the file ``out``.

    Parameters
    ----------
    root
        The run folder.
    out
        The archive to write (not inside ``root``).
    key
        The backup key (default: from the environment or the per-user key file).

    Returns
    -------
    dict
        The manifest: the checkpoint epoch, and each file's size and SHA-256.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ConfigError(f"backup: {root} is not a folder")
    if out.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"backup: the archive {out} must not be inside the folder it backs up ({root})")
    key = key or load_key("backup", create=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    ck_folder = _checkpoint_folder(root)
    epoch: int | None = None
    ck_name, ck_bytes = None, b""
    sections: dict[Path, bytes] = {}
    if ck_folder is not None:
        epoch, ck_path, ck_bytes, sections = _boundary(CheckpointStore(ck_folder))
        ck_name = ck_path.relative_to(root).as_posix()
    files: list[dict[str, Any]] = []
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as raw, SealedWriter(raw, key) as sealed:
            with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if ck_name is not None:
                    _add(tar, ck_name, ck_bytes)
                    files.append(
                        {"path": ck_name, "size": len(ck_bytes), "sha256": hashlib.sha256(ck_bytes).hexdigest()}
                    )
                for path, data in sorted(sections.items()):  # the big state it names, as it was read
                    rel = path.relative_to(root).as_posix()
                    _add(tar, rel, data)
                    files.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
                for path in sorted(p for p in root.rglob("*") if p.is_file()):
                    rel = path.relative_to(root).as_posix()
                    m = _PART.match(path.name)
                    if (m and epoch is not None and int(m.group(1)) > epoch) or _CKPT.match(path.name):
                        continue  # after the boundary, or a checkpoint other than the one taken
                    if ck_folder is not None and path.parent == ck_folder / "sections":
                        continue  # sections: only those of the checkpoint taken, added above
                    if _TEMP.match(path.name):
                        continue
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:  # removed since the listing (a pruned or rolled-back file)
                        continue
                    _add(tar, rel, data)
                    files.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
                manifest = {"format": 1, "root": str(root.resolve()), "checkpoint_epoch": epoch, "files": files}
                _add(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def _safe(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or name.startswith("\\"):
        raise EncryptionError(f"restore: refusing the member {name!r} (outside the target folder)")
    return p.as_posix()


def _extract(archive: BinaryIO, key: SecretKey, stage: Path, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    got: dict[str, str] = {}
    manifest: dict[str, Any] | None = None
    reader = io.BufferedReader(SealedReader(archive, key, what=what), _READ)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    raise EncryptionError(f"{what}: refusing {member.name!r} (not a regular file)")
                name = _safe(member.name)
                src = tar.extractfile(member)
                assert src is not None
                if name == MANIFEST:
                    manifest = json.loads(src.read())
                    continue
                target = stage / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with open(target, "wb") as f:
                    while chunk := src.read(_READ):
                        digest.update(chunk)
                        f.write(chunk)
                got[name] = digest.hexdigest()
    except tarfile.TarError as exc:
        raise EncryptionError(f"{what}: not a Workbench backup ({exc})") from exc
    if manifest is None:
        raise EncryptionError(f"{what}: no manifest")
    return manifest, got


def restore(archive: str | Path, into: str | Path, *, key: SecretKey | None = None) -> dict[str, Any]:
    """Open, verify and restore the backup ``archive`` into the new folder ``into``.

    Nothing appears at ``into`` unless every file matches the manifest's checksum.

    Returns
    -------
    dict
        The manifest.
    """
    archive, into = Path(archive), Path(into)
    if into.exists() and any(into.iterdir()):
        raise ConfigError(f"restore: {into} is not empty; restore into a new folder")
    key = key or load_key("backup")
    what = f"backup {archive}"
    stage = into.with_name(f".{into.name}.restoring-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        with open(archive, "rb") as f:
            manifest, got = _extract(f, key, stage, what)
        expected = {e["path"]: e["sha256"] for e in manifest["files"]}
        if got != expected:
            bad = sorted(n for n in expected.keys() | got.keys() if expected.get(n) != got.get(n))
            raise EncryptionError(f"{what}: files differ from the manifest: {bad[:5]}")
        _relocate(stage, manifest, into)
        if into.exists():
            into.rmdir()
        os.replace(stage, into)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _relocate(stage: Path, manifest: dict[str, Any], into: Path) -> None:
    """Rename ``<kind>:<old folder>`` pipelines of the restored checkpoint to the new folder."""
    old, new = manifest["root"], str(into.resolve())
    folder = _checkpoint_folder(stage)
    if folder is None or old == new:
        return
    store = CheckpointStore(folder)
    try:
        state = store.load()
    except CheckpointError as exc:
        raise CheckpointError(
            f"restore: the backed-up checkpoint cannot be read with this checkpoint key: {exc}"
        ) from exc
    assert state is not None
    kind, sep, where = str(state.get("pipeline", "")).partition(":")
    if sep and where == old:
        state["pipeline"] = f"{kind}:{new}"
        state.pop("versions", None)
        store.save(state)

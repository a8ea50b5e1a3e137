"""Checkpoints you can trust: authenticated (HMAC-SHA256) before anything is deserialised.

One file per checkpoint epoch, ``checkpoint-<epoch>.wbck``; the newest two are kept,
so a run can fall back to the previous one. The file::

    WBCKPT2\\n | header length (4 bytes) | header (JSON) | body | HMAC-SHA256 tag (32 bytes)

The header says the format, the key's public id, the cipher, the epoch, the body's
length and the library versions. The tag covers everything before it and is checked
before the body is read; the body is the state as JSON with frames as Arrow IPC and
only opaque objects (river models) as pickle (:mod:`workbench.storage.statecodec`),
optionally encrypted with AES-256-GCM. A checkpoint that is tampered with, truncated,
written with another key or in another format is refused with a message saying which.
Old ``WBCKPT1`` checkpoints (an unauthenticated pickle) are refused and never read.

The key comes from ``WORKBENCH_CHECKPOINT_KEY`` or ``WORKBENCH_CHECKPOINT_KEY_FILE``,
else the per-user ``~/.config/workbench/checkpoint.key``, created on first use
(:mod:`workbench.storage.keys`). ``WORKBENCH_CHECKPOINT_ENCRYPT=1`` encrypts by default;
``WORKBENCH_CHECKPOINT_FALLBACK=1`` resumes from the previous checkpoint when the newest
is refused.

Examples
--------
>>> import tempfile
>>> from workbench.storage.keys import SecretKey
>>> store = CheckpointStore(tempfile.mkdtemp(), key=SecretKey(bytes(32), "example"))
>>> store.save({"epoch": 3, "nodes": {}})
>>> store.load()["epoch"]
3
>>> store.path.name
'checkpoint-00000003.wbck'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import struct
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from workbench.errors import CheckpointError
from workbench.storage.atomic import atomic_write
from workbench.storage.keys import SecretKey, load_key
from workbench.storage.statecodec import decode, encode

__all__ = ["CheckpointStore", "library_versions"]

log = logging.getLogger(__name__)

_MAGIC = b"WBCKPT2\n"
_OLD_MAGIC = b"WBCKPT1"
FORMAT = 2
_TAG = 32
_NONCE = 12
_MAX_HEADER = 1 << 16
_FILE = re.compile(r"^checkpoint-(\d{8,})\.wbck$")
_TRACKED = ("workbench", "polars", "river", "streamz")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose objects a checkpoint may contain."""
    out = {}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _pack_sections(doc: Any, sections: list[tuple[str, bytes]]) -> bytes:
    index = json.dumps({"state": doc, "sections": [[kind, len(data)] for kind, data in sections]}).encode()
    return b"".join([struct.pack(">Q", len(index)), index, *(data for _, data in sections)])


def _unpack_sections(body: bytes, where: str) -> tuple[Any, list[tuple[str, bytes]]]:
    (n,) = struct.unpack(">Q", body[:8])
    index = json.loads(body[8 : 8 + n])
    pos, sections = 8 + n, []
    for kind, size in index["sections"]:
        sections.append((kind, body[pos : pos + size]))
        pos += size
    if pos != len(body):
        raise CheckpointError(f"checkpoint {where}: body length {len(body)} does not match its index ({pos})")
    return index["state"], sections


class CheckpointStore:
    """Where one pipeline keeps its checkpoints (the newest two).

    Parameters
    ----------
    folder
        Folder for the ``checkpoint-<epoch>.wbck`` files.
    key
        The secret key (default: from the environment or the per-user key file).
    encrypt
        Encrypt the body with AES-256-GCM (default: ``WORKBENCH_CHECKPOINT_ENCRYPT``).
    fallback
        When the newest checkpoint is refused, load the previous one (with a warning)
        instead of raising (default: ``WORKBENCH_CHECKPOINT_FALLBACK``).
    env
        The environment to read settings from (default: ``os.environ``).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        key: SecretKey | None = None,
        encrypt: bool | None = None,
        fallback: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self._key = key
        self._env = os.environ if env is None else env
        flag = self._env.get("WORKBENCH_CHECKPOINT_ENCRYPT", "")
        self.encrypt = encrypt if encrypt is not None else flag.lower() in ("1", "true", "yes")
        again = self._env.get("WORKBENCH_CHECKPOINT_FALLBACK", "")
        self.fallback = fallback if fallback is not None else again.lower() in ("1", "true", "yes")
        self.loaded: Path | None = None

    @property
    def key(self) -> SecretKey:
        """The key (read, or created, on first use: constructing a store does no I/O)."""
        if self._key is None:
            self._key = load_key("checkpoint", env=self._env, create=True)
        return self._key

    def files(self) -> list[Path]:
        """Checkpoint files, newest epoch first."""
        if not self.folder.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _FILE.match(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    @property
    def path(self) -> Path:
        """The checkpoint last loaded, else the newest file (or where the first one goes)."""
        if self.loaded is not None:
            return self.loaded
        files = self.files()
        if files:
            return files[0]
        old = self.folder / "checkpoint.bin"
        return old if old.exists() else self.folder / "checkpoint-00000000.wbck"

    def exists(self) -> bool:
        """Whether a checkpoint was written (in any format: an old one is refused by :meth:`load`)."""
        return bool(self.files()) or (self.folder / "checkpoint.bin").exists()

    # -- writing ------------------------------------------------------------------------
    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (with an ``"epoch"``) atomically as a new file; keep it and the previous one."""
        epoch = int(state.get("epoch", 0))
        doc, sections = encode({**state, "versions": library_versions()})
        body = _pack_sections(doc, sections)
        key = self.key
        header = {
            "format": FORMAT,
            "key_id": key.key_id,
            "cipher": "aes-256-gcm" if self.encrypt else "none",
            "epoch": epoch,
            "versions": library_versions(),
            "pickles": sum(kind == "pickle" for kind, _ in sections),
        }
        if self.encrypt:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            nonce = os.urandom(_NONCE)
            aad = json.dumps(header, sort_keys=True).encode()
            body = nonce + AESGCM(key.derive("checkpoint/aes-gcm")).encrypt(nonce, body, aad)
        header["length"] = len(body)
        head = json.dumps(header, sort_keys=True).encode()
        mac = hmac.new(key.derive("checkpoint/mac"), digestmod=hashlib.sha256)
        for part in (_MAGIC, struct.pack(">I", len(head)), head, body):
            mac.update(part)

        def write(f: BinaryIO) -> None:
            f.write(_MAGIC + struct.pack(">I", len(head)) + head)
            f.write(body)
            f.write(mac.digest())

        path = self.folder / f"checkpoint-{epoch:08d}.wbck"
        atomic_write(path, write)
        self.loaded = None
        self._prune(path, epoch)

    def _prune(self, newest: Path, epoch: int) -> None:
        """Keep ``newest`` and the newest older file; files of later epochs are rolled-back futures."""
        older = [p for p in self.files() if p != newest and int(_FILE.match(p.name).group(1)) < epoch]  # type: ignore[union-attr]
        keep = {newest, *older[:1]}
        for p in self.files():
            if p not in keep:
                p.unlink(missing_ok=True)
        old = self.folder / "checkpoint.bin"
        old.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        """The newest checkpoint, verified; ``None`` when there is none.

        Raises
        ------
        CheckpointError
            When it is refused (and ``fallback`` is off or the previous one is refused too).
        """
        files = self.files()
        if not files:
            old = self.folder / "checkpoint.bin"
            if old.exists():
                self.read(old)  # raises: the old format is never loaded
            return None
        try:
            state = self.read(files[0])
        except CheckpointError as exc:
            if len(files) < 2:
                raise
            if not self.fallback:
                raise CheckpointError(
                    f"{exc}. The previous checkpoint {files[1].name} is kept: to resume from it, move "
                    f"{files[0].name} away, or set WORKBENCH_CHECKPOINT_FALLBACK=1 (fallback=True)"
                ) from exc
            log.warning("%s; falling back to the previous checkpoint %s", exc, files[1].name)
            state = self.read(files[1])
            self.loaded = files[1]
            return state
        self.loaded = files[0]
        return state

    def read(self, path: Path, data: bytes | None = None) -> dict[str, Any]:
        """Verify and decode a checkpoint file (or its bytes, ``data``): nothing is read before the HMAC check."""
        data = path.read_bytes() if data is None else data
        header = self._header(path, data)
        key = self.key
        if header.get("key_id") != key.key_id:
            raise CheckpointError(
                f"checkpoint {path}: written with another key (key id {header.get('key_id')!r}); this key "
                f"({key.source}) has id {key.key_id!r}. Set WORKBENCH_CHECKPOINT_KEY(_FILE) to the key it "
                "was written with"
            )
        mac = hmac.new(key.derive("checkpoint/mac"), data[:-_TAG], hashlib.sha256).digest()
        if not hmac.compare_digest(mac, data[-_TAG:]):
            raise CheckpointError(
                f"checkpoint {path}: authentication failed (HMAC-SHA256 mismatch): the file was modified "
                "after it was written; it was not loaded"
            )
        head_len = struct.unpack(">I", data[len(_MAGIC) : len(_MAGIC) + 4])[0]
        body = data[len(_MAGIC) + 4 + head_len : -_TAG]
        if header["cipher"] == "aes-256-gcm":
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aad = {k: v for k, v in header.items() if k != "length"}
            try:
                body = AESGCM(key.derive("checkpoint/aes-gcm")).decrypt(
                    body[:_NONCE], body[_NONCE:], json.dumps(aad, sort_keys=True).encode()
                )
            except InvalidTag:
                raise CheckpointError(f"checkpoint {path}: decryption failed (AES-GCM tag mismatch)") from None
        elif header["cipher"] != "none":
            raise CheckpointError(f"checkpoint {path}: unknown cipher {header['cipher']!r}")
        m = _FILE.match(path.name)
        if m and int(m.group(1)) != header.get("epoch"):
            raise CheckpointError(f"checkpoint {path}: holds epoch {header.get('epoch')}, not the one its name says")
        self._check_versions(path, header)
        doc, sections = _unpack_sections(body, str(path))
        state: dict[str, Any] = decode(doc, sections, trusted=True)  # authenticated above
        return state

    @staticmethod
    def _header(path: Path, data: bytes) -> dict[str, Any]:
        """The header, parsed as JSON only (it cannot run code); refuses old, foreign and cut files."""
        if data.startswith(_OLD_MAGIC):
            raise CheckpointError(
                f"checkpoint {path}: an old-format (WBCKPT1) checkpoint, an unauthenticated pickle that is "
                f"never loaded. Delete the folder {path.parent} to start over (the run then starts from the "
                "beginning of its input)"
            )
        if not data.startswith(_MAGIC):
            raise CheckpointError(f"checkpoint {path}: not a Workbench checkpoint (bad magic {data[:8]!r})")
        start = len(_MAGIC) + 4
        if len(data) < start + _TAG:
            raise CheckpointError(f"checkpoint {path}: truncated ({len(data)} bytes)")
        head_len = struct.unpack(">I", data[len(_MAGIC) : start])[0]
        try:
            if head_len > _MAX_HEADER:
                raise ValueError(head_len)
            header = json.loads(data[start : start + head_len])
            if not isinstance(header, dict):
                raise ValueError(header)
        except ValueError:
            raise CheckpointError(f"checkpoint {path}: truncated or corrupt header") from None
        if header.get("format") != FORMAT:
            raise CheckpointError(
                f"checkpoint {path}: format {header.get('format')!r}, this Workbench reads format {FORMAT}; "
                f"resume with the Workbench that wrote it, or delete the folder {path.parent} to start over"
            )
        expected = start + head_len + int(header.get("length", -1)) + _TAG
        if len(data) != expected:
            raise CheckpointError(f"checkpoint {path}: truncated: {len(data)} bytes of {expected}")
        return header

    @staticmethod
    def _check_versions(path: Path, header: dict[str, Any]) -> None:
        """Pickled objects (river models) are not portable across minor versions: refuse them."""
        if not header.get("pickles"):
            return
        saved, now = header.get("versions", {}), library_versions()
        for lib in ("river",):
            if saved.get(lib, "absent") != "absent" and _minor(saved[lib]) != _minor(now[lib]):
                raise CheckpointError(
                    f"checkpoint {path}: written with {lib} {saved[lib]}, this is {lib} {now[lib]}; "
                    "model pickles are not portable across minor versions. Delete the checkpoint folder "
                    "to start over, or install the version it names."
                )

    def clear(self) -> None:
        """Remove every checkpoint."""
        for p in [*self.files(), self.folder / "checkpoint.bin"]:
            p.unlink(missing_ok=True)
        self.loaded = None

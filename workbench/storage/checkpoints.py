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

Big state is written incrementally. A section of at least :data:`SHARED_MIN` bytes (a
frame of dedupe keys, say) goes to ``sections/<address>.wbsec`` once, where the address
is an HMAC of its bytes under the checkpoint key; the checkpoint's authenticated index
names it, and a later checkpoint holding the same bytes names it again instead of
writing it. The first checkpoint of a run, and every ``full_every``-th, writes all of its
sections afresh (a full rewrite), so no section file is trusted for longer than that.
On reading, a named section must exist and hash to its address (and decrypt, when
encrypted), or the checkpoint is refused; files no kept checkpoint names are removed
after each save.

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
from collections.abc import Callable, Mapping
from functools import partial
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
FORMAT = 3
#: formats read: 2 has every section inline, 3 may name section files
READS = (2, 3)
_TAG = 32
_NONCE = 12
_MAX_HEADER = 1 << 16
_FILE = re.compile(r"^checkpoint-(\d{8,})\.wbck$")
_SECTION = re.compile(r"^([0-9a-f]{40})\.wbsec$")
#: sections of at least this many bytes are written once and named by later checkpoints
SHARED_MIN = 64 * 1024
#: every this-many-th checkpoint writes all its sections afresh (a full rewrite)
FULL_EVERY = 8
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


def _pack_sections(doc: Any, sections: list[tuple[str, bytes]], shared: Mapping[int, str]) -> bytes:
    """The body: an index, then the sections written inline (``shared``: section number → its file's address)."""
    entries = [[kind, len(data), *([shared[i]] if i in shared else [])] for i, (kind, data) in enumerate(sections)]
    index = json.dumps({"state": doc, "sections": entries}).encode()
    inline = (data for i, (_, data) in enumerate(sections) if i not in shared)
    return b"".join([struct.pack(">Q", len(index)), index, *inline])


def _unpack_sections(
    body: bytes, where: str, fetch: Callable[[str, int], bytes]
) -> tuple[Any, list[tuple[str, bytes]]]:
    (n,) = struct.unpack(">Q", body[:8])
    index = json.loads(body[8 : 8 + n])
    pos, sections = 8 + n, []
    for kind, size, *address in index["sections"]:
        if address:
            sections.append((kind, fetch(address[0], size)))
            continue
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
    full_every
        Every this-many-th save (and the first) writes all its sections afresh; in between,
        sections of at least :data:`SHARED_MIN` bytes already written are only named.

    Attributes
    ----------
    written
        Bytes the last :meth:`save` wrote (checkpoint file and new section files).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        key: SecretKey | None = None,
        encrypt: bool | None = None,
        fallback: bool | None = None,
        env: Mapping[str, str] | None = None,
        full_every: int = FULL_EVERY,
    ) -> None:
        self.folder = Path(folder)
        self.full_every = max(1, int(full_every))
        self.written = 0
        self._saves = 0  # saves by this store: the first one, and every full_every-th, is full
        self._key = key
        self._env = os.environ if env is None else env
        flag = self._env.get("WORKBENCH_CHECKPOINT_ENCRYPT", "")
        self.encrypt = encrypt if encrypt is not None else flag.lower() in ("1", "true", "yes")
        again = self._env.get("WORKBENCH_CHECKPOINT_FALLBACK", "")
        self.fallback = fallback if fallback is not None else again.lower() in ("1", "true", "yes")
        self.loaded: Path | None = None
        #: the section files the last :meth:`read` used (address → path): a backup copies them with it
        self.fetched: dict[str, Path] = {}

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
        key = self.key
        self.written = 0
        full = self._saves % self.full_every == 0
        self._saves += 1
        shared = self._share(sections, key, rewrite=full)
        body = _pack_sections(doc, sections, shared)
        header = {
            "format": FORMAT,
            "key_id": key.key_id,
            "cipher": "aes-256-gcm" if self.encrypt else "none",
            "epoch": epoch,
            "versions": library_versions(),
            "pickles": sum(kind == "pickle" for kind, _ in sections),
            "shared": sorted(set(shared.values())),
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
        self.written += len(_MAGIC) + 4 + len(head) + len(body) + _TAG
        self.loaded = None
        self._prune(path, epoch)

    # -- sections written once ----------------------------------------------------------
    @property
    def sections_folder(self) -> Path:
        """Where the sections that several checkpoints share are kept."""
        return self.folder / "sections"

    @staticmethod
    def _address(key: SecretKey, data: bytes) -> str:
        """A section's file name: an HMAC of its bytes (equal sections are found, nothing is told without the key)."""
        return hmac.new(key.derive("checkpoint/section"), data, hashlib.sha256).hexdigest()[:40]

    def _share(self, sections: list[tuple[str, bytes]], key: SecretKey, *, rewrite: bool) -> dict[int, str]:
        """Write the big sections not yet on disk (``rewrite``: all of them); their addresses by section number."""
        shared: dict[int, str] = {}
        for i, (_, data) in enumerate(sections):
            if len(data) < SHARED_MIN:
                continue
            address = self._address(key, data)
            path = self.sections_folder / f"{address}.wbsec"
            if rewrite or not path.exists():
                blob = data
                if self.encrypt:
                    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                    nonce = os.urandom(_NONCE)
                    blob = nonce + AESGCM(key.derive("checkpoint/aes-gcm")).encrypt(nonce, data, address.encode())
                atomic_write(path, partial(_write_all, blob))
                self.written += len(blob)
            shared[i] = address
        return shared

    def _fetch(self, checkpoint: Path, key: SecretKey, encrypted: bool) -> Callable[[str, int], bytes]:
        def fetch(address: str, size: int) -> bytes:
            path = self.sections_folder / f"{address}.wbsec"
            where = f"checkpoint {checkpoint}: section {path.name}"
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise CheckpointError(f"{where} is missing; the checkpoint cannot be restored without it") from None
            if encrypted:
                from cryptography.exceptions import InvalidTag
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                try:
                    data = AESGCM(key.derive("checkpoint/aes-gcm")).decrypt(
                        data[:_NONCE], data[_NONCE:], address.encode()
                    )
                except InvalidTag:
                    raise CheckpointError(f"{where}: decryption failed (AES-GCM tag mismatch)") from None
            if len(data) != size or not hmac.compare_digest(self._address(key, data), address):
                raise CheckpointError(
                    f"{where}: authentication failed (its bytes do not match its HMAC address): it was modified "
                    "after it was written; it was not loaded"
                )
            self.fetched[address] = path
            return data

        return fetch

    def _collect(self) -> None:
        """Remove the section files that no kept checkpoint names (and leftovers of a crash)."""
        if not self.sections_folder.exists():
            return
        named: set[str] = set()
        for p in self.files():
            try:
                named.update(_shared_of(p))
            except (CheckpointError, OSError):
                return  # a checkpoint that cannot be read now: remove nothing it might name
        for p in self.sections_folder.iterdir():
            m = _SECTION.match(p.name)
            if (m and m.group(1) not in named) or p.name.startswith("."):
                p.unlink(missing_ok=True)

    def _prune(self, newest: Path, epoch: int) -> None:
        """Keep ``newest`` and the newest older file; files of later epochs are rolled-back futures."""
        older = [p for p in self.files() if p != newest and int(_FILE.match(p.name).group(1)) < epoch]  # type: ignore[union-attr]
        keep = {newest, *older[:1]}
        for p in self.files():
            if p not in keep:
                p.unlink(missing_ok=True)
        old = self.folder / "checkpoint.bin"
        old.unlink(missing_ok=True)
        self._collect()

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
        self.fetched = {}
        doc, sections = _unpack_sections(body, str(path), self._fetch(path, key, header["cipher"] != "none"))
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
        if header.get("format") not in READS:
            raise CheckpointError(
                f"checkpoint {path}: format {header.get('format')!r}, this Workbench reads formats 2 and 3; "
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
        if self.sections_folder.exists():
            for p in self.sections_folder.iterdir():
                p.unlink(missing_ok=True)
        self.loaded = None


def _write_all(data: bytes, f: BinaryIO) -> None:
    f.write(data)


def _shared_of(path: Path) -> list[str]:
    """The section addresses a checkpoint's header names (read without the body)."""
    with open(path, "rb") as f:
        start = f.read(len(_MAGIC) + 4)
        if not start.startswith(_MAGIC) or len(start) < len(_MAGIC) + 4:
            raise CheckpointError(f"checkpoint {path}: not a Workbench checkpoint")
        (n,) = struct.unpack(">I", start[len(_MAGIC) :])
        if n > _MAX_HEADER:
            raise CheckpointError(f"checkpoint {path}: truncated or corrupt header")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise CheckpointError(f"checkpoint {path}: truncated or corrupt header") from None
    shared = header.get("shared", []) if isinstance(header, dict) else []
    return [a for a in shared if isinstance(a, str)]

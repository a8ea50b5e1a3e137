"""The key-management interface of the encrypted lake, and its first implementation: a local key file.

Parquet modular encryption encrypts each file with its own data keys; a KMS client
*wraps* those keys with named master keys (``"footer"``, ``"columns"`` …) and
*unwraps* them to read. Only the wrapped keys are stored beside the data, so the data
is as safe as the master keys. :class:`KmsClient` is that contract; a cloud KMS or
Vault client implements the same two methods plus :meth:`KmsClient.rotate`.

:class:`LocalKeyFile` keeps versioned master keys in one JSON file, readable by its
owner only (mode 0600). Wrapping uses AES-256-GCM with the master key's current
version, and names the version in the wrapped key, so after :meth:`LocalKeyFile.rotate`
old files still unwrap until their keys are re-wrapped (``workbench keys rotate``),
after which the old versions are retired.

The file comes from ``WORKBENCH_LAKE_KEYS_FILE``, else the per-user
``~/.config/workbench/lake-keys.json``; ``workbench keys init`` creates it.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> kms = LocalKeyFile.create(Path(tempfile.mkdtemp()) / "keys.json", ["footer", "columns"])
>>> wrapped = kms.wrap_key(b"k" * 32, "footer")
>>> wrapped.startswith("footer/1:")
True
>>> kms.unwrap_key(wrapped, "footer") == b"k" * 32
True
>>> kms.rotate(); kms.wrap_key(b"k" * 32, "footer").startswith("footer/2:")
True
>>> kms.unwrap_key(wrapped, "footer") == b"k" * 32  # version 1 still unwraps until retired
True
"""

from __future__ import annotations

import abc
import base64
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, EncryptionError
from workbench.storage.atomic import atomic_write
from workbench.storage.keys import default_key_path

__all__ = ["KmsClient", "LocalKeyFile", "lake_keys_path"]

_NONCE = 12


class KmsClient(abc.ABC):
    """Wraps and unwraps data keys with named master keys it never reveals."""

    @abc.abstractmethod
    def wrap_key(self, key: bytes, master_key_id: str) -> str:
        """``key`` encrypted with the current version of master key ``master_key_id``."""

    @abc.abstractmethod
    def unwrap_key(self, wrapped: str, master_key_id: str) -> bytes:
        """The key :meth:`wrap_key` wrapped (with whichever version it names)."""

    def generation(self) -> object:
        """Changes when the master keys change (writers then drop cached key-encryption keys)."""
        return None

    @abc.abstractmethod
    def rotate(self) -> None:
        """Make new master key versions current; the old ones still unwrap until :meth:`retire`."""

    @abc.abstractmethod
    def retire(self) -> None:
        """Forget every master key version but the current one (after all keys are re-wrapped)."""


def lake_keys_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the lake's master keys are: ``WORKBENCH_LAKE_KEYS_FILE``, else the per-user default.

    Examples
    --------
    >>> lake_keys_path({"WORKBENCH_LAKE_KEYS_FILE": "/run/secrets/lake.json"}).as_posix()
    '/run/secrets/lake.json'
    """
    env = os.environ if env is None else env
    if env.get("WORKBENCH_LAKE_KEYS_FILE"):
        return Path(env["WORKBENCH_LAKE_KEYS_FILE"]).expanduser()
    return default_key_path("lake-keys", env).with_suffix(".json")


class LocalKeyFile(KmsClient):
    """Versioned master keys in a local JSON file (mode 0600).

    Parameters
    ----------
    path
        The key file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._keys = self._read()

    @classmethod
    def create(cls, path: str | Path, master_key_ids: Iterable[str]) -> LocalKeyFile:
        """A new key file with one random 256-bit key per id (refuses to overwrite one)."""
        path = Path(path)
        if path.exists():
            raise ConfigError(f"lake keys: {path} exists; it holds the keys of an encrypted lake, not replaced")
        keys = {mid: {"current": 1, "versions": {"1": os.urandom(32).hex()}} for mid in master_key_ids}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(path, keys)
        return cls(path)

    def add(self, master_key_ids: Iterable[str]) -> list[str]:
        """Create the master keys not held yet (random, version 1); returns their ids."""
        self._refresh()
        new = sorted(set(master_key_ids) - set(self._keys))
        for mid in new:
            self._keys[mid] = {"current": 1, "versions": {"1": os.urandom(32).hex()}}
        if new:
            self._save()
        return new

    def _refresh(self) -> None:
        """Re-read the file if another process changed it (a rotation while this one runs)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
            self._keys = self._read()

    def generation(self) -> object:  # noqa: D102
        self._refresh()
        return self._stamp

    def _save(self) -> None:
        _write(self.path, self._keys)
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            mode = st.st_mode
        except FileNotFoundError:
            raise EncryptionError(
                f"lake keys: no key file at {self.path}; set WORKBENCH_LAKE_KEYS_FILE to the lake's key file"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"lake keys: {self.path} must be readable by its owner only (mode 0600), not "
                f"{stat.filemode(mode)}; run: chmod 600 {self.path}"
            )
        doc = json.loads(self.path.read_text())
        if doc.get("format") != 1:
            raise ConfigError(f"lake keys: {self.path} has format {doc.get('format')!r}; this Workbench reads 1")
        keys: dict[str, Any] = doc["master_keys"]
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        return keys

    def master_key_ids(self) -> list[str]:
        """The master keys' names."""
        return sorted(self._keys)

    def _key(self, master_key_id: str, version: str) -> bytes:
        if version not in self._keys.get(master_key_id, {}).get("versions", {}):
            self._refresh()  # a newer version, made by a rotation in another process
        entry = self._keys.get(master_key_id)
        if entry is None:
            raise EncryptionError(f"lake keys: {self.path} has no master key {master_key_id!r}")
        material = entry["versions"].get(version)
        if material is None:
            raise EncryptionError(
                f"lake keys: {self.path} has no version {version} of master key {master_key_id!r} "
                f"(it holds {sorted(entry['versions'])}): an old copy of the key file, or a version retired before "
                "this file's keys were re-wrapped"
            )
        return bytes.fromhex(material)

    def wrap_key(self, key: bytes, master_key_id: str) -> str:  # noqa: D102
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._refresh()  # wrap with the current version, even if it changed since this process started
        entry = self._keys.get(master_key_id)
        if entry is None:
            raise EncryptionError(f"lake keys: {self.path} has no master key {master_key_id!r}")
        version = str(entry["current"])
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._key(master_key_id, version)).encrypt(nonce, key, master_key_id.encode())
        return f"{master_key_id}/{version}:" + base64.b64encode(nonce + sealed).decode()

    def unwrap_key(self, wrapped: str, master_key_id: str) -> bytes:  # noqa: D102
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        name, _, rest = wrapped.partition("/")
        version, _, blob = rest.partition(":")
        if name != master_key_id or not blob:
            raise EncryptionError(f"lake keys: a wrapped key for {name!r} was presented as {master_key_id!r}")
        raw = base64.b64decode(blob)
        try:
            return AESGCM(self._key(master_key_id, version)).decrypt(raw[:_NONCE], raw[_NONCE:], name.encode())
        except InvalidTag:
            raise EncryptionError(
                f"lake keys: master key {master_key_id!r} version {version} in {self.path} does not unwrap this "
                "file's key (another key file?)"
            ) from None

    def rotate(self) -> None:  # noqa: D102
        self._refresh()
        for entry in self._keys.values():
            new = max(int(v) for v in entry["versions"]) + 1
            entry["versions"][str(new)] = os.urandom(32).hex()
            entry["current"] = new
        self._save()

    def retire(self) -> None:  # noqa: D102
        self._refresh()
        for entry in self._keys.values():
            current = str(entry["current"])
            entry["versions"] = {current: entry["versions"][current]}
        self._save()

    def versions(self) -> dict[str, list[int]]:
        """Each master key's versions held (for ``workbench keys`` reports; never the keys)."""
        return {mid: sorted(int(v) for v in e["versions"]) for mid, e in sorted(self._keys.items())}

    def __repr__(self) -> str:
        return f"LocalKeyFile({str(self.path)!r}, versions={self.versions()})"


def _write(path: Path, keys: dict[str, Any]) -> None:
    data = json.dumps({"format": 1, "master_keys": keys}, indent=1).encode()

    def write(f: Any) -> None:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)

    atomic_write(path, write)

"""A sealed stream: AES-256-GCM in chunks, so a large archive is encrypted and authenticated piece by piece.

The file is ``WBSEAL1\\n``, a JSON header (the key's public id, the chunk size, a random
nonce prefix), then records of ``length (4 bytes) | ciphertext``. Chunk *i* is sealed
with nonce ``prefix | i | final`` and the header as associated data, so a chunk that is
altered, moved, dropped or appended after the final one, and an archive cut short,
all fail to open (the construction of the STREAM online AEAD).

Examples
--------
>>> import io
>>> from workbench.storage.keys import SecretKey
>>> key = SecretKey(bytes(32), "example")
>>> buf = io.BytesIO()
>>> with SealedWriter(buf, key, chunk=4) as w:
...     _ = w.write(b"hello, world")
>>> SealedReader(io.BytesIO(buf.getvalue()), key).read()
b'hello, world'
>>> SealedReader(io.BytesIO(buf.getvalue()[:-3]), key).read()
Traceback (most recent call last):
...
workbench.errors.EncryptionError: sealed stream: truncated (it ends inside a chunk)
"""

from __future__ import annotations

import io
import json
import os
import struct
from typing import Any, BinaryIO

from workbench.errors import EncryptionError
from workbench.storage.keys import SecretKey

__all__ = ["SealedReader", "SealedWriter"]

MAGIC = b"WBSEAL1\n"
_PURPOSE = "sealed/aes-gcm"


def _nonce(prefix: bytes, i: int, final: bool) -> bytes:
    return prefix + struct.pack(">I", i) + (b"\x01" if final else b"\x00")


class SealedWriter(io.RawIOBase):
    """A writable binary stream that seals what it is given into ``out``.

    Parameters
    ----------
    out
        Where the sealed bytes go.
    key
        The secret key (a purpose key is derived from it).
    chunk
        Plaintext bytes per chunk.
    """

    def __init__(self, out: BinaryIO, key: SecretKey, *, chunk: int = 1 << 20) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        super().__init__()
        self._out, self._chunk, self._i = out, chunk, 0
        self._buf = bytearray()
        self._aead = AESGCM(key.derive(_PURPOSE))
        self._prefix = os.urandom(7)
        self._head = json.dumps(
            {"format": 1, "key_id": key.key_id, "chunk": chunk, "prefix": self._prefix.hex()}, sort_keys=True
        ).encode()
        out.write(MAGIC + struct.pack(">I", len(self._head)) + self._head)

    def writable(self) -> bool:  # noqa: D102
        return True

    def write(self, data: Any) -> int:  # noqa: D102
        self._buf += data
        while len(self._buf) > self._chunk:  # keep one chunk back: the last one is sealed as final
            self._seal(bytes(self._buf[: self._chunk]), final=False)
            del self._buf[: self._chunk]
        return len(data)

    def _seal(self, plain: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._i, final), plain, self._head)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._i += 1

    def close(self) -> None:
        """Seal the final chunk (the stream is incomplete without it)."""
        if not self.closed:
            self._seal(bytes(self._buf), final=True)
            self._buf.clear()
            self._out.flush()
        super().close()


class SealedReader(io.RawIOBase):
    """A readable binary stream of what :class:`SealedWriter` sealed; refuses any alteration.

    Parameters
    ----------
    src
        The sealed bytes.
    key
        The secret key they were sealed with.
    what
        Names the stream in messages.
    """

    def __init__(self, src: BinaryIO, key: SecretKey, *, what: str = "sealed stream") -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        super().__init__()
        self._src, self._what, self._i, self._done = src, what, 0, False
        self._buf = bytearray()
        if src.read(len(MAGIC)) != MAGIC:
            raise EncryptionError(f"{what}: not a sealed Workbench archive (bad magic)")
        (n,) = struct.unpack(">I", self._exact(4))
        self._head = self._exact(n)
        try:
            header = json.loads(self._head)
            self._prefix = bytes.fromhex(header["prefix"])
        except (ValueError, KeyError):
            raise EncryptionError(f"{what}: corrupt header") from None
        if header.get("key_id") != key.key_id:
            raise EncryptionError(
                f"{what}: sealed with another key (key id {header.get('key_id')!r}); this key ({key.source}) "
                f"has id {key.key_id!r}"
            )
        self._aead = AESGCM(key.derive(_PURPOSE))

    def _exact(self, n: int) -> bytes:
        data = self._src.read(n)
        if len(data) != n:
            raise EncryptionError(f"{self._what}: truncated (it ends inside a chunk)")
        return data

    def readable(self) -> bool:  # noqa: D102
        return True

    def _next(self) -> None:
        from cryptography.exceptions import InvalidTag

        head = self._src.read(4)
        if not head:
            raise EncryptionError(f"{self._what}: truncated (its final chunk is missing)")
        (n,) = struct.unpack(">I", head if len(head) == 4 else self._exact(4))
        sealed = self._exact(n)
        for final in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, self._i, final), sealed, self._head)
            except InvalidTag:
                continue
            self._buf += plain
            self._i += 1
            if final:
                self._done = True
                if self._src.read(1):
                    raise EncryptionError(f"{self._what}: bytes after the final chunk")
            return
        raise EncryptionError(f"{self._what}: chunk {self._i} fails authentication (the file was altered)")

    def readinto(self, b: Any) -> int:  # noqa: D102
        while not self._buf and not self._done:
            self._next()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        del self._buf[:n]
        return n

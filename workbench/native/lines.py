"""Line boundaries of NDJSON bytes, found in bulk.

Sources cut batches at line boundaries, and the decoder needs the span of every
line. Both come from one scan, done here in blocks that stay in the CPU cache: a
comparison of the whole batch at once would allocate (and page-fault in) a
temporary as large as the batch, which costs more than the scan itself.

Examples
--------
>>> newlines(b'{"a": 1}\\n{"a": 2}\\n{"a"').tolist()
[8, 17]
>>> high_bytes(b'ab\\xc3\\xa9\\n').tolist()
[2, 3]
>>> occurrences(b'{"a": NaN}\\n{"N": 1}\\n', b"NaN", limit=10).tolist()
[6]
"""

from __future__ import annotations

import numpy as np

__all__ = ["high_bytes", "newlines", "occurrences"]

#: Bytes compared per step: small enough for the comparison to stay in cache.
_BLOCK = 1 << 18


def _positions(data: bytes | bytearray, compare: np.ufunc, value: int) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(buf)
    if n <= _BLOCK:
        return np.flatnonzero(compare(buf, value)).astype(np.int64, copy=False)
    mask = np.empty(_BLOCK, dtype=bool)
    parts = []
    for at in range(0, n, _BLOCK):
        seg = buf[at : at + _BLOCK]
        m = mask[: len(seg)]
        compare(seg, value, out=m)
        idx = np.flatnonzero(m)
        if len(idx):
            parts.append(idx + at)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def newlines(data: bytes | bytearray) -> np.ndarray:
    """Positions (int64, ascending) of every ``\\n`` byte in ``data``.

    By ``memchr`` in the native library when it is built (several times faster),
    else by numpy comparisons in cache-sized blocks.
    """
    from workbench import native  # the package imports nothing of this module: no cycle at import time

    found = native.newlines(data)
    return _positions(data, np.equal, 10) if found is None else found


#: Bytes per chunk of the high-byte search, and the high bit of each byte of a word.
_CHUNK = 1 << 13
_HIGH = np.uint64(0x8080808080808080)


def high_bytes(data: bytes | bytearray) -> np.ndarray:
    """Positions of every byte >= 0x80 (none when ``data`` is ASCII: a fast check first).

    Such bytes are rare in JSON, so whole chunks are ruled out at once — an OR over
    their 64-bit words has no high bit set — and only the few others are searched
    byte by byte.
    """
    if data.isascii():
        return np.empty(0, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    whole = len(buf) // _CHUNK * _CHUNK
    words = buf[:whole].view(np.uint64).reshape(-1, _CHUNK // 8)
    hit = np.flatnonzero(np.bitwise_or.reduce(words, axis=1) & _HIGH)
    found = np.flatnonzero(buf[:whole].reshape(-1, _CHUNK)[hit] >= 0x80)
    tail = np.flatnonzero(buf[whole:] >= 0x80)
    return np.concatenate((hit[found // _CHUNK] * _CHUNK + found % _CHUNK, tail + whole))


def occurrences(data: bytes | bytearray, token: bytes, *, limit: int) -> np.ndarray | None:
    """Positions (int64, ascending) of every ``token`` in ``data``; ``None`` past ``limit`` candidates.

    Each occurrence of the token's first byte is a candidate, found with CPython's
    single-byte ``find`` (``memchr``, several times faster than a numpy comparison
    pass) and confirmed in place. That is fast while the byte is rare; a caller whose
    data has more than ``limit`` of them gets ``None`` and searches another way.
    """
    first = token[:1]
    found: list[int] = []
    at = data.find(first)
    tries = 0
    while at >= 0:
        tries += 1
        if tries > limit:
            return None
        if data.startswith(token, at):
            found.append(at)
        at = data.find(first, at + 1)
    return np.array(found, dtype=np.int64)

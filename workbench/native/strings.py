"""Cheap facts about polars string columns, read from their Arrow views without a copy.

polars stores strings as Arrow *string views*: 16 bytes per value holding its length
in bytes and its first four bytes (or all of it, up to twelve). The first byte and
the byte length of every value can therefore be read as numpy arrays over that
memory — no string is touched, where a polars expression (a regex, ``len_chars``)
walks every string. Both serve as exact pre-filters: a string that JSON sent as a
number starts with ``-`` or a digit, and a string is at most as many characters
long as it has bytes.

Columns in another layout (an older polars) fall back on polars expressions.

Examples
--------
>>> import polars as pl
>>> s = pl.Series(["ab", None, "", "ten bytes!", "a longer value here"])
>>> first_byte_in(s, b"-0123456789t").tolist()
[False, False, False, True, False]
>>> byte_lengths(s).tolist()
[2, 0, 0, 10, 19]
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["byte_lengths", "first_byte_in"]


def _views(series: pl.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """Byte length and first byte of every value (0 and 0 for a null), or ``None``.

    ``None`` when the column is not in the string-view layout.
    """
    arr = series.to_arrow(compat_level=pl.CompatLevel.newest())
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    lengths, firsts = [], []
    for c in chunks:
        if not pa.types.is_string_view(c.type):
            return None
        validity, views = c.buffers()[:2]
        lo, hi = c.offset, c.offset + len(c)
        length = np.frombuffer(views, dtype="<u4").reshape(-1, 4)[lo:hi, 0]
        first = np.frombuffer(views, dtype=np.uint8).reshape(-1, 16)[lo:hi, 4]
        if c.null_count:  # a null's view is unspecified: read it as an empty string
            valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[lo:hi].astype(bool)
            length = np.where(valid, length, 0)
        lengths.append(length)
        firsts.append(np.where(length > 0, first, 0))
    if not chunks:
        return np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.uint8)
    if len(chunks) == 1:
        return lengths[0], firsts[0].astype(np.uint8, copy=False)
    return np.concatenate(lengths), np.concatenate(firsts).astype(np.uint8, copy=False)


def first_byte_in(series: pl.Series, chars: bytes) -> np.ndarray:
    """Whether each value starts with one of the ASCII ``chars`` (``False`` for empty or null)."""
    views = _views(series)
    if views is None:
        return (
            pl.select(pl.any_horizontal([pl.lit(series).str.starts_with(chr(c)) for c in chars]).fill_null(False))
            .to_series()
            .to_numpy()
        )
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table[views[1]]


def byte_lengths(series: pl.Series) -> np.ndarray:
    """The length in bytes of every value (uint32; 0 for a null)."""
    views = _views(series)
    if views is None:
        return series.str.len_bytes().fill_null(0).to_numpy().astype(np.uint32)
    return views[0]

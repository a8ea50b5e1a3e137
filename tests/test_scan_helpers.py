"""Byte and string-view helpers of the replay path against plain Python."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.native.lines import high_bytes, newlines, occurrences
from workbench.native.strings import byte_lengths, first_byte_in
from workbench.operators.decode import RawLines, _lines_with_literals

CHARS = b"-0123456789 tf{["


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_newlines_and_high_bytes_find_every_byte(data):
    assert newlines(data).tolist() == [i for i, b in enumerate(data) if b == 10]
    assert high_bytes(data).tolist() == [i for i, b in enumerate(data) if b >= 0x80]
    assert newlines(bytearray(data)).tolist() == newlines(data).tolist()


def test_newlines_across_blocks():
    """Buffers larger than a scan block: positions at and around the block edges."""
    rng = np.random.default_rng(0)
    data = bytearray(rng.integers(0, 256, 700_000, dtype=np.uint8).tobytes())
    for at in (0, 262_143, 262_144, 262_145, 524_288, 699_999):
        data[at] = 10
    assert newlines(data).tolist() == [i for i, b in enumerate(data) if b == 10]
    assert high_bytes(data).tolist() == np.flatnonzero(np.frombuffer(data, np.uint8) >= 0x80).tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50_000), max_size=20), st.integers(0, 50_000))
def test_high_bytes_sparse_across_chunks(at, size):
    """Few high bytes in a buffer of many chunks, at chunk edges too."""
    data = bytearray(b"a" * size)
    for i in [*at, 8191, 8192, 16383]:
        if i < size:
            data[i] = 0x80 + i % 128
    want = [i for i, b in enumerate(data) if b >= 0x80]
    assert high_bytes(data).tolist() == want
    assert high_bytes(bytes(data)).tolist() == want


values = st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(values, min_size=1, max_size=4), cut=st.integers(0, 10))
def test_string_views_match_the_values(parts, cut):
    """Many chunks, nulls, inline and long values, a slice that starts mid-chunk."""
    series = pl.concat([pl.Series(p, dtype=pl.String) for p in parts], rechunk=False)
    series = series.slice(min(cut, series.len()))
    items = series.to_list()
    assert byte_lengths(series).tolist() == [len(v.encode()) if v is not None else 0 for v in items]
    want = [bool(v) and v.encode()[0] in CHARS for v in items]
    assert first_byte_in(series, CHARS).tolist() == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"N", b"a", b"NaN", b"I", b"Infinity", b"x", b"\n", b"{}", b" "]), max_size=60))
def test_occurrences_find_every_token(parts):
    data = b"".join(parts)
    for token in (b"NaN", b"Infinity"):
        want = [i for i in range(len(data)) if data.startswith(token, i)]
        assert occurrences(data, token, limit=10_000).tolist() == want
        assert occurrences(bytearray(data), token, limit=10_000).tolist() == want
    if data.count(b"N") > 2:
        assert occurrences(data, b"NaN", limit=2) is None


LITERAL_LINES = [b'{"a": NaN}', b'{"a": 1}', b'{"N": "Na"}', b'{"b": -Infinity}', b"", b"  "]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(LITERAL_LINES), max_size=80))
def test_lines_with_literals_match_a_per_line_search(lines):
    """The memchr search and its per-line fallback (many candidates) agree with plain Python."""
    data = b"\n".join(lines) + b"\n"
    raw = RawLines(data)
    want = [i for i in range(len(raw)) if b"NaN" in raw.line(i) or b"Infinity" in raw.line(i)]
    assert _lines_with_literals(raw) == want
    many = RawLines(data * 40)  # enough candidates to search per line instead
    has = [i for i in range(len(many)) if b"NaN" in many.line(i) or b"Infinity" in many.line(i)]
    assert _lines_with_literals(many) == has

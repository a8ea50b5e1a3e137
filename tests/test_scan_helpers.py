"""Byte and string-view helpers of the replay path against plain Python."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.operators.strings import byte_lengths, first_byte_in
from workbench.sources.lines import high_bytes, newlines

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

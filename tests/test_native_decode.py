"""The native NDJSON fast path decodes exactly what the polars path decodes, for any input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from workbench import native
from workbench.operators.decode import decode_ndjson
from workbench.schema import NETWORK_FLOWS, SERVER_METRICS, USER_EVENTS

from conftest import line, metric

SCHEMAS = {s.name: s for s in (SERVER_METRICS, USER_EVENTS, NETWORK_FLOWS)}


def both(data: bytes, schema=SERVER_METRICS):
    fast = decode_ndjson(data, schema)
    with native.disabled():
        ref = decode_ndjson(data, schema)
    return fast, ref


def assert_same(data: bytes, schema=SERVER_METRICS) -> None:
    fast, ref = both(data, schema)
    assert_frame_equal(fast.frame, ref.frame, check_exact=True)
    assert_frame_equal(fast.dead, ref.dead, check_exact=True)
    assert fast.records == ref.records


def test_the_native_decoder_is_built_where_there_is_a_compiler():
    if shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine: the polars path alone runs")
    assert native.available(), native.status()
    assert native.status() == "native"
    with native.disabled():
        assert not native.available()
        assert native.status().startswith("polars")


def test_simple_lines_are_decoded_natively_and_the_rest_are_left_to_polars():
    good = line(metric(1)).strip()
    lines = [
        good,
        line(metric(2, host="h\u00e9")).strip(),  # non-ASCII: polars
        line(metric(3, host='say "hi"')).strip(),  # an escape: polars
        line({**metric(4), "extra": 1}).strip(),  # an unknown key: polars
        line(metric(5, cpu="12.5")).strip(),  # a string for a number: polars, then rejected
        b'{"event_id": "e6", "ts": 17',  # broken JSON: rejected
    ]
    data = b"\n".join(lines) + b"\n"
    raw = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(raw == 10)
    starts = np.concatenate(([0], nl[:-1] + 1))
    taken, frame = native.parse_ndjson(data, starts, nl, SERVER_METRICS)
    assert taken.tolist() == [True, False, False, False, False, False]
    assert frame["event_id"].to_list() == ["e1"]
    fast, ref = both(data)
    assert fast.frame["event_id"].to_list() == ["e1", "e2", "e3", "e4"]  # in line order
    assert fast.dead["reason"].str.slice(0, 30).to_list() == [
        "field 'cpu' must be a number, ",
        "broken JSON: the record is not",
    ]
    assert_frame_equal(fast.frame, ref.frame, check_exact=True)
    assert_frame_equal(fast.dead, ref.dead, check_exact=True)


@pytest.mark.parametrize(
    "token",
    [
        "0",
        "-0",
        "-0.0",
        "1e-05",
        "2.5E+3",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890",
        "0.1",
        "0.30000000000000004",
        "1.7976931348623157e308",
        "2.2250738585072014e-308",
        "5e-324",
        "1e400",
        "9007199254740993",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "+1",
        "true",
        "null",
        '"1"',
    ],
)
@pytest.mark.parametrize("field", ["cpu", "status", "ts", "host"])
def test_number_tokens_decode_as_polars_decodes_them(field, token):
    rec = json.dumps(metric(7)).replace(f'"{field}": ', f'"{field}": @', 1)
    start = rec.index("@")
    end = rec.index(",", start)
    assert_same((rec[:start] + token + rec[end:]).encode() + b"\n")


@st.composite
def value_token(draw) -> str:
    kind = draw(st.sampled_from(["int", "float", "repr", "str", "esc", "uni", "null", "bool", "nested", "odd"]))
    if kind == "int":
        return str(draw(st.integers(min_value=-(2**70), max_value=2**70)))
    if kind == "float":
        return json.dumps(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if kind == "repr":
        mant = draw(st.integers(min_value=0, max_value=10**20))
        exp = draw(st.integers(min_value=-30, max_value=30))
        sign = draw(st.sampled_from(["", "-"]))
        return draw(st.sampled_from([f"{sign}{mant}e{exp}", f"{sign}{mant}.{abs(exp)}", f"{sign}0.{mant}"]))
    if kind == "str":
        return json.dumps(draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)))
    if kind == "esc":
        return json.dumps(draw(st.text(max_size=10)))
    if kind == "uni":
        return json.dumps(draw(st.text(max_size=10)), ensure_ascii=False)
    if kind == "null":
        return "null"
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if kind == "nested":
        return draw(st.sampled_from(['{"a": 1}', "[1, 2]", "[]", "{}"]))
    return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "01", "1.", "'x'", '"a\tb"', "nul", "1e5x", '"\x7f"']))


@st.composite
def record_line(draw, schema) -> bytes:
    names = [f.name for f in schema.fields]
    keys = draw(st.lists(st.sampled_from([*names, *names, "extra", "Host", "ho\\u0073t"]), max_size=len(names) + 2))
    ws = draw(st.sampled_from(["", " ", "\t", "  "]))
    parts = [f'"{k}"{ws}:{ws}{draw(value_token())}' for k in keys]
    text = "{" + ws + f",{ws}".join(parts) + ws + "}"
    mangle = draw(st.sampled_from(["none"] * 6 + ["truncate", "trailing", "blank", "array", "cr"]))
    raw = text.encode()
    if mangle == "truncate":
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    elif mangle == "trailing":
        raw += draw(st.sampled_from([b" ", b"x", b"}", b" \t"]))
    elif mangle == "blank":
        raw = b"   "
    elif mangle == "array":
        raw = b"[" + raw + b"]"
    elif mangle == "cr":
        raw += b"\r"
    return raw


@st.composite
def batch(draw):
    schema = SCHEMAS[draw(st.sampled_from(sorted(SCHEMAS)))]
    lines = draw(st.lists(record_line(schema), min_size=1, max_size=25))
    return schema, b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_native_and_polars_paths_agree_on_any_batch(case):
    schema, data = case
    assert_same(data, schema)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_simulators_dirty_streams_agree_and_mostly_take_the_fast_path(name):
    from workbench.sources.simulator import Simulator

    schema = SCHEMAS[name]
    data = Simulator(name, seed=3).generate(20_000).data
    assert_same(data, schema)
    raw = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(raw == 10)
    taken, _ = native.parse_ndjson(data, np.concatenate(([0], nl[:-1] + 1)), nl, schema)
    assert taken.mean() > 0.95


def test_a_native_batch_feeds_the_pipeline_like_a_polars_batch(metric_lines):
    from workbench import Pipeline, Tumbling
    from workbench.testing import FrameSource

    data = metric_lines(500) + b'{"event_id": "bad"\n' + line(metric(600, host="h\u00e9"))

    def run() -> tuple[pl.DataFrame, dict]:
        pipe = Pipeline(FrameSource([data]), name="native-pipeline-test")
        out = pipe.collect(pipe.standard("server_metrics", Tumbling("10s"), lateness="5s"))
        pipe.run()
        pipe.check_invariant()
        return pl.concat(out), pipe.counts()

    fast = run()
    with native.disabled():
        ref = run()
    assert_frame_equal(fast[0], ref[0], check_exact=True)
    assert fast[1] == ref[1]
    assert fast[1]["dead_lettered"] == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=60), st.booleans())
def test_native_newlines_equal_the_numpy_scan(pieces, trailing):
    from workbench.native.lines import _positions

    data = b"\n".join(pieces) + (b"\n" if trailing else b"")
    expect = _positions(data, np.equal, 10)
    got = native.newlines(data)
    assert got is not None
    assert got.dtype == np.int64
    assert got.tolist() == expect.tolist()


def test_native_newlines_in_a_block_of_only_newlines_ask_again_with_room_for_all():
    data = bytearray(b"\n" * 70_000)  # more lines than the first guess of room
    assert native.newlines(data).tolist() == list(range(70_000))


def test_without_a_compiler_decoding_falls_back_on_polars_and_says_why(monkeypatch, tmp_path, caplog, metric_lines):
    monkeypatch.setattr(native._NDJSON, "lib", None)
    monkeypatch.setattr(native._NDJSON, "why", None)
    monkeypatch.setattr(native._NDJSON, "candidates", lambda: [tmp_path / "pkg" / "x.so", tmp_path / "cache" / "x.so"])
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with caplog.at_level("WARNING", logger="workbench.native"):
        assert not native.available()
    assert native.status().startswith("polars (no C compiler could build it")
    assert "decoding with polars alone" in caplog.text
    out = decode_ndjson(metric_lines(50) + b"{broken\n", SERVER_METRICS)
    assert (out.frame.height, out.dead.height) == (50, 1)


def test_a_build_replaces_the_builds_of_earlier_sources(monkeypatch, tmp_path):
    stale = tmp_path / "_wbndjson-000000000000.so"
    stale.write_bytes(b"old")
    dest = tmp_path / native._NDJSON.target()
    native._NDJSON.build(dest)
    assert dest.exists()
    assert not stale.exists()


def test_output_blocks_come_back_when_the_columns_go_and_the_pool_is_bounded():
    import gc

    pool = native._Pool(keep=2)
    block = pool.take(100_000)
    assert len(block) == 1 << 17  # sizes are powers of two
    view = pool.lend(block, 10)
    assert pool.free_bytes() == 0
    del view
    gc.collect()
    assert pool.take(100_000) is block  # back, and handed out again
    for _ in range(5):
        pool.give(np.empty(1 << 17, dtype=np.uint8))
    assert pool.free_bytes() == 2 << 17  # at most `keep` of a size

    data = b"".join(line(metric(i, host=f"host-with-a-long-name-{i % 7}")) for i in range(3_000))
    out = decode_ndjson(data, SERVER_METRICS)
    held = native._POOL.free_bytes()
    host = out.frame["host"].to_list()
    del out
    gc.collect()
    assert native._POOL.free_bytes() > held  # the frame's blocks returned
    assert host[8] == "host-with-a-long-name-1"

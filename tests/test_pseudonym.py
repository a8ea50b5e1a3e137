"""Pseudonymisation: chosen fields replaced by a keyed HMAC before anything is deduplicated, windowed or stored."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import metric
from workbench.errors import ConfigError
from workbench.operators.pseudonym import Pseudonymizer

KEY = bytes(range(32))


@given(st.lists(st.one_of(st.text(max_size=20), st.integers()), min_size=1, max_size=50))
def test_the_same_value_and_key_give_the_same_pseudonym_and_distinct_values_distinct_ones(values):
    frame = pl.DataFrame({"v": [str(v) for v in values]})
    one, two = Pseudonymizer(["v"], key=KEY), Pseudonymizer(["v"], key=KEY)
    out = one.process(frame)["v"].to_list()
    again = two.process(frame.reverse())["v"].to_list()[::-1]  # another instance, another batch order
    assert out == again
    assert len(set(out)) == len({str(v) for v in values})
    assert all(len(p) == 16 and int(p, 16) >= 0 for p in out)  # 16 hex digits, whatever the value


def test_another_key_gives_other_pseudonyms_nulls_stay_and_other_columns_are_untouched():
    frame = pl.DataFrame({"user": ["ana", None, "ana"], "uid": [7, 8, 7], "cpu": [1.0, 2.0, 3.0]})
    a = Pseudonymizer(["user", "uid"], key=KEY).process(frame)
    b = Pseudonymizer(["user", "uid"], key=bytes(reversed(KEY))).process(frame)
    assert a["user"][1] is None and a["user"][0] == a["user"][2] != "ana"
    assert a["uid"].dtype == pl.String and a["uid"][0] == a["uid"][2]
    assert a["user"][0] != b["user"][0]
    assert a["cpu"].to_list() == [1.0, 2.0, 3.0]
    assert frame["user"].to_list() == ["ana", None, "ana"]  # the input is not changed


def test_the_key_comes_from_the_environment_or_a_file_never_an_argument(monkeypatch, tmp_path):
    monkeypatch.delenv("WORKBENCH_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("WORKBENCH_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(ConfigError, match="WORKBENCH_PSEUDONYM_KEY"):
        Pseudonymizer(["user"])
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text("ab" * 32)
    key_file.chmod(0o600)
    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY_FILE", str(key_file))
    from_file = Pseudonymizer(["user"]).pseudonym("ana")
    monkeypatch.delenv("WORKBENCH_PSEUDONYM_KEY_FILE")
    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY", "ab" * 32)
    assert Pseudonymizer(["user"]).pseudonym("ana") == from_file


def _expected(value: str) -> str:
    from workbench.storage.keys import SecretKey

    return Pseudonymizer(["v"], key=SecretKey(KEY, "test").derive("pseudonym/hmac")).pseudonym(value)


def test_a_pipeline_windows_and_stores_only_pseudonyms(tmp_path, monkeypatch):
    from workbench import Pipeline
    from workbench.operators.windows import Tumbling
    from workbench.sources.frames import FrameSource
    from workbench.storage.lake import Lake

    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY", KEY.hex())
    lines = b"".join(json.dumps(metric(i, host=f"host-{i % 3}")).encode() + b"\n" for i in range(120))
    pipe = Pipeline(FrameSource([lines]), name="pseudo")
    pipe.standard("server_metrics", Tumbling("10s"), lateness="0s", pseudonymize=["host"])
    lake = Lake(tmp_path / "lake")
    pipe.to_lake(lake, outputs=["windows"])
    pipe.run()
    hosts = set(lake.query("select distinct host from windows")["host"].to_list())
    assert hosts == {_expected(f"host-{i}") for i in range(3)}
    raw = b"".join(p.read_bytes() for p in lake.files("windows"))
    assert b"host-1" not in raw


def test_dead_letters_store_no_clear_value_of_a_pseudonymised_field(tmp_path, monkeypatch):
    from workbench import Pipeline
    from workbench.operators.pseudonym import WITHHELD
    from workbench.operators.windows import Tumbling
    from workbench.sources.frames import FrameSource
    from workbench.storage.lake import Lake

    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY", KEY.hex())
    good = [metric(i, host=f"host-{i % 3}") for i in range(30)]
    bad = [metric(100, host="host-secret", cpu=250.0), metric(101, host="host-secret-2", mem="lots")]
    lines = b"".join(json.dumps(r).encode() + b"\n" for r in [*good, *bad]) + b"host-garbage,not json\n"
    pipe = Pipeline(FrameSource([lines]), name="pseudo-dead")
    pipe.standard("server_metrics", Tumbling("10s"), lateness="0s", pseudonymize=["host"])
    lake = Lake(tmp_path / "lake")
    pipe.to_lake(lake)
    pipe.run()
    dead = lake.read("dead_letter")
    assert dead.height == 3, dead
    stored = b"".join(p.read_bytes() for name in ("dead_letter", "windows") for p in lake.files(name))
    assert b"host-" not in stored  # neither the rejected records' hosts nor the garbage line
    raws = dead["raw"].to_list()
    assert WITHHELD in raws
    hosts = {json.loads(r)["host"] for r in raws if r != WITHHELD}
    assert hosts == {_expected("host-secret"), _expected("host-secret-2")}


def test_a_project_file_pseudonymizes_its_fields(tmp_path, monkeypatch):
    import workbench as wb
    from workbench.storage.lake import Lake

    monkeypatch.setenv("WORKBENCH_PSEUDONYM_KEY", KEY.hex())
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(json.dumps(metric(i, host=f"web-{i % 2}")).encode() + b"\n" for i in range(60)))
    (tmp_path / "workbench.yaml").write_text("source: events.jsonl\npseudonymize: [host]\noutputs: {out: out}\n")
    project = wb.Project.load(tmp_path / "workbench.yaml")
    assert project.pseudonymize == ("host",)
    project.pipeline(checkpoints=False).run()
    hosts = set(Lake(tmp_path / "out", partition=False).query("select distinct host from windows")["host"].to_list())
    assert hosts == {_expected("web-0"), _expected("web-1")}
    (tmp_path / "bad.yaml").write_text("source: events.jsonl\npseudonymize: {host: yes}\n")
    with pytest.raises(ConfigError, match="pseudonymize: expected a field name or a list"):
        wb.Project.load(tmp_path / "bad.yaml")

"""The lake encrypted at rest: Parquet modular encryption, keys wrapped by a KMS client, rotation."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from workbench.errors import EncryptionError
from workbench.storage.kms import LocalKeyFile
from workbench.storage.lake import Lake
from workbench.storage.lakecrypt import LakeEncryption, key_material_path

from conftest import cli, line, metric

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _frame(n: int = 6) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "host": [f"db-primary-{i % 2}" for i in range(n)],
            "window_start": [T0 + timedelta(hours=12 * i) for i in range(n)],
            "count": list(range(n)),
        }
    ).with_columns(pl.col("window_start").dt.cast_time_unit("ms"))


@pytest.fixture
def keys(tmp_path, monkeypatch):
    path = tmp_path / "secrets" / "lake-keys.json"
    monkeypatch.setenv("WORKBENCH_LAKE_KEYS_FILE", str(path))
    return path


def test_an_encrypted_lake_reads_and_queries_like_a_plain_one(tmp_path, keys):
    kms = LocalKeyFile.create(keys, ["footer", "columns", "pii"])
    spec = LakeEncryption(column_keys={"pii": ("host",), "columns": ("*",)})
    lake = Lake(tmp_path / "lake", encryption=spec, kms=kms)
    plain = Lake(tmp_path / "plain")
    for epoch in (1, 2):
        lake.write("windows", _frame(), epoch=epoch)
        plain.write("windows", _frame(), epoch=epoch)
    files = lake.files("windows")
    assert len(files) == 6 and all(f.read_bytes()[:4] == b"PARE" for f in files)  # encrypted footer
    assert all(key_material_path(f).exists() for f in files)
    assert b"db-primary" not in b"".join(f.read_bytes() for f in files)
    with pytest.raises(pl.exceptions.ComputeError, match="encrypted footer"):
        pl.read_parquet(files[0])
    sql = "select host, sum(count) as n from windows group by host order by host"
    assert lake.query(sql).equals(plain.query(sql))
    # another process: the lake's marker says it is encrypted, the keys come from the environment
    again = Lake(tmp_path / "lake")
    assert again.encrypted and again.read("windows").sort("window_start", "count").equals(
        plain.read("windows").sort("window_start", "count")
    )
    assert again.rollback("windows", 1) == 3
    assert len(again.files("windows")) == 3 and len(list((tmp_path / "lake").rglob("_KEY_MATERIAL_*"))) == 3


def test_reading_without_the_keys_fails_naming_the_lake(tmp_path, keys, monkeypatch):
    Lake(tmp_path / "lake", encryption=LakeEncryption(), kms=LocalKeyFile.create(keys, ["footer", "columns"])).write(
        "windows", _frame(), epoch=1
    )
    monkeypatch.setenv("WORKBENCH_LAKE_KEYS_FILE", str(tmp_path / "nowhere.json"))
    with pytest.raises(EncryptionError, match=r"lake '.*lake' is encrypted .* no key file at .*nowhere\.json"):
        Lake(tmp_path / "lake").query("select * from windows")
    other = LocalKeyFile.create(tmp_path / "other.json", ["footer", "columns"])
    with pytest.raises(EncryptionError, match="cannot decrypt .* does not unwrap this file's key"):
        Lake(tmp_path / "lake", kms=other).read("windows")


def _events(tmp_path, n=400):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(metric(i, host=f"h{i % 4}")) for i in range(n)))
    return path


def test_cli_round_trip_keys_init_replay_query_and_rotate(tmp_path, keys, monkeypatch):
    events = _events(tmp_path)
    assert cli("replay", events, "--out", tmp_path / "plain").returncode == 0
    run = cli("keys", "init", "--lake", tmp_path / "enc")
    assert run.returncode == 0, run.stderr
    assert str(keys) in run.stdout and keys.read_text() not in run.stdout
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    run = cli("replay", events, "--out", tmp_path / "enc")
    assert run.returncode == 0, run.stderr
    sql = "select host, count(*) as n, sum(count) as events from windows group by host order by host"
    expected = cli("query", "--lake", tmp_path / "plain", sql, "--format", "json")
    got = cli("query", "--lake", tmp_path / "enc", sql, "--format", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(expected.stdout) and json.loads(got.stdout)
    files = Lake(tmp_path / "enc").files()
    before = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    material = {f: key_material_path(f).read_text() for f in files}
    old_keys = keys.read_text()

    run = cli("keys", "rotate", "--lake", tmp_path / "enc")
    assert run.returncode == 0, run.stderr
    assert f"re-wrapped the data keys of {len(files)} files" in run.stdout
    assert {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files} == before  # no data rewritten
    assert all(key_material_path(f).read_text() != material[f] for f in files)
    assert LocalKeyFile(keys).versions() == {"columns": [2], "footer": [2]}
    again = cli("query", "--lake", tmp_path / "enc", sql, "--format", "json")
    assert json.loads(again.stdout) == json.loads(expected.stdout)
    # the retired master keys no longer open the lake
    stale = tmp_path / "stale.json"
    stale.write_text(old_keys)
    os.chmod(stale, 0o600)
    monkeypatch.setenv("WORKBENCH_LAKE_KEYS_FILE", str(stale))
    run = cli("query", "--lake", tmp_path / "enc", sql)
    assert run.returncode == 2 and "no version 2 of master key" in run.stderr and "Traceback" not in run.stderr
    # and without any key file: a clear message, not a traceback
    monkeypatch.setenv("WORKBENCH_LAKE_KEYS_FILE", str(tmp_path / "missing.json"))
    run = cli("query", "--lake", tmp_path / "enc", sql)
    assert run.returncode == 2 and "is encrypted (Parquet modular encryption)" in run.stderr
    assert "WORKBENCH_LAKE_KEYS_FILE" in run.stderr and "Traceback" not in run.stderr


def test_keys_init_refuses_a_lake_with_plain_files(tmp_path, keys):
    Lake(tmp_path / "lake").write("windows", _frame(), epoch=1)
    run = cli("keys", "init", "--lake", tmp_path / "lake")
    assert run.returncode == 2 and "already holds plain Parquet files" in run.stderr


def test_backtests_and_reports_read_an_encrypted_lake_transparently(tmp_path, keys):
    from workbench.alerts.backtest import backtest
    from workbench.alerts.rules import Threshold
    from workbench.pipeline.replay import replay
    from workbench.reports.frozen import lake_feed

    events = _events(tmp_path, n=2000)
    LocalKeyFile.create(keys, ["footer", "columns"])
    assert cli("keys", "init", "--lake", tmp_path / "enc").returncode == 0
    for out in ("plain", "enc"):
        replay(events, tmp_path / out, spec=None, lateness="5s")
    assert Lake(tmp_path / "enc").encrypted and not Lake(tmp_path / "plain").encrypted
    rules = [Threshold("busy", metric="count", value=1, for_="10s")]
    plain, enc = backtest(rules, tmp_path / "plain"), backtest(rules, tmp_path / "enc")
    assert enc.events.height and enc.events.equals(plain.events)
    feeds = [lake_feed(tmp_path / out) for out in ("plain", "enc")]  # what views and reports draw
    assert feeds[1].entities() == feeds[0].entities() and feeds[1].since(0)[1].equals(feeds[0].since(0)[1])


def test_keys_init_with_column_keys_adds_the_master_keys_it_needs(tmp_path, keys):
    assert cli("keys", "init", "--lake", tmp_path / "a").returncode == 0
    run = cli("keys", "init", "--lake", tmp_path / "b", "--column-key", "pii=host", "--column-key", "columns=*")
    assert run.returncode == 0, run.stderr
    assert "new master keys ['pii']" in run.stdout
    assert LocalKeyFile(keys).master_key_ids() == ["columns", "footer", "pii"]
    lake = Lake(tmp_path / "b")
    lake.write("windows", _frame(), epoch=1)
    assert lake.encryption is None and lake.encrypted
    meta = json.loads(key_material_path(lake.files()[0]).read_text())
    assert "pii" in json.dumps(meta) and lake.read("windows").height == 6
    run = cli("keys", "init", "--lake", tmp_path / "b")
    assert run.returncode == 2 and "already encrypted" in run.stderr


def test_a_rotation_by_another_process_reaches_running_writers_and_readers(tmp_path, keys):
    from workbench.storage.lakecrypt import ParquetCrypto

    LocalKeyFile.create(keys, ["footer", "columns"])
    writer = Lake(tmp_path / "lake", encryption=LakeEncryption(), kms=LocalKeyFile(keys))
    reader = Lake(tmp_path / "lake", kms=LocalKeyFile(keys))
    writer.write("windows", _frame(), epoch=1)
    assert reader.read("windows").height == 6
    rotated = ParquetCrypto(LocalKeyFile(keys)).rotate(writer.files)  # as `workbench keys rotate` elsewhere
    assert rotated == 3 and LocalKeyFile(keys).versions() == {"columns": [2], "footer": [2]}
    writer.write("windows", _frame(), epoch=2)  # the running writer wraps with version 2 now
    assert all("/2:" in key_material_path(f).read_text() for f in writer.files("windows"))
    assert reader.read("windows").height == 12  # and the running reader reads both
    assert Lake(tmp_path / "lake").read("windows").height == 12  # as does a new process

"""Backup and restore: consistent at a checkpoint boundary, encrypted, verified; a restored run resumes exactly."""

from __future__ import annotations

import io
import json
import tarfile

import polars as pl
import pytest

from workbench.errors import ConfigError, EncryptionError
from workbench.pipeline.replay import replay
from workbench.storage.backup import backup, restore
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.keys import SecretKey
from workbench.storage.kms import LocalKeyFile
from workbench.storage.lake import Lake
from workbench.storage.sealed import SealedWriter

from conftest import cli, line, metric

KEY = SecretKey(bytes(range(32)), "test")


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(metric(i, host=f"h{i % 5}")) for i in range(3000)))
    return path


def _windows(folder) -> pl.DataFrame:
    return Lake(folder, partition=False).read("windows").sort("window_start", "host")


def _partial(events, out):
    """A replay stopped after 7 batches (checkpoints every 2 batches and at the stop: epoch 4)."""
    summary = replay(events, out, max_rows=200, checkpoint_batches=2, max_batches=7)
    assert not summary["complete"]
    return summary


def test_a_restored_run_resumes_with_output_identical_to_an_uninterrupted_run(tmp_path, events):
    replay(events, tmp_path / "whole", max_rows=200, checkpoint_batches=2)
    _partial(events, tmp_path / "run")
    # a lake file of an epoch after the newest checkpoint: not part of the consistent copy
    Lake(tmp_path / "run", partition=False).write("windows", _windows(tmp_path / "run").head(3), epoch=99)
    (tmp_path / "run" / "alerts.duckdb").write_bytes(b"an alert store")
    manifest = backup(tmp_path / "run", tmp_path / "run.wbbackup", key=KEY)
    names = {f["path"] for f in manifest["files"]}
    assert manifest["checkpoint_epoch"] == 4 and "checkpoint/checkpoint-00000004.wbck" in names
    assert "windows/part-00000099.parquet" not in names and "alerts.duckdb" in names
    assert not any("checkpoint-00000003" in n for n in names)  # only the boundary's checkpoint
    raw = (tmp_path / "run.wbbackup").read_bytes()
    assert b"an alert store" not in raw and b"PAR1" not in raw  # encrypted

    restored = restore(tmp_path / "run.wbbackup", tmp_path / "restored", key=KEY)
    assert restored == manifest
    assert (tmp_path / "restored" / "alerts.duckdb").read_bytes() == b"an alert store"
    state = CheckpointStore(tmp_path / "restored" / "checkpoint").load()
    assert state["epoch"] == 4 and state["pipeline"] == f"replay:{(tmp_path / 'restored').resolve()}"
    batches = []
    summary = replay(events, tmp_path / "restored", max_rows=200, checkpoint_batches=2, progress=batches.append)
    assert summary["complete"] and len(batches) == 15 - 7  # resumed after the 7 batches backed up
    assert _windows(tmp_path / "restored").equals(_windows(tmp_path / "whole"))


def test_an_altered_truncated_or_foreign_key_backup_is_refused_and_nothing_is_restored(tmp_path, events):
    _partial(events, tmp_path / "run")
    archive = tmp_path / "b.wbbackup"
    backup(tmp_path / "run", archive, key=KEY)
    data = archive.read_bytes()
    cases = {
        "flipped": (data[:2000] + bytes([data[2000] ^ 1]) + data[2001:], "fails authentication"),
        "truncated": (data[:-100], "truncated"),
        "cut at a chunk": (data[: len(data) // 2], "truncated"),
    }
    for name, (blob, message) in cases.items():
        bad = tmp_path / f"{name}.wbbackup"
        bad.write_bytes(blob)
        with pytest.raises(EncryptionError, match=message):
            restore(bad, tmp_path / name, key=KEY)
        assert not (tmp_path / name).exists()
    with pytest.raises(EncryptionError, match="sealed with another key"):
        restore(archive, tmp_path / "other", key=SecretKey(bytes(32), "other"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="is not empty"):
        restore(archive, tmp_path / "full", key=KEY)


def test_a_member_outside_the_target_or_a_checksum_mismatch_is_refused(tmp_path):
    def archive(members, manifest):
        out = tmp_path / "crafted.wbbackup"
        with open(out, "wb") as raw, SealedWriter(raw, KEY) as sealed, tarfile.open(fileobj=sealed, mode="w|") as tar:
            for name, data in [*members, ("MANIFEST.json", manifest)]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return out

    evil = archive([("../escaped.txt", b"x")], b'{"root": "/x", "files": []}')
    with pytest.raises(EncryptionError, match="outside the target folder"):
        restore(evil, tmp_path / "r1", key=KEY)
    assert not (tmp_path / "escaped.txt").exists()
    manifest = b'{"root": "/x", "checkpoint_epoch": null, "files": [{"path": "a", "size": 1, "sha256": "00"}]}'
    with pytest.raises(EncryptionError, match=r"files differ from the manifest: \['a'\]"):
        restore(archive([("a", b"x")], manifest), tmp_path / "r2", key=KEY)
    assert not (tmp_path / "r2").exists()


def test_cli_backup_and_restore_of_an_encrypted_lake(tmp_path, events, monkeypatch):
    keys = tmp_path / "secrets" / "lake.json"
    monkeypatch.setenv("WORKBENCH_LAKE_KEYS_FILE", str(keys))
    monkeypatch.setenv("WORKBENCH_BACKUP_KEY", "7a" * 32)
    LocalKeyFile.create(keys, ["footer", "columns"])
    assert cli("keys", "init", "--lake", tmp_path / "run").returncode == 0
    assert cli("replay", events, "--out", tmp_path / "run").returncode == 0
    run = cli("backup", "--from", tmp_path / "run", "--out", tmp_path / "run.wbbackup")
    assert run.returncode == 0, run.stderr
    assert "at checkpoint epoch" in run.stdout and "7a7a" not in run.stdout
    run = cli("restore", tmp_path / "run.wbbackup", "--into", tmp_path / "back")
    assert run.returncode == 0, run.stderr
    assert "every checksum verified" in run.stdout
    sql = "select host, count(*) as n from windows group by host order by host"
    assert Lake(tmp_path / "back").query(sql).equals(Lake(tmp_path / "run").query(sql))
    monkeypatch.setenv("WORKBENCH_BACKUP_KEY", "7b" * 32)
    run = cli("restore", tmp_path / "run.wbbackup", "--into", tmp_path / "again")
    assert run.returncode == 2 and "sealed with another key" in run.stderr
    # each command left an audit row: the backup in its folder, the restore in its own, a failed one beside the archive
    rows = {p.parent.name: [json.loads(x) for x in p.read_text().splitlines()] for p in tmp_path.glob("*/audit.jsonl")}
    beside = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["action"], r["outcome"], r["via"]) for r in rows["run"]] == [("backup", "ok", "cli")]
    assert [(r["action"], r["outcome"]) for r in rows["back"]] == [("restore", "ok")]
    assert [(r["action"], r["outcome"]) for r in beside] == [("restore", "failed")]
    assert not (tmp_path / "again").exists()

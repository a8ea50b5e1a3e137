"""Checkpoints you can trust: authenticated before anything is deserialised, refused clearly, with a fallback."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import struct
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench import CheckpointStore, Pipeline, Tumbling
from workbench.alerts.dispatch import _Group
from workbench.errors import CheckpointError, ConfigError
from workbench.storage.keys import SecretKey, load_key
from workbench.storage.lake import Lake
from workbench.storage.statecodec import decode, encode
from workbench.testing import FrameSource

from conftest import cli, line, metric

KEY = SecretKey(bytes(range(32)), "test")
OTHER = SecretKey(bytes(range(1, 33)), "other")


class _Boom:
    """Unpickling this creates a file: the exploit a checkpoint must never run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def _store(folder: Path, **kw) -> CheckpointStore:
    return CheckpointStore(folder, key=kw.pop("key", KEY), **kw)


def _saved(tmp_path: Path, epochs=(1,), **kw) -> CheckpointStore:
    store = _store(tmp_path / "ck", **kw)
    for e in epochs:
        store.save({"epoch": e, "nodes": {"n": {"frame": pl.DataFrame({"k": ["a", "b"], "t": [e, e]})}}})
    return store


def test_a_crafted_pickle_is_refused_before_unpickling_and_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    payload = pickle.dumps({"epoch": 9, "nodes": _Boom(target)})
    folder = tmp_path / "ck"
    folder.mkdir()
    # 1. the old format, with a valid checksum: refused by its header, never unpickled
    (folder / "checkpoint.bin").write_bytes(
        b"WBCKPT1 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    )
    store = _store(folder)
    assert store.exists()
    with pytest.raises(CheckpointError, match=r"old-format \(WBCKPT1\).*never loaded.*Delete the folder"):
        store.load()
    assert not target.exists()
    # 2. the new format, its body swapped for a pickle by someone without the key
    good = _saved(tmp_path)
    data = good.path.read_bytes()
    head_len = struct.unpack(">I", data[8:12])[0]
    header = json.loads(data[12 : 12 + head_len])
    doc = {"state": {"$": "pickle", "i": 0}, "sections": [["pickle", len(payload)]]}
    index = json.dumps(doc).encode()
    body = struct.pack(">Q", len(index)) + index + payload
    head = json.dumps({**header, "length": len(body), "pickles": 1}, sort_keys=True).encode()
    forged = data[:8] + struct.pack(">I", len(head)) + head + body + bytes(32)
    good.path.write_bytes(forged)
    with pytest.raises(CheckpointError, match="authentication failed"):
        good.load()
    assert not target.exists()
    # 3. and the decoder never unpickles bytes it was not told are authenticated
    with pytest.raises(CheckpointError, match="not authenticated"):
        decode(doc["state"], [("pickle", payload)], trusted=False)
    assert not target.exists()
    # the payload is live: unpickled, it does create the file (so the checks above are not vacuous)
    pickle.loads(payload)  # noqa: S301 - the point of the test
    assert target.read_text() == "pwned"


def test_tampered_truncated_foreign_key_and_wrong_version_are_refused_by_name(tmp_path):
    store = _saved(tmp_path)
    path = store.path
    original = path.read_bytes()

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"authentication failed \(HMAC-SHA256 mismatch\)"):
        store.load()

    path.write_bytes(original[:-100])
    with pytest.raises(CheckpointError, match=r"truncated: \d+ bytes of \d+"):
        store.load()
    path.write_bytes(original[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        store.load()

    path.write_bytes(original)
    with pytest.raises(CheckpointError, match=r"written with another key \(key id '[0-9a-f]{16}'\)"):
        _store(path.parent, key=OTHER).load()

    head_len = struct.unpack(">I", original[8:12])[0]
    header = json.loads(original[12 : 12 + head_len])
    head = json.dumps({**header, "format": 4}, sort_keys=True).encode()
    path.write_bytes(original[:8] + struct.pack(">I", len(head)) + head + original[12 + head_len :])
    with pytest.raises(CheckpointError, match="format 4, this Workbench reads formats 2 and 3"):
        store.load()

    path.write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(CheckpointError, match="not a Workbench checkpoint"):
        store.load()


def test_the_last_two_are_kept_and_a_refused_one_falls_back_to_the_previous(tmp_path, caplog):
    store = _saved(tmp_path, epochs=range(1, 6))
    assert [p.name for p in store.files()] == ["checkpoint-00000005.wbck", "checkpoint-00000004.wbck"]
    newest = store.files()[0]
    newest.write_bytes(newest.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match=r"previous checkpoint checkpoint-00000004\.wbck is kept"):
        store.load()
    fallback = _store(store.folder, fallback=True)
    assert fallback.load()["epoch"] == 4
    assert fallback.path.name == "checkpoint-00000004.wbck"
    assert "falling back to the previous checkpoint" in caplog.text
    # the next checkpoint replaces the refused one, and a stray future epoch is removed
    (store.folder / "checkpoint-00000099.wbck").write_bytes(b"junk")
    fallback.save({"epoch": 5, "nodes": {}})
    assert [p.name for p in store.files()] == ["checkpoint-00000005.wbck", "checkpoint-00000004.wbck"]
    assert store.load()["epoch"] == 5


def _run(folder: Path, batches, *, name="trust", max_batches=None, **store_kw):
    store = _store(folder, **store_kw)
    pipe = Pipeline(FrameSource(batches), name=name, checkpoints=store, checkpoint_batches=1)
    out = pipe.collect(pipe.standard("server_metrics", Tumbling("10s")))
    pipe.run(max_batches=max_batches)
    return pipe, out


def test_a_pipeline_resumes_from_the_previous_checkpoint_with_identical_output(tmp_path):
    recs = [metric(i, host=f"h{i % 3}") for i in range(120)]
    batches = [b"".join(line(r) for r in recs[i : i + 10]) for i in range(0, 120, 10)]
    _, whole = _run(tmp_path / "whole", batches)
    _, first = _run(tmp_path / "ck", batches, max_batches=6)
    newest = _store(tmp_path / "ck").files()[0]
    newest.write_bytes(newest.read_bytes()[:-40])  # a torn write of the last checkpoint
    with pytest.raises(CheckpointError, match="truncated"):
        _run(tmp_path / "ck", batches)
    pipe, rest = _run(tmp_path / "ck", batches, fallback=True)
    assert pipe.epoch > 6
    # the fallback replays one batch more: the windows it emits again are those of the refused epoch
    got = pl.concat(first + rest).unique(maintain_order=True)
    assert got.sort("window_start", "host").equals(pl.concat(whole).sort("window_start", "host"))


def test_encrypted_checkpoints_hide_the_state_and_round_trip(tmp_path):
    store = _store(tmp_path / "ck", encrypt=True)
    store.save({"epoch": 1, "nodes": {"secret": {"host": "db-primary-7", "frame": pl.DataFrame({"k": ["tok"]})}}})
    raw = store.path.read_bytes()
    assert b"db-primary-7" not in raw and b"aes-256-gcm" in raw
    state = _store(tmp_path / "ck").load()  # the header says how it was written
    assert state["nodes"]["secret"]["host"] == "db-primary-7"
    with pytest.raises(CheckpointError, match="another key"):
        _store(tmp_path / "ck", key=OTHER).load()


def test_the_state_tree_round_trips_with_frames_as_arrow_and_records_not_pickled():
    t = datetime(2024, 1, 1, tzinfo=UTC)
    group = _Group(route=0, key="k", labels={"a": "b"}, next_flush=5, sent_firing=frozenset({"f"}))
    tree = {
        "frame": pl.DataFrame({"k": ["a"], "t": [t]}),
        "series": pl.Series("s", [1.5, None]),
        "odict": OrderedDict([(("h", 1), 2)]),
        "floats": [float("nan"), float("inf"), 0.1],
        "misc": (b"\x00raw", t, t.date(), timedelta(seconds=3), {1, 2}, np.int64(4), np.arange(3)),
        "$": "a user key that looks like a tag",
        "group": group,
    }
    doc, sections = encode(tree)
    assert [kind for kind, _ in sections] == ["arrow", "arrow", "npy"]  # no pickle
    back = decode(json.loads(json.dumps(doc)), sections, trusted=False)
    assert back["frame"].equals(tree["frame"]) and back["series"].equals(tree["series"], null_equal=True)
    assert back["odict"] == tree["odict"] and isinstance(back["odict"], OrderedDict)
    assert np.isnan(back["floats"][0]) and back["floats"][1:] == [float("inf"), 0.1]
    assert back["misc"][:6] == tree["misc"][:6] and (back["misc"][6] == np.arange(3)).all()
    assert back["$"] == tree["$"] and back["group"] == group


def test_record_types_are_limited_to_workbench_dataclasses():
    doc = {"$": "record", "type": "subprocess:Popen", "v": {}}
    with pytest.raises(CheckpointError, match="not a workbench dataclass"):
        decode(doc, [], trusted=True)


def test_key_sources_env_file_and_the_per_user_default(tmp_path, monkeypatch):
    for var in ("WORKBENCH_CHECKPOINT_KEY", "WORKBENCH_CHECKPOINT_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(ConfigError, match="none configured; set WORKBENCH_CHECKPOINT_KEY"):
        load_key("checkpoint")
    key = load_key("checkpoint", create=True)  # zero set-up: created once, owner-only
    path = tmp_path / "cfg" / "workbench" / "checkpoint.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and load_key("checkpoint").key_id == key.key_id
    assert key.source == str(path) and path.read_text().strip() not in repr(key)
    # a store without a key uses it
    store = CheckpointStore(tmp_path / "ck")
    store.save({"epoch": 1})
    assert store.key.key_id == key.key_id

    keyfile = tmp_path / "k"
    keyfile.write_text("11" * 32)
    os.chmod(keyfile, 0o644)
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_KEY_FILE", str(keyfile))
    with pytest.raises(ConfigError, match=r"readable by its owner only \(mode 0600\), not -rw-r--r--"):
        load_key("checkpoint")
    os.chmod(keyfile, 0o600)
    assert load_key("checkpoint").material == bytes([0x11] * 32)
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_KEY", "22" * 32)
    with pytest.raises(ConfigError, match="both set"):
        load_key("checkpoint")


def test_workbench_replay_refuses_a_crafted_checkpoint_and_runs_nothing(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"".join(line(metric(i)) for i in range(50)))
    out = tmp_path / "out"
    (out / "checkpoint").mkdir(parents=True)
    target = tmp_path / "pwned.txt"
    payload = pickle.dumps({"epoch": 1, "nodes": _Boom(target)})
    (out / "checkpoint" / "checkpoint.bin").write_bytes(
        b"WBCKPT1 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    )
    run = cli("replay", events, "--out", out)
    assert run.returncode != 0 and "old-format (WBCKPT1)" in run.stderr and "Traceback" not in run.stderr
    assert not target.exists()
    # a forged new-format file (no key): refused as unauthenticated
    (out / "checkpoint" / "checkpoint.bin").unlink()
    forged = b"WBCKPT2\n" + struct.pack(">I", 2) + b"{}" + payload + bytes(32)
    (out / "checkpoint" / "checkpoint-00000001.wbck").write_bytes(forged)
    run = cli("replay", events, "--out", out)
    assert run.returncode != 0 and "checkpoint" in run.stderr and not target.exists()


def test_an_unwritable_config_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_CHECKPOINT_KEY")
    (tmp_path / "cfg").write_text("a file where the folder should be")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(ConfigError, match=r"cannot create the default key file .*; set WORKBENCH_CHECKPOINT_KEY"):
        CheckpointStore(tmp_path / "ck").save({"epoch": 1})


def test_a_renamed_checkpoint_is_refused(tmp_path):
    store = _saved(tmp_path, epochs=(1, 2))
    store.files()[1].rename(store.folder / "checkpoint-00000007.wbck")  # an old one passed off as the newest
    with pytest.raises(CheckpointError, match="holds epoch 1, not the one its name says"):
        store.load()


def test_workbench_replay_falls_back_to_the_previous_checkpoint_when_told(tmp_path, monkeypatch):
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"".join(line(metric(i, host=f"h{i % 3}")) for i in range(3000)))
    assert cli("replay", events, "--out", tmp_path / "whole", "--max-rows", "200").returncode == 0
    out = tmp_path / "out"
    run = cli("replay", events, "--out", out, "--max-rows", "200", "--checkpoint-every", "0ms", "--max-batches", "6")
    assert run.returncode == 0, run.stderr
    newest = CheckpointStore(out / "checkpoint").files()[0]
    newest.write_bytes(newest.read_bytes()[:-1] + b"!")
    run = cli("replay", events, "--out", out, "--max-rows", "200")
    assert run.returncode == 2 and "authentication failed" in run.stderr
    assert "WORKBENCH_CHECKPOINT_FALLBACK=1" in run.stderr
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_FALLBACK", "1")
    run = cli("replay", events, "--out", out, "--max-rows", "200")
    assert run.returncode == 0, run.stderr
    assert "falling back to the previous checkpoint" in run.stderr

    def windows(folder):
        return Lake(folder, partition=False).read("windows").sort("window_start", "host")

    assert windows(out).equals(windows(tmp_path / "whole"))

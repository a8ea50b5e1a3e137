"""Incremental checkpoints: big state is written once and named again, never silently trusted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from workbench.errors import CheckpointError
from workbench.operators.dedupe import Deduplicator
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.keys import SecretKey

KEY = SecretKey(bytes(range(32)), "test")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def batch(first: int, n: int, *, at: int = 0) -> pl.DataFrame:
    """``n`` events with ids ``first…``, one per millisecond from ``at`` ms."""
    return pl.DataFrame(
        {
            "event_id": [f"evt-{i:09d}" for i in range(first, first + n)],
            "ts": [T0 + timedelta(milliseconds=at + k) for k in range(n)],
        }
    )


def remembered(dedupe: Deduplicator) -> list[tuple[str, int]]:
    runs = dedupe.snapshot()["runs"]
    live = pl.concat(runs).filter(pl.col("t") >= dedupe._horizon()) if runs else pl.DataFrame()
    return sorted(live.rows())


@pytest.fixture
def big(tmp_path):
    """A dedupe table of 400,000 keys (an hour's TTL) and a store that writes it."""
    dedupe = Deduplicator("event_id", "ts", ttl="1h")
    for k in range(8):
        dedupe.process(batch(k * 50_000, 50_000, at=k * 50_000))
    return dedupe, CheckpointStore(tmp_path / "ck", key=KEY, full_every=4)


def test_a_small_change_writes_a_small_checkpoint_and_restores_exactly(big):
    dedupe, store = big
    store.save({"epoch": 1, "dedupe": dedupe.snapshot()})
    full = store.written
    assert full > 4_000_000  # 400k keys
    dedupe.process(batch(400_000, 1_000, at=400_000))  # a second's worth of new keys
    store.save({"epoch": 2, "dedupe": dedupe.snapshot()})
    assert store.written < full / 20, (store.written, full)  # only the new run and the index
    print(f"full checkpoint {full / 1e6:.1f} MB, the next one {store.written / 1e3:.0f} kB")

    restored = Deduplicator("event_id", "ts", ttl="1h")
    restored.restore(CheckpointStore(store.folder, key=KEY).load()["dedupe"])
    assert remembered(restored) == remembered(dedupe)
    again = pl.concat([batch(123_456, 10, at=401_000), batch(401_000, 10, at=401_000)])
    kept_a, dups_a = restored.process(again)
    kept_b, dups_b = dedupe.process(again)
    assert kept_a.equals(kept_b) and dups_a.equals(dups_b) and dups_a.height == 10


def test_every_kth_checkpoint_is_full_and_unnamed_sections_are_removed(big):
    dedupe, store = big
    written = []
    for epoch in range(1, 10):
        dedupe.process(batch(400_000 + epoch * 100, 100, at=400_000 + epoch * 100))
        store.save({"epoch": epoch, "dedupe": dedupe.snapshot()})
        written.append(store.written)
        named = set()
        for f in store.files():
            named |= set(CheckpointStore._header(f, f.read_bytes()).get("shared", []))
        on_disk = {p.stem for p in store.sections_folder.glob("*.wbsec")}
        assert on_disk == named  # nothing kept that no kept checkpoint names
        assert len(store.files()) <= 2
    big_ones = [i + 1 for i, w in enumerate(written) if w > 3_000_000]
    assert big_ones == [1, 5, 9], written  # full_every=4: the 1st, 5th and 9th saves
    restored = Deduplicator("event_id", "ts", ttl="1h")
    restored.restore(CheckpointStore(store.folder, key=KEY).load()["dedupe"])
    assert remembered(restored) == remembered(dedupe)


def test_a_modified_or_missing_section_is_refused_with_its_name(big):
    dedupe, store = big
    store.save({"epoch": 1, "dedupe": dedupe.snapshot()})
    dedupe.process(batch(400_000, 10, at=400_000))
    store.save({"epoch": 2, "dedupe": dedupe.snapshot()})
    section = max(store.sections_folder.glob("*.wbsec"), key=lambda p: p.stat().st_size)
    data = bytearray(section.read_bytes())
    data[len(data) // 2] ^= 0x01
    section.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"section {section.name}: authentication failed"):
        CheckpointStore(store.folder, key=KEY).load()
    section.unlink()
    with pytest.raises(CheckpointError, match=rf"section {section.name} is missing"):
        CheckpointStore(store.folder, key=KEY).load()
    # the previous checkpoint names the same section: no fallback hides it
    with pytest.raises(CheckpointError, match=rf"section {section.name} is missing"):
        CheckpointStore(store.folder, key=KEY, fallback=True).load()


def test_encrypted_sections_hide_the_keys_and_need_the_key(big, tmp_path):
    dedupe, _ = big
    store = CheckpointStore(tmp_path / "enc", key=KEY, encrypt=True, full_every=8)
    store.save({"epoch": 1, "dedupe": dedupe.snapshot()})
    dedupe.process(batch(400_000, 10, at=400_000))
    store.save({"epoch": 2, "dedupe": dedupe.snapshot()})
    sections = list(store.sections_folder.glob("*.wbsec"))
    assert sections and all(b"evt-0000" not in p.read_bytes() for p in sections)
    restored = Deduplicator("event_id", "ts", ttl="1h")
    restored.restore(CheckpointStore(store.folder, key=KEY, encrypt=True).load()["dedupe"])
    assert remembered(restored) == remembered(dedupe)
    other = SecretKey(np.ones(32, dtype=np.uint8).tobytes(), "other")
    with pytest.raises(CheckpointError, match="another key"):
        CheckpointStore(store.folder, key=other).load()


def test_a_backup_carries_the_sections_its_checkpoint_names(big, tmp_path, monkeypatch):
    from workbench.storage.backup import backup, restore

    dedupe, _ = big
    run = tmp_path / "run"
    store = CheckpointStore(run / "checkpoint", key=KEY)
    store.save({"epoch": 1, "dedupe": dedupe.snapshot()})
    dedupe.process(batch(400_000, 10, at=400_000))
    store.save({"epoch": 2, "dedupe": dedupe.snapshot()})
    monkeypatch.setenv("WORKBENCH_BACKUP_KEY", "7a" * 32)
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_KEY", bytes(range(32)).hex())
    manifest = backup(run, tmp_path / "run.wbbak")
    named = set(CheckpointStore._header(store.files()[0], store.files()[0].read_bytes())["shared"])
    assert named and {f"checkpoint/sections/{a}.wbsec" for a in named} <= {f["path"] for f in manifest["files"]}
    restore(tmp_path / "run.wbbak", tmp_path / "back")
    restored = Deduplicator("event_id", "ts", ttl="1h")
    restored.restore(CheckpointStore(tmp_path / "back" / "checkpoint", key=KEY).load()["dedupe"])
    assert remembered(restored) == remembered(dedupe)


def test_bench_checkpoint_reports_the_incremental_saves_against_the_full_one():
    from conftest import cli

    run = cli("bench", "checkpoint", "--keys", "150000", "--batch", "2000", "--saves", "3", "--full-every", "8")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["restored_keys"] == 150_000 + 3 * 2_000
    assert report["bytes_vs_full"] < 0.1, report
    bad = cli("bench", "checkpoint", "--saves", "0")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "workbench: error: bench checkpoint: --saves must be >= 1, not 0"
    ]

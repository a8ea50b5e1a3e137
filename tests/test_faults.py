"""Faults a production pipeline meets, injected as an operator meets them (issue 21).

Each test runs ``workbench`` in subprocesses (a second run started by mistake, a
``kill -9``, an input swapped under a checkpoint …) and checks that nothing is lost,
nothing doubled and nothing silently wrong: a fault is either handled or refused
with one clear line (exit 2).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.pipeline.replay import replay

from conftest import line, metric


def workbench(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``workbench ARGS…`` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    """The run was refused (exit 2) with one ``workbench: error:`` line and no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), done.stderr
    return lines[0]


def _events(path: Path, n: int, *, hosts: int = 5) -> Path:
    path.write_bytes(b"".join(line(metric(i, host=f"h{i % hosts}", seconds=i / 10)) for i in range(n)))
    return path


def _windows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted((out / "windows").glob("*.parquet"))).sort("window_start", "host")


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return _events(tmp_path / "events.jsonl", 6000)


# -- 1. ownership of an output folder --------------------------------------------------------
def test_second_run_on_one_output_is_refused_and_a_killed_owner_is_taken_over(tmp_path):
    events = _events(tmp_path / "big.jsonl", 40_000)
    full = tmp_path / "full"
    replay(events, full)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "workbench.cli", "replay", events, "--out", out, "--max-rows", "100"]
    first = subprocess.Popen([*map(str, cmd), "--checkpoint-every", "0s"], stdout=subprocess.DEVNULL)
    lock = out / ".workbench.lock"
    deadline = time.time() + 60
    while time.time() < deadline and str(first.pid) not in (lock.read_text() if lock.exists() else ""):
        time.sleep(0.01)
    try:
        second = workbench(*cmd[3:])
        assert first.poll() is None, "the first run ended before the second started: make the input bigger"
        message = one_clear_line(second)
        assert f"pid {first.pid}" in message and "in use by another run" in message
        first.send_signal(signal.SIGKILL)  # the owner dies holding the lock: its record stays behind
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert str(first.pid) in lock.read_text()
    again = workbench(*cmd[3:])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["complete"]
    assert _windows(out).equals(_windows(full))  # nothing lost, nothing doubled
    assert lock.read_text() == ""  # released


# -- 2. resume checks identity -----------------------------------------------------------------
def test_resume_refuses_another_input_and_a_lake_without_its_checkpoint(events, tmp_path):
    out = tmp_path / "out"
    part = workbench("replay", events, "--out", out, "--max-rows", "500", "--max-batches", "3")
    assert part.returncode == 0, part.stderr
    assert not json.loads(part.stdout)["complete"]

    other = _events(tmp_path / "other.jsonl", 6000, hosts=3)  # same size class, another content
    message = one_clear_line(workbench("replay", other, "--out", out))
    assert "another input" in message and "source.fingerprint" in message

    shorter = tmp_path / "shorter.jsonl"  # the same file, cut: must never report complete
    shorter.write_bytes(events.read_bytes()[: events.stat().st_size // 2])
    message = one_clear_line(workbench("replay", shorter, "--out", out))
    assert "source.size" in message

    for option in (["--by", "region"], ["--schema", "user_events"]):
        one_clear_line(workbench("replay", events, "--out", out, *option))

    shutil.rmtree(out / "checkpoint")  # the lake stays: running again would double every row
    message = one_clear_line(workbench("replay", events, "--out", out))
    assert "double" in message and "--fresh" in message

    done = workbench("replay", events, "--out", out, "--fresh")
    assert done.returncode == 0, done.stderr
    full = tmp_path / "full"
    replay(events, full)
    assert _windows(out).equals(_windows(full))


class _Killed(BaseException):
    """The process ends here (nothing below catches it, as nothing survives a SIGKILL)."""


def test_a_run_killed_between_its_first_output_and_its_first_checkpoint_resumes(events, tmp_path, monkeypatch):
    """Output is committed before the checkpoint covering it: the first epoch's must be rolled back, not refused."""
    from workbench.storage.checkpoints import CheckpointStore

    save = CheckpointStore.save

    def dies_before_the_first_real_checkpoint(self, state):
        if state["epoch"] == 1:
            raise _Killed
        save(self, state)

    out = tmp_path / "out"
    monkeypatch.setattr(CheckpointStore, "save", dies_before_the_first_real_checkpoint)
    with pytest.raises(_Killed):
        replay(events, out, max_rows=500, checkpoint_batches=2, checkpoint_every="1h")
    monkeypatch.setattr(CheckpointStore, "save", save)
    assert list((out / "windows").rglob("*.parquet")), "epoch 1's windows were committed"
    assert [p.name for p in CheckpointStore(out / "checkpoint").files()] == ["checkpoint-00000000.wbck"]

    resumed = replay(events, out, max_rows=500, checkpoint_batches=2, checkpoint_every="1h")
    assert resumed["complete"]
    full = tmp_path / "full"
    replay(events, full, max_rows=500)
    assert _windows(out).equals(_windows(full))


def test_a_moved_output_folder_resumes(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    _events(work / "events.jsonl", 6000)
    part = workbench("replay", "events.jsonl", "--out", "out", "--max-rows", "500", "--max-batches", "3", cwd=work)
    assert part.returncode == 0, part.stderr
    moved = tmp_path / "moved"
    work.rename(moved)  # the folder with the input and the output moves as a whole
    done = workbench("replay", "events.jsonl", "--out", "out", cwd=moved)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["complete"]
    full = tmp_path / "full"
    replay(moved / "events.jsonl", full)
    assert _windows(moved / "out").equals(_windows(full))


def test_a_deleted_lake_epoch_is_refused(events, tmp_path):
    out = tmp_path / "out"
    part = workbench("replay", events, "--out", out, "--max-rows", "500", "--max-batches", "4")
    assert part.returncode == 0, part.stderr
    for f in (out / "windows").glob("*.parquet"):
        f.unlink()  # committed output lost (a cleanup script, a restore from an old backup)
    message = one_clear_line(workbench("replay", events, "--out", out))
    assert "lost committed output" in message


# -- 3. a bounded future -----------------------------------------------------------------------
def test_one_event_from_the_future_is_a_dead_letter_and_never_poisons_the_watermark(tmp_path):
    rows = [line(metric(i, host=f"h{i % 5}", seconds=i / 10)) for i in range(20_000)]
    poison = metric(99_999, host="h1", seconds=0)
    poison["ts"] = int(datetime(2099, 6, 1, tzinfo=UTC).timestamp() * 1000)  # valid, but 75 years ahead
    leap = metric(99_998, host="h2", seconds=0)
    leap["ts"] = "2024-01-01T00:08:59Z"  # replaced below by a leap second at that place in the file
    leap_line = line(leap).replace(b"00:08:59Z", b"00:08:60Z")  # 23:59:60-style second: the next minute
    rows[5000:5000] = [line(poison)]
    rows[5400:5400] = [leap_line]
    events = tmp_path / "future.jsonl"
    events.write_bytes(b"".join(rows))
    out = tmp_path / "out"
    # a partial run first: the clock and watermark are checkpointed, then resumed in a new process
    part = workbench("replay", events, "--out", out, "--max-rows", "1000", "--max-batches", "7")
    assert part.returncode == 0, part.stderr
    done = workbench("replay", events, "--out", out, "--max-rows", "1000")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["late"] == 0 and summary["valid"] == 20_001 and summary["dead_lettered"] == 1
    assert [r["reason_code"] for r in summary["dead_letter_reasons"]] == ["future_timestamp"]
    dead = pl.read_parquet(sorted((out / "dead_letter").glob("*.parquet")))
    assert dead["reason"].str.contains("ahead of the newest events").all()
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(r for r in rows if r != line(poison)))
    replay(clean, tmp_path / "clean", max_rows=1000)
    assert _windows(out).equals(_windows(tmp_path / "clean"))  # the windows are as if it never came


def test_a_gap_in_a_replayed_file_moves_the_clock_and_live_uses_the_wall_clock(tmp_path):
    rows = [line(metric(i, host=f"h{i % 5}", seconds=i)) for i in range(2000)]
    rows += [line(metric(i, host=f"h{i % 5}", seconds=86_400 + i)) for i in range(2000, 4000)]  # a day later
    events = tmp_path / "gap.jsonl"
    events.write_bytes(b"".join(rows))
    summary = replay(events, tmp_path / "out", max_rows=1000)
    assert summary["dead_lettered"] == 0 and summary["late"] == 0 and summary["valid"] == 4000

    from workbench.clock import ManualClock
    from workbench.operators.horizon import Horizon

    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    live = Horizon("5m", clock=clock)
    frame = pl.DataFrame(
        {"ts": [datetime(2024, 1, 1, 0, 4, tzinfo=UTC), datetime(2024, 1, 1, 0, 6, tzinfo=UTC)]}
    ).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
    ok, dead = live.process(frame)
    assert ok.height == 1 and dead["reason_code"].to_list() == ["future_timestamp"]
    assert "ahead of the wall clock" in dead["reason"][0]
    clock.advance(120)
    ok, dead = live.process(frame)
    assert ok.height == 2 and dead.height == 0


# -- 5. notifications retry while the alert is active --------------------------------------------
def test_a_notification_is_retried_across_a_long_outage_and_a_restart_until_delivered(tmp_path):
    from alert_servers import hook_server

    from workbench.alerts.notifiers import WebhookNotifier
    from workbench.alerts.outbox import Outbox
    from workbench.clock import ManualClock

    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    firing = {"id": "hook/0:alertname=cpu/1", "receiver": "hook", "group_key": "0:alertname=cpu", "status": "firing"}
    log = tmp_path / "outbox.jsonl"

    def outbox(url: str) -> Outbox:  # the production settings; only the clock is injected
        return Outbox({"hook": WebhookNotifier(url, clock=clock)}, log=log, clock=clock, poll=0.005)

    def wait_tries(box: Outbox, n: int) -> None:
        deadline = time.monotonic() + 90  # real seconds: a loaded CI machine
        while box.stats()["retries"] < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert box.stats()["retries"] >= n

    with hook_server() as hook:
        hook.fail_next = 10**9  # the receiver is down (503) far longer than the old give-up (~107 s)
        box = outbox(hook.url)
        box.start()
        box.put(firing)
        for n in range(1, 9):  # 8 rounds of capped back-off: well over 20 minutes of outage
            wait_tries(box, n)
            clock.advance(300)
        assert box.stats()["pending"] == 1 and box.stats()["given_up"] == 0
        box.close()  # a restart: the back-off goes on where it was, nothing is dropped
        attempts = hook.attempts
        box = outbox(hook.url)
        assert box.stats()["pending"] == 1
        box.start()
        wait_tries(box, 1)
        assert hook.attempts > attempts
        hook.fail_next = 0  # the receiver is back
        clock.advance(300)
        assert box.drain(90), box.stats()
        assert [m["id"] for m in hook.received] == [firing["id"]]
        # a resolution that cannot be delivered is given up after resolved_ttl, and counted
        hook.fail_next = 10**9
        tried = box.stats()["retries"]
        box.put({**firing, "id": "hook/0:alertname=cpu/2", "status": "resolved"})
        wait_tries(box, tried + 1)  # the resolution itself failed once before its time runs out
        clock.advance(box.resolved_ttl + 1)
        assert box.drain(90), box.stats()
        box.close()
    assert box.stats()["given_up"] == 1 and box.stats()["delivered"] == 1


# -- 6. tabular input row by row ------------------------------------------------------------------
def _frame(n: int) -> pl.DataFrame:
    return pl.DataFrame([metric(i, host=f"h{i % 5}", seconds=i / 10) for i in range(n)])


def test_a_ragged_csv_line_is_a_dead_letter_with_its_line_number_across_a_resume(tmp_path):
    path = tmp_path / "e.csv"
    _frame(12_000).write_csv(path)
    lines = path.read_bytes().split(b"\n")
    lines[9000] = lines[9000] + b",extra,fields"  # file line 9001 (line 1 is the header)
    lines[10_000] = b'"quoted, with a comma",' + lines[10_000]  # quotes: the careful path; still ragged
    path.write_bytes(b"\n".join(lines))
    out = tmp_path / "out"
    part = workbench("replay", path, "--out", out, "--max-rows", "1000", "--max-batches", "4")
    assert part.returncode == 0, part.stderr
    done = workbench("replay", path, "--out", out, "--max-rows", "1000")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["complete"] and summary["ingested"] == 12_000 and summary["dead_lettered"] == 2
    dead = pl.read_parquet(sorted((out / "dead_letter").glob("*.parquet")))
    assert sorted(dead["reason"].to_list()) == [
        "ragged CSV line 10001: 10 fields, the header has 9",
        "ragged CSV line 9001: 11 fields, the header has 9",
    ]
    assert set(dead["reason_code"]) == {"ragged_line"}
    assert dead.filter(pl.col("reason").str.contains("9001"))["raw"][0].endswith(b",extra,fields")


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("empty.csv", b"", "empty"),
        ("binary.csv", bytes(range(256)) * 40, "not a CSV text file"),
        ("garbage.parquet", b"PAR1" + bytes(range(256)) * 40, "not a readable Parquet file"),
        ("truncated.parquet", None, "not a readable Parquet file"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_clear_error(tmp_path, name, content, says):
    path = tmp_path / name
    if content is None:
        _frame(1000).write_parquet(path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    message = one_clear_line(workbench("replay", path, "--out", tmp_path / "out"))
    assert says in message and name in message


def test_a_bad_parquet_row_group_and_a_lossy_type_are_dead_letters(tmp_path):
    import pyarrow.parquet as pq

    frame = _frame(3000).with_columns(pl.col("status").cast(pl.Float64))
    frame = frame.with_columns(
        pl.when(pl.col("event_id") == "e2500").then(200.9).otherwise(pl.col("status")).alias("status")
    )
    path = tmp_path / "e.parquet"
    pq.write_table(frame.to_arrow(), path, row_group_size=1000, compression="zstd")
    middle = pq.ParquetFile(path).metadata.row_group(1)
    data = bytearray(path.read_bytes())
    for c in range(middle.num_columns):  # corrupt every column chunk of row group 1
        col = middle.column(c)
        start = col.data_page_offset + 16
        data[start : start + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))
    done = workbench("replay", path, "--out", tmp_path / "out", "--max-rows", "400")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    dead = pl.read_parquet(sorted((tmp_path / "out" / "dead_letter").glob("*.parquet")))
    assert sorted(dead["reason_code"].to_list()) == ["bad_row_group", "wrong_type"], dead["reason"].to_list()
    assert dead.filter(pl.col("reason_code") == "bad_row_group")["reason"][0].startswith(
        "unreadable Parquet row group 1 (rows 1000-1999)"
    )
    assert "200.9" in dead.filter(pl.col("reason_code") == "wrong_type")["reason"][0]
    assert summary["valid"] == 1999 and summary["complete"]


# -- 8. secrets, leftovers of dead runs, a full disk ------------------------------------------------
_SECRET = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", min_size=6, max_size=24)


@settings(max_examples=200, deadline=None)
@given(secret=_SECRET, user=st.sampled_from(["u", "ops", "wb-reader"]))
def test_one_masking_function_hides_every_kind_of_secret(secret, user):
    from workbench.masking import mask
    from workbench.sources.urls import masked

    assert masked is mask  # the sources' masking is the one function
    shapes = [
        f"mqtt://{user}:{secret}@127.0.0.1:1883/plant/#",
        f"connection to redis://:{secret}@h:6379/s?group=g refused",
        f"POST https://hooks.example/x?channel=ops&token={secret} failed: 503",
        f"https://h/api?password={secret}&x=1",
        f"host=db user={user} password={secret} dbname=wb",
        f"headers {{'Authorization': 'Bearer {secret}', 'Content-Type': 'application/json'}}",
        f"Authorization: Bearer {secret}",
        f"X-Api-Key: {secret}",
    ]
    for text in shapes:
        shown = mask(text)
        assert secret not in shown and "***" in shown, (text, shown)
    assert mask("http://127.0.0.1:9093/api/v2/alerts?group=ops") == "http://127.0.0.1:9093/api/v2/alerts?group=ops"


def test_error_messages_and_logs_never_show_a_source_password(tmp_path):
    done = workbench("run", "--source", "mqtt://wb:Hunter2Secret@127.0.0.1:1/t/#?bogus=1", "--out", tmp_path / "o")
    message = one_clear_line(done)
    assert "Hunter2Secret" not in done.stderr and "wb:***@" in message
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging, sys; from workbench.cli import main; "
            "logging.basicConfig(stream=sys.stderr); "
            "sys.exit(main(['run', '--source', 'redis://:Hunter2Secret@127.0.0.1:1/s?group=g', "
            f"'--out', {str(tmp_path / 'p')!r}, '--seconds', '1']))",
        ],
        capture_output=True,
        text=True,
    )
    assert "Hunter2Secret" not in probe.stderr + probe.stdout


def test_temporary_files_of_a_killed_run_are_removed_at_the_next_start(events, tmp_path):
    out = tmp_path / "out"
    part = workbench("replay", events, "--out", out, "--max-rows", "500", "--max-batches", "2")
    assert part.returncode == 0, part.stderr
    leftovers = [
        out / "windows" / ".part-00000009.parquet.tmp-424242",  # a kill between write and rename
        out / "checkpoint" / ".checkpoint-00000009.wbck.tmp-424242",
        out / ".outbox-k2j3h4",
    ]
    for f in leftovers:
        f.write_bytes(b"half a file")
    done = workbench("replay", events, "--out", out)
    assert done.returncode == 0, done.stderr
    assert not [f for f in leftovers if f.exists()]


def test_a_full_disk_is_one_clear_error(events, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (disk / "filler").write_bytes(b"\0" * (256 - 4) * 1024)  # 4 KiB left: the first checkpoint fails
        message = one_clear_line(workbench("replay", events, "--out", disk / "out", "--max-rows", "500"))
        # the file is named (a failed write or close names none by itself)
        assert "No space left on device" in message and "checkpoint-00000000.wbck" in message, message
    finally:
        subprocess.run(["umount", str(disk)], check=True)

"""Scale-out on Dask: key groups, equality with one process, and surviving a SIGKILLed worker.

One ``LocalCluster`` of three worker processes serves the module (start-up is slow on
two cores); runs on 1, 2 or 3 workers use its first N (``Cluster.limited``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cluster.keygroups import assign, key_group, key_groups
from workbench.operators.windows import Session, Sliding, Tumbling
from workbench.pipeline.replay import replay

from conftest import cli, line, metric


@pytest.fixture(scope="module")
def cluster():
    from workbench.cluster import Cluster

    c = Cluster("local:3", timeout=60)
    yield c
    c.close()


def _events(rng: random.Random, n: int) -> bytes:
    """``n`` events on a few hosts: in order, with exact duplicates, broken lines and late ones."""
    hosts = [f"h{k}" for k in range(rng.randint(1, 7))]
    out, t = [], 0.0
    for i in range(n):
        t += rng.choice([0.0, 0.3, 1.0, 2.5])
        seconds = t - rng.uniform(6, 30) if rng.random() < 0.05 else t  # some beyond the 5 s lateness
        rec = line(metric(i, host=rng.choice(hosts), seconds=seconds))
        out.append(rec)
        if rng.random() < 0.05:
            out.append(rec)  # an exact duplicate
        if rng.random() < 0.03:
            out.append(b'{"event_id": "broken", "ts": \n')
        if rng.random() < 0.02:
            out.append(line(metric(i, host=rng.choice(hosts), seconds=t, cpu="hot")))  # invalid type
    return b"".join(out)


def _read(out: Path, output: str) -> pl.DataFrame:
    files = sorted((out / output).glob("*.parquet"))
    frame = pl.read_parquet(files) if files else pl.DataFrame()
    return frame.drop("ingested_at") if "ingested_at" in frame.columns else frame


OUTPUTS = ("windows", "dead_letter", "late")
COUNTS = ("ingested", "valid", "dead_lettered", "duplicates", "late", "windows")


def _same(a: Path, b: Path) -> None:
    for output in OUTPUTS:
        left, right = _read(a, output), _read(b, output)
        assert left.equals(right), f"{output} differ:\n{left}\n{right}"


# -- key groups ------------------------------------------------------------------------------------------
def test_key_group_is_xxh3_and_the_same_in_another_process():
    import xxhash

    keys = ["web-1", "db-7", "ünïcode", ""]
    here = [key_group(k.encode(), 128) for k in keys]
    assert here == [xxhash.xxh3_64_intdigest(k.encode()) % 128 for k in keys]
    code = f"from workbench.cluster.keygroups import key_group; print([key_group(k.encode(), 128) for k in {keys!r}])"
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "123"}
    )
    assert json.loads(there.stdout) == here
    frame = pl.DataFrame({"host": keys + ["web-1", None]})
    assert key_groups(frame, ["host"], 128).to_list()[:5] == [*here, here[0]]


@given(st.integers(1, 300), st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40, unique=True))
def test_assignment_covers_every_key_group_once_whatever_the_worker_order(groups, workers):
    plan = assign(groups, workers)
    owned = sorted(kg for kgs in plan.values() for kg in kgs)
    assert owned == list(range(groups))
    assert plan == assign(groups, list(reversed(workers)))
    sizes = [len(kgs) for kgs in plan.values()]
    assert max(sizes) - min(sizes) <= 1


def test_without_a_cluster_dask_is_not_imported(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"".join(line(metric(i, host=f"h{i % 3}")) for i in range(50)))
    code = (
        "import sys, workbench.cli\n"
        "from workbench.pipeline.replay import replay\n"
        f"replay({str(events)!r}, {str(tmp_path / 'out')!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'xxhash')))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_bad_cluster_address_is_one_line_naming_it(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_bytes(line(metric(1)))
    run = cli("replay", events, "--out", tmp_path / "out", "--cluster", "lokal:2")
    assert run.returncode == 2
    assert run.stderr.strip() == "workbench: error: --cluster: use local:N or tcp://HOST:PORT, not 'lokal:2'"


# -- equality -------------------------------------------------------------------------------------------
SPECS = [Tumbling("10s"), Sliding("20s", "10s"), Session("4s")]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    workers=st.integers(1, 3),
    max_rows=st.integers(1, 80),
    every=st.integers(1, 6),
    spec=st.sampled_from(SPECS),
)
def test_cluster_output_equals_one_process(cluster, tmp_path_factory, seed, n, workers, max_rows, every, spec):
    tmp = tmp_path_factory.mktemp("eq")
    events = tmp / "events.jsonl"
    events.write_bytes(_events(random.Random(seed), n))
    one = replay(events, tmp / "one", spec=spec, max_rows=max_rows, checkpoint_batches=every)
    many = replay(
        events, tmp / "many", spec=spec, max_rows=max_rows, checkpoint_batches=every, cluster=cluster.limited(workers)
    )
    assert {k: many[k] for k in COUNTS} == {k: one[k] for k in COUNTS}
    _same(tmp / "one", tmp / "many")
    assert many["cluster"]["recoveries"] == 0


def test_duplicates_and_model_scores_equal_one_process_with_the_python_api(cluster, tmp_path):
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(7), 1500))

    def run(name: str, c):
        pipe = Pipeline(
            FileSource(events, max_rows=97),
            name=name,
            checkpoints=str(tmp_path / name),
            checkpoint_batches=4,
            cluster=c,
        )
        windows = pipe.standard("server_metrics", Tumbling("10s"), lateness="5s")
        scores = windows.score("robust_z", features=["cpu_mean", "count"], by="host", params={"warm_up": 5})
        got = {k: pipe.collect(k) for k in ("windows", "duplicates", "late", "dead_letter")}
        got["scores"] = pipe.collect(scores)
        pipe.run()
        pipe.close()
        pipe.check_invariant()
        return {k: pl.concat(v, how="vertical_relaxed") if v else None for k, v in got.items()}, pipe.counts()

    one, one_counts = run("one", None)
    many, many_counts = run("many", cluster.limited(2))
    assert many_counts == one_counts and one_counts["duplicates"] > 0 and one_counts["late"] > 0
    for k in ("windows", "duplicates", "late", "scores"):
        assert many[k].equals(one[k]), k
    assert many["dead_letter"].drop("ingested_at").equals(one["dead_letter"].drop("ingested_at"))
    assert one["scores"].height == one["windows"].height


# -- models on the shard hosts ---------------------------------------------------------------------------
DETECTORS = ("snarimax", "context")  # a river model (SNARIMAX's residual) and Workbench's default detector
SCORED = ("windows", "dead_letter", "late", *(f"scores_{d}" for d in DETECTORS), *(f"drift_{d}" for d in DETECTORS))


def _scored_run(events, out, c, *, max_rows, every, max_batches=None, kill_at=None, spec=None):
    """``events`` through windows and one score node per detector; every output in a lake under ``out``."""
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource
    from workbench.storage.lake import Lake

    pipe = Pipeline(
        FileSource(events, max_rows=max_rows),
        name=f"scored:{out}",
        checkpoints=str(out / "checkpoint"),
        checkpoint_batches=every,
        cluster=c,
    )
    windows = pipe.standard("server_metrics", spec or Tumbling("10s"), lateness="5s")
    nodes = []
    for d in DETECTORS:
        node = windows.score(d, features=["cpu_mean", "count"], by="host", warm_up=3, idle="40s")
        pipe.output(f"scores_{d}", node)
        pipe.output(f"drift_{d}", node.drift)
        nodes.append(node)
    pipe.to_lake(Lake(out, partition=False))
    _kill_a_worker_at(pipe, c, kill_at)
    try:
        pipe.run(max_batches=max_batches)
    finally:
        pipe.close()
    assert all(n.sharded for n in nodes) == (c is not None)
    return pipe


def _same_scored(a: Path, b: Path) -> None:
    for output in SCORED:
        left, right = _read(a, output), _read(b, output)
        assert left.equals(right), f"{output} differ:\n{left}\n{right}"


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(100, 400),
    workers=st.integers(1, 3),
    max_rows=st.integers(5, 120),
    every=st.integers(2, 8),
    spec=st.sampled_from(SPECS),
)
def test_model_scores_on_the_shards_equal_one_process(
    cluster, tmp_path_factory, seed, n, workers, max_rows, every, spec
):  # noqa: E501
    """Each entity's models live in its key group on a host; scores, thresholds and drift equal one process's."""
    tmp = tmp_path_factory.mktemp("scores")
    events = tmp / "events.jsonl"
    events.write_bytes(_events(random.Random(seed), n))
    one = _scored_run(events, tmp / "one", None, max_rows=max_rows, every=every, spec=spec)
    many = _scored_run(events, tmp / "many", cluster.limited(workers), max_rows=max_rows, every=every, spec=spec)
    assert many.counts() == one.counts() and many.recoveries == 0
    _same_scored(tmp / "one", tmp / "many")
    assert _read(tmp / "one", "scores_snarimax").height == _read(tmp / "one", "windows").height > 0


def _incident(rng: random.Random, n: int) -> bytes:
    """Four hosts, a few duplicates, and one host's CPU high for a while: every detector scores it."""
    out = []
    for i in range(n):
        host = f"web-{i % 4}"
        cpu = 95.0 if host == "web-1" and n // 2 < i < n // 2 + 200 else 30.0 + rng.random() * 10
        out.append(line(metric(i, host=host, seconds=i / 2, cpu=cpu)))
        if rng.random() < 0.03:
            out.append(out[-1])
    return b"".join(out)


def test_model_scores_survive_a_killed_worker_and_a_restore_onto_other_workers(cluster, tmp_path):
    """SIGKILL a worker mid-run with score nodes; stop on 1 worker, resume on 3: scores identical to one process."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(_incident(random.Random(21), 2000))
    _scored_run(events, tmp_path / "one", None, max_rows=100, every=3)
    for d in DETECTORS:
        assert _read(tmp_path / "one", f"scores_{d}")["is_anomaly"].sum() > 0, d
    killed = _scored_run(events, tmp_path / "killed", cluster.limited(2), max_rows=100, every=3, kill_at=8)
    assert killed.recoveries >= 1
    _same_scored(tmp_path / "one", tmp_path / "killed")
    scores = _read(tmp_path / "killed", "scores_context")
    assert scores.height == 400 and scores.select("host", "window_start").is_duplicated().sum() == 0
    _scored_run(events, tmp_path / "rescaled", cluster.limited(1), max_rows=100, every=3, max_batches=7)
    _scored_run(events, tmp_path / "rescaled", cluster.limited(3), max_rows=100, every=3)
    _same_scored(tmp_path / "one", tmp_path / "rescaled")


def test_entities_quiet_on_a_whole_host_expire_as_in_one_process(cluster, tmp_path):
    """web-1 and web-3 (key groups 52 and 42: the first of two hosts) go quiet for longer than ``idle``.

    Their host gets no rows meanwhile; it expires them from the newest row time of every
    host, sent with its next call, so they come back (at another level) with fresh models,
    as in one process.
    """
    assert key_group(b"web-1", 128) < 64 and key_group(b"web-3", 128) < 64
    assert key_group(b"web-0", 128) >= 64 and key_group(b"web-2", 128) >= 64
    out, rng = [], random.Random(24)
    for i in range(2400):
        host = f"web-{i % 4}"
        quiet = host in ("web-1", "web-3")
        if quiet and 1200 < i < 1600:  # 200 s of silence (after 60 windows: past every warm-up); idle is 40 s
            continue
        level = 70.0 if quiet and i >= 1600 else 30.0  # back at another level: a model kept would flag it
        out.append(line(metric(i, host=host, seconds=i / 2, cpu=level + rng.random() * 10)))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(out))
    one = _scored_run(events, tmp_path / "one", None, max_rows=200, every=3)
    assert all(one.outputs[f"scores_{d}"].scorer.expired >= 2 for d in DETECTORS)
    _scored_run(events, tmp_path / "many", cluster.limited(2), max_rows=200, every=3)
    _same_scored(tmp_path / "one", tmp_path / "many")


def test_a_live_retune_rebuilds_the_models_on_the_hosts_as_in_one_process(cluster, tmp_path):
    """``retune`` mid-run, warmed on the windows so far: the hosts rebuild and warm their entities' models."""
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource

    events = tmp_path / "events.jsonl"
    events.write_bytes(_incident(random.Random(23), 1600))

    def run(name: str, c):
        pipe = Pipeline(FileSource(events, max_rows=80), name=name, checkpoints=str(tmp_path / name), cluster=c)
        windows = pipe.standard("server_metrics", Tumbling("10s"), lateness="5s")
        node = windows.score("robust_z", features=["cpu_mean", "count"], by="host", params={"warm_up": 30})
        seen, batches = pipe.collect("windows"), [0]

        def retune(_batch) -> None:
            batches[0] += 1
            if batches[0] == 9:
                node.retune(warm_up=5, warm=pl.concat(seen))

        pipe.subscribe_raw(retune)
        scores = pipe.collect(node)
        pipe.run()
        pipe.close()
        return pl.concat(scores), node

    one, one_node = run("one", None)
    many, many_node = run("many", cluster.limited(2))
    assert many_node.sharded and many.equals(one)
    assert many_node.retunes[0]["warmed"] == one_node.retunes[0]["warmed"] > 0
    assert many_node.params.warm_up == 5 and many_node.scorer.prototype.warm_up == 5


def test_a_score_node_whose_entities_are_not_the_windows_scores_on_the_coordinator(cluster, tmp_path):
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(5), 200))
    pipe = Pipeline(FileSource(events, max_rows=50), name="coord", checkpoints=str(tmp_path / "c"), cluster=cluster)
    windows = pipe.standard("server_metrics", Tumbling("10s"))
    shared = windows.score("robust_z", features=["cpu_mean"], by="host", shared=True)
    per_host = windows.score("robust_z", features=["cpu_mean"], by="host")
    assert not shared.sharded and per_host.sharded
    pipe.close()


def test_a_checkpoint_records_key_groups_assignment_and_checksums(cluster, tmp_path):
    from workbench.storage.checkpoints import CheckpointStore

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(3), 400))
    replay(events, tmp_path / "out", max_rows=50, checkpoint_batches=2, cluster=cluster.limited(2))
    state = CheckpointStore(tmp_path / "out" / "checkpoint").load()
    assert state is not None
    shards = state["nodes"]["shards"]
    assert shards["key_groups"] == 128 and len(shards["locations"]) == 128
    assert sorted(kg for lo, hi in shards["assignment"].values() for kg in range(lo, hi)) == list(range(128))
    assert {len(loc["sha256"]) for loc in shards["locations"].values()} == {64}
    assert state["source"]["offset"] == events.stat().st_size


def test_resuming_with_other_key_groups_is_refused(cluster, tmp_path):
    from workbench.cluster import Cluster
    from workbench.errors import CheckpointError

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(4), 300))
    replay(events, tmp_path / "out", max_rows=40, max_batches=3, cluster=cluster.limited(1))
    other = cluster.limited(1)
    other.key_groups = 64
    assert isinstance(other, Cluster)
    with pytest.raises(
        CheckpointError, match="128 key groups, this cluster 64; the number of key groups cannot change"
    ):
        replay(events, tmp_path / "out", max_rows=40, cluster=other)


# -- failures --------------------------------------------------------------------------------------------
def _kill_a_worker(c) -> int:
    """SIGKILL the process of one of the workers ``c`` uses (its nanny starts a new one)."""
    pids = c.worker_pids()
    victim = pids[c.workers()[-1]]
    os.kill(victim, signal.SIGKILL)
    return victim


def _kill_a_worker_at(pipe, c, batch: int) -> None:
    """SIGKILL one of ``c``'s workers when ``pipe`` has read its ``batch``-th batch."""
    seen = [0]

    def count(_batch) -> None:
        seen[0] += 1
        if seen[0] == batch:
            _kill_a_worker(c)

    pipe.subscribe_raw(count)


def test_a_worker_killed_mid_run_is_survived_with_identical_output(cluster, tmp_path):
    """The default run's real fault test: SIGKILL a worker process while epochs are dispatched."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(11), 2000))
    one = replay(events, tmp_path / "one", max_rows=100, checkpoint_batches=3)
    c = cluster.limited(2)
    batches, killed = [0], []

    def progress(_offset: int) -> None:
        batches[0] += 1
        if batches[0] == 8 and not killed:  # after two checkpoints, before epoch 8 is dispatched
            killed.append(_kill_a_worker(c))

    many = replay(events, tmp_path / "many", max_rows=100, checkpoint_batches=3, cluster=c, progress=progress)
    assert killed and many["cluster"]["recoveries"] >= 1
    assert {k: many[k] for k in COUNTS} == {k: one[k] for k in COUNTS}
    _same(tmp_path / "one", tmp_path / "many")
    windows = _read(tmp_path / "many", "windows")
    assert windows.select("host", "window_start").is_duplicated().sum() == 0


def test_a_worker_lost_while_the_source_is_idle_is_restored_before_the_next_batch(cluster, tmp_path):
    """The scheduler's worker-removal event, not the next batch, starts the recovery of an idle pipeline."""
    import threading
    import time

    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource
    from workbench.storage.lake import Lake

    events = tmp_path / "events.jsonl"
    events.write_bytes(_incident(random.Random(22), 1200))
    half = events.read_bytes().index(b"\n", events.stat().st_size // 2) + 1
    one = _scored_run(events, tmp_path / "one", None, max_rows=100, every=2)
    resume, paused = threading.Event(), threading.Event()
    pause_at: list[int] = []
    past = [0]  # batches after the one the source went quiet after

    class Idle(FileSource):
        """A live source that goes quiet halfway (no batch, no tick) until the test resumes it."""

        @property
        def bulk(self) -> bool:
            return False

        def _batches(self):
            for batch in super()._batches():
                if pause_at and batch.offset > pause_at[0]:
                    past[0] += 1
                yield batch
                while batch.offset >= half and not resume.is_set() and not self.stopped:
                    if not pause_at:
                        pause_at.append(batch.offset)
                    paused.set()
                    time.sleep(0.02)

    c = cluster.limited(2)
    out = tmp_path / "many"
    pipe = Pipeline(
        Idle(events, max_rows=100),
        name="idle",
        checkpoints=str(out / "checkpoint"),
        checkpoint_batches=2,
        checkpoint_every="1h",  # no checkpoint while idle: only the removal event can reveal the loss
        cluster=c,
    )
    windows = pipe.standard("server_metrics", Tumbling("10s"), lateness="5s")
    pipe.output("scores_context", windows.score("context", features=["cpu_mean", "count"], by="host", warm_up=3))
    pipe.to_lake(Lake(out, partition=False))
    pipe.start()
    try:
        assert paused.wait(60), "the source never went idle"
        time.sleep(0.5)  # the batch before the pause went through the graph
        killed_at = time.monotonic()
        _kill_a_worker(c)
        while pipe.recoveries == 0 and time.monotonic() - killed_at < 30:
            time.sleep(0.05)
        took = time.monotonic() - killed_at
        assert pipe.recoveries == 1 and past[0] == 0, "recovered only when the next batch came"
        print(f"recovered {took:.2f} s after the kill, while idle")
        resume.set()
        pipe._thread.join(120)
    finally:
        resume.set()
        pipe.close()
    assert pipe.error is None and not pipe.running
    assert pipe.counts() == one.counts()
    for output in ("windows", "dead_letter", "late", "scores_context"):
        assert _read(out, output).equals(_read(tmp_path / "one", output)), output


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("where", ["snapshot", "after_manifest", "sink_write"])
def test_a_worker_killed_at_a_checkpoint_step_is_survived(cluster, tmp_path, monkeypatch, where):
    from workbench.cluster.stage import ShardStage
    from workbench.sources.files import FileSource
    from workbench.storage.lake import LakeSink

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(12), 1500))
    one = replay(events, tmp_path / "one", max_rows=100, checkpoint_batches=3)
    c = cluster.limited(2)
    calls, killed = [0], []
    # the third snapshot or ack; the first lake sink's write at the fourth checkpoint (three sinks each)
    at = 10 if where == "sink_write" else 3

    def maybe_kill() -> None:
        calls[0] += 1
        if calls[0] == at and not killed:
            killed.append(_kill_a_worker(c))

    if where == "snapshot":
        snapshot = ShardStage.snapshot
        monkeypatch.setattr(ShardStage, "snapshot", lambda self: (maybe_kill(), snapshot(self))[1])
    elif where == "after_manifest":
        commit = FileSource.commit
        monkeypatch.setattr(FileSource, "commit", lambda self, offset: (maybe_kill(), commit(self, offset))[1])
    else:
        sink_commit = LakeSink.commit
        monkeypatch.setattr(LakeSink, "commit", lambda self, epoch: (sink_commit(self, epoch), maybe_kill())[0])
    many = replay(events, tmp_path / "many", max_rows=100, checkpoint_batches=3, cluster=c)
    assert killed and many["cluster"]["recoveries"] >= 1
    assert {k: many[k] for k in COUNTS} == {k: one[k] for k in COUNTS}
    _same(tmp_path / "one", tmp_path / "many")


@pytest.mark.slow
@pytest.mark.long
def test_a_killed_coordinator_resumes_on_another_number_of_workers(tmp_path):
    """SIGKILL ``workbench replay --cluster local:1`` mid-run; resume it with ``local:2``: same output."""
    import time

    import psutil

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(13), 20_000))
    one = replay(events, tmp_path / "one", max_rows=200, checkpoint_every="0.05s", checkpoint_batches=None)
    out = tmp_path / "many"
    args = ["replay", events, "--out", out, "--max-rows", "200", "--checkpoint-every", "0.05s"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *map(str, args), "--cluster", "local:1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "checkpoint").glob("checkpoint-*.wbck"))) >= 2 and any((out / "windows").glob("*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the replay ended before it could be killed"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in children:  # the orphaned nanny and worker of the killed coordinator's LocalCluster
            if child.is_running():
                child.kill()
    resumed = cli(*args, "--cluster", "local:2")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert {k: summary[k] for k in COUNTS} == {k: one[k] for k in COUNTS}
    _same(tmp_path / "one", out)


@pytest.mark.slow
@pytest.mark.long
def test_with_a_source_that_cannot_replay_a_lost_worker_ends_the_run_and_the_next_resumes(cluster, tmp_path):
    """A broker-like source (not replayable in-run): the run stops on the lost worker; a new run resumes."""
    from workbench.errors import WorkerLostError
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource
    from workbench.storage.lake import Lake

    class Live(FileSource):
        replayable = False

    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(random.Random(14), 1500))
    one = replay(events, tmp_path / "one", max_rows=100, checkpoint_batches=3)
    c = cluster.limited(2)
    out = tmp_path / "many"

    def run(kill_at: int | None):
        source = Live(events, max_rows=100)
        pipe = Pipeline(
            source, name=f"live:{out}", checkpoints=str(out / "checkpoint"), checkpoint_batches=3, cluster=c
        )
        pipe.standard("server_metrics", Tumbling("10s"), lateness="5s")
        pipe.to_lake(Lake(out, partition=False))
        _kill_a_worker_at(pipe, c, kill_at)
        try:
            pipe.run()
        finally:
            pipe.close()
        return pipe

    with pytest.raises(WorkerLostError, match="cannot replay within this run: start it again"):
        run(kill_at=8)
    again = run(kill_at=None)
    assert {k: again.counts()[k] for k in COUNTS if k != "windows"} == {k: one[k] for k in COUNTS if k != "windows"}
    _same(tmp_path / "one", out)


PG = "postgresql://root@127.0.0.1:5432/test"
ALERT_RULES = """\
evaluation_interval: 10s
rules:
  - {name: cpu_high, kind: threshold, metric: cpu_mean, op: ">", value: 60, for: 20s, severity: critical}
"""


@pytest.mark.slow
@pytest.mark.long
def test_workbench_run_on_a_cluster_survives_a_killed_worker_with_the_same_postgres_rows_and_alerts(tmp_path):
    """``workbench run --cluster local:2 --postgres … --rules …``, a worker SIGKILLed mid-run: same rows, no repeats."""
    import time
    import uuid

    import psutil

    psycopg = pytest.importorskip("psycopg")
    events = tmp_path / "events.jsonl"
    with events.open("wb") as f:
        for i in range(20_000):
            host = f"web-{i % 5}"
            cpu = 90.0 if host == "web-1" and 5000 < i < 12_000 else 30.0 + i % 7
            f.write(line(metric(i, host=host, seconds=i / 5, cpu=cpu)))
    (tmp_path / "rules.yaml").write_text(ALERT_RULES)
    suffix = uuid.uuid4().hex[:10]
    schemas = {"one": f"wb_cluster_one_{suffix}", "many": f"wb_cluster_many_{suffix}"}

    def args(kind: str) -> list[str]:
        return [sys.executable, "-m", "workbench.cli", "run", "--source", str(events)] + [
            "--out", str(tmp_path / kind), "--postgres", PG, "--pg-schema", schemas[kind],
            "--rules", str(tmp_path / "rules.yaml"), "--alerts-schema", f"{schemas[kind]}_alerts",
            "--max-rows", "100", "--checkpoint-every", "0.05s",
        ]  # fmt: skip

    with psycopg.connect(PG, autocommit=True) as con:
        for s in schemas.values():
            con.execute(f"CREATE SCHEMA {s}")
    try:
        one = subprocess.run(args("one"), capture_output=True, text=True, timeout=300)
        assert one.returncode == 0, one.stderr
        proc = subprocess.Popen(args("many") + ["--cluster", "local:2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            if len(list((tmp_path / "many" / "checkpoint").glob("checkpoint-*.wbck"))) >= 2:
                workers = [
                    p
                    for p in psutil.Process(proc.pid).children(recursive=True)
                    if "spawn_main" in " ".join(p.cmdline())
                ]
                if len(workers) >= 2:
                    killed = workers[-1].pid
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert killed is not None, "the run ended before a worker could be killed"
        many, single = json.loads(out), json.loads(one.stdout)
        assert many["recoveries"] >= 1
        for k in ("ingested", "valid", "dead_lettered", "duplicates", "late", "windows", "alerts"):
            assert many[k] == single[k], k
        with psycopg.connect(PG, autocommit=True) as con:
            rows = {
                kind: con.execute(f"SELECT * FROM {s}.windows ORDER BY host, window_start").fetchall()
                for kind, s in schemas.items()
            }
            repeats = con.execute(
                f"SELECT count(*) FROM (SELECT host, window_start FROM {schemas['many']}.windows "
                "GROUP BY 1, 2 HAVING count(*) > 1) d"
            ).fetchone()
        assert rows["many"] == rows["one"] and len(rows["one"]) == single["windows"]
        assert repeats == (0,)
    finally:
        with psycopg.connect(PG, autocommit=True) as con:
            for s in schemas.values():
                con.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
                con.execute(f"DROP SCHEMA IF EXISTS {s}_alerts CASCADE")

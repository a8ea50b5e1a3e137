"""Every detector keeps the contract: clone, snapshot/restore, no input mutation, reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.evaluate.run import DETECTORS
from workbench.models.detectors import score_stream


def _rows(n: int = 400, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    values = 10 + np.sin(np.arange(n) / 20) + rng.normal(0, 0.1, n)
    if n > 300:
        values[300] += 8  # one spike
    return [{"value": float(v)} for v in values]


@pytest.fixture(params=sorted(DETECTORS))
def make(request):
    return DETECTORS[request.param]


def test_scores_are_in_0_1_and_the_spike_stands_out(make):
    scores = score_stream(make(), _rows())
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores)
    assert max(scores[300:311]) == max(scores[250:])  # at the spike, or a few rows on (likelihood)
    assert scores[0] == 0.0  # warm-up


def test_clone_is_fresh_with_the_same_parameters(make):
    det = make()
    score_stream(det, _rows(100))
    twin = det.clone()
    assert repr(twin) == repr(det)
    assert score_stream(twin, _rows()) == score_stream(make(), _rows())


def test_snapshot_restore_gives_the_same_next_score(make):
    rows = _rows()
    det = make()
    score_stream(det, rows[:350])
    state = det.snapshot()
    a = score_stream(det, rows[350:])
    other = make()
    other.restore(state)
    assert score_stream(other, rows[350:]) == a
    score_stream(det, rows[:10])  # the snapshot does not alias live state
    again = make()
    again.restore(state)
    assert score_stream(again, rows[350:]) == a


def test_inputs_are_not_mutated_and_runs_reproduce(make):
    rows = _rows()
    copy = [dict(r) for r in rows]
    first = score_stream(make(), rows)
    assert rows == copy
    assert score_stream(make(), rows) == first


def test_detect_command_scores_a_csv_online(tmp_path):
    from conftest import cli

    values = [10.0 + 0.1 * (i % 5) for i in range(300)]
    values[250] = 80.0
    rows = [
        "timestamp,value,other",
        *(f"2024-01-01T00:{i // 60:02d}:{i % 60:02d},{v},{i % 3}" for i, v in enumerate(values)),
    ]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    done = cli("detect", tmp_path / "in.csv", "--time-column", "timestamp", "--out", tmp_path / "out.csv")
    assert done.returncode == 0, done.stderr
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert out[0] == "timestamp,value,other,anomaly_score,is_anomaly" and len(out) == 301
    flagged = [i for i, line in enumerate(out[1:]) if line.endswith(",true")]
    assert flagged == [250]

    bad = cli("detect", tmp_path / "in.csv", "--time-column", "ts", "--out", tmp_path / "x.csv")
    assert bad.returncode == 2 and "no time column 'ts'" in bad.stderr

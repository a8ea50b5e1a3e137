"""The NAB scorer on hand-built cases, and its threshold sweep against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.evaluate.nab import PROFILES, corpus_score, probation_rows, scaled_sigmoid, score_file

STD = PROFILES["standard"]


def _sig(p: float) -> float:
    return 2 / (1 + math.exp(5 * p)) - 1


def _corpus():
    """Two files with probation, three windows in all."""
    a = {"scores": np.zeros(200), "windows": [(60, 79), (150, 169)], "probation": probation_rows(200)}
    b = {"scores": np.zeros(100), "windows": [(50, 59)], "probation": probation_rows(100)}
    return [a, b]


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=lambda p: p.name)
def test_perfect_detector_scores_100_and_null_scores_0(profile):
    files = _corpus()
    assert corpus_score(files, profile)["score"] == 0.0  # never fires
    for f in files:
        for a, _ in f["windows"]:
            f["scores"][a] = 1.0  # fires on each window's first row
    assert corpus_score(files, profile)["score"] == 100.0


def test_worked_by_hand_early_late_and_false_positives():
    windows = [(40, 49)]  # width 10

    def raw(*rows: int) -> float:
        s = np.zeros(100)
        s[list(rows)] = 1.0
        return score_file(s, windows, threshold=0.5, profile=STD, probation=15).raw

    # a true positive is rescaled so the window's first row is worth exactly 1 (NAB divides by σ at -1)
    top = _sig(-1.0)
    assert raw(40) == pytest.approx(1.0)
    # middle of the window: p = -(49 - 45 + 1) / 10 = -0.5
    assert raw(45) == pytest.approx(_sig(-0.5) / top) == pytest.approx(0.8598, abs=1e-4)
    # last row of the window: p = -0.1, worth little
    assert raw(49) == pytest.approx(0.2482, abs=1e-4)
    # only the earliest detection of a window counts
    assert raw(45, 41, 48) == pytest.approx(_sig(-0.9) / top)
    # a false positive before any window costs -1 x 0.11, and the window is missed (-1)
    assert raw(20) == pytest.approx(-0.11 - 1.0)
    # right after the window: p = 1 / 9, a mild penalty; three widths on: -0.11
    assert raw(40, 50) == pytest.approx(1.0 + 0.11 * _sig(1 / 9))
    assert 0.11 * _sig(1 / 9) == pytest.approx(-0.0298, abs=1e-4)
    assert raw(40, 90) == pytest.approx(1.0 - 0.11)
    # probationary rows are not scored
    assert raw(5) == pytest.approx(-1.0)


def test_profiles_weigh_misses_and_false_alarms():
    s = np.zeros(100)
    s[20] = 1.0  # one false positive, the window missed
    fp = score_file(s, [(40, 49)], threshold=0.5, profile=PROFILES["reward_low_FP_rate"], probation=15)
    fn = score_file(s, [(40, 49)], threshold=0.5, profile=PROFILES["reward_low_FN_rate"], probation=15)
    assert fp.raw == pytest.approx(-0.22 - 1.0) and (fp.tp, fp.fp, fp.fn) == (0, 1, 1)
    assert fn.raw == pytest.approx(-0.11 - 2.0)


def test_scaled_sigmoid_shape():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0 and scaled_sigmoid(5.0) == -1.0
    assert probation_rows(1000) == 150 and probation_rows(10_000) == 750


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_sweep_finds_the_best_threshold(data):
    n = data.draw(st.integers(30, 120))
    a = data.draw(st.integers(5, n - 6))
    b = data.draw(st.integers(a, min(n - 1, a + 15)))
    levels = st.sampled_from([0.0, 0.2, 0.5, 0.7, 0.9, 1.0])
    scores = np.array(data.draw(st.lists(levels, min_size=n, max_size=n)))
    f = {"scores": scores, "windows": [(a, b)], "probation": probation_rows(n)}
    best = corpus_score([f], STD)
    brute = max(
        score_file(scores, [(a, b)], threshold=t, profile=STD, probation=f["probation"]).raw
        for t in [*np.unique(scores), math.inf]
    )
    assert best["raw"] == pytest.approx(brute)


def test_nab_command_writes_results_and_scores(tmp_path):
    from conftest import cli

    (tmp_path / "data" / "realTest").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    ts = [f"2024-01-01 {h:02d}:{m:02d}:00" for h in range(10) for m in range(0, 60, 5)]  # 120 rows
    values = [10.0 + 0.1 * (i % 5) for i in range(120)]
    values[90] = 50.0
    lines = ["timestamp,value", *(f"{t},{v}" for t, v in zip(ts, values, strict=True))]
    (tmp_path / "data" / "realTest" / "spike.csv").write_text("\n".join(lines) + "\n")
    windows = {"realTest/spike.csv": [[ts[85] + ".000000", ts[95] + ".000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(__import__("json").dumps(windows))
    done = cli("nab", "--data", tmp_path, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    report = __import__("json").loads(done.stdout)
    assert report["scores"]["standard"] > 90  # the spike is found early in its window, nothing else fires
    from workbench.evaluate.run import DEFAULT_DETECTOR

    written = (tmp_path / "out" / "realTest" / f"{DEFAULT_DETECTOR}_spike.csv").read_text().splitlines()
    assert written[0] == "timestamp,value,anomaly_score" and len(written) == 121


def _spiky_corpus(root, spikes: list[int]) -> None:
    """A NAB folder at ``root``: one 240-row file per spike row, its window 10 rows either side."""
    import json

    (root / "data" / "realTest").mkdir(parents=True)
    (root / "labels").mkdir()
    ts = [f"2024-01-01 {h:02d}:{m:02d}:00" for h in range(20) for m in range(0, 60, 5)]  # 240 rows
    windows = {}
    for k, at in enumerate(spikes):
        values = [10.0 + 0.1 * ((i * (k + 1)) % 7) for i in range(240)]
        values[at] = 40.0 + k
        lines = ["timestamp,value", *(f"{t},{v}" for t, v in zip(ts, values, strict=True))]
        (root / "data" / "realTest" / f"s{k}.csv").write_text("\n".join(lines) + "\n")
        windows[f"realTest/s{k}.csv"] = [[ts[at - 10] + ".000000", ts[at + 10] + ".000000"]]
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_nab_with_several_jobs_gives_the_same_result(tmp_path):
    from workbench.evaluate.run import run_nab

    _spiky_corpus(tmp_path, [150, 170, 190])
    one = run_nab(tmp_path / "data" / "..", out=tmp_path / "one")
    two = run_nab(tmp_path, out=tmp_path / "two", jobs=2)
    assert (one["scores"], one["thresholds"], two["jobs"]) == (two["scores"], two["thresholds"], 2)
    for k in range(3):
        name = f"realTest/{one['detector']}_s{k}.csv"
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_split_chooses_on_one_half_and_scores_the_other_at_its_thresholds(tmp_path):
    """Settings and thresholds come from the training half only; the held-out half is scored at them."""
    from workbench.evaluate.corpus import load_nab
    from workbench.evaluate.split import fixed_score, split_nab
    from workbench.models.context import ContextDetector
    from workbench.models.detectors import score_stream

    from conftest import cli

    _spiky_corpus(tmp_path, [150, 170, 150, 170])
    grid = {"rest": (5, 10), "spatial": (0.0, 0.01)}
    report = split_nab(tmp_path, grid=grid)
    assert report["files"] == {"odd": 2, "even": 2}
    files = load_nab(tmp_path)
    odd_to_even = report["halves"]["odd→even"]
    settings = {} if odd_to_even["settings"] == "the defaults" else odd_to_even["settings"]
    held_out = [  # the even files scored by hand with the settings chosen on the odd ones
        {
            "scores": score_stream(ContextDetector(**settings), ({"value": float(v)} for v in f.values)),
            "windows": f.windows,
            "probation": f.probation,
        }
        for f in files[1::2]
    ]
    for name, profile in PROFILES.items():
        assert odd_to_even["test"][name] == fixed_score(held_out, odd_to_even["thresholds"][name], profile)
    assert set(report["halves"]) == {"odd→even", "even→odd"} and set(report["full_corpus_defaults"]) == set(PROFILES)
    with pytest.raises(Exception, match="has no setting 'window'"):
        split_nab(tmp_path, grid={"window": (1, 2)})
    done = cli("nab", "--data", tmp_path, "--split", "--detector", "nope")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "unknown detector 'nope'" in done.stderr

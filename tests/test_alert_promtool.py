"""Workbench's rule engine held against the real one: ``promtool test rules`` (Prometheus 2.42) is the judge.

Each scenario is a Prometheus rule group and input series written from the Prometheus
documentation. Workbench computes its alerts at every evaluation time; a promtool test
file is written from them — ``alert_rule_test`` (firing alerts, labels and annotations)
and ``promql_expr_test`` on ``ALERTS`` (pending and firing) at *every* evaluation time —
and promtool must pass it, as must ``workbench alerts test`` itself. A scenario may
also pin a few expectations by hand (``expect``: evaluation minute → firing series),
so a scenario where both tools were wrong the same way would still be caught.

``TestKeepFiringFor`` and ``TestPendingAndKeepFiringFor`` are Prometheus' own cases
(``rules/alerting_test.go``), re-written as test files; promtool 2.42 supports
``keep_firing_for`` (``promtool check rules`` accepts it), so they are judged by it too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from workbench.alerts.promtest import run_rule_tests, timeline
from workbench.config import format_duration, parse_duration

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool (Prometheus 2.42) is not installed")


def rule(name: str, expr: str, **kw: Any) -> dict[str, Any]:
    return {"alert": name, "expr": expr, **kw}


def series(name: str, values: str) -> dict[str, str]:
    return {"series": name, "values": values}


HOT = rule("Hot", "cpu > 90")
CANARY = 'http_requests{job="app-server", instance="0", group="canary", severity="overwrite-me"}'

SCENARIOS: dict[str, dict[str, Any]] = {
    "threshold_for_0": {
        "rules": [HOT],
        "series": [series('cpu{host="a"}', "50 95 95 50 95")],
        "until": "6m",
        "expect": {1: ["a"], 2: ["a"], 3: [], 4: ["a"]},
    },
    "threshold_for_1m": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m"})],
        "series": [series('cpu{host="a"}', "50 95 95 95 50 95 95")],
        "until": "8m",
        "expect": {1: [], 2: ["a"], 3: ["a"], 4: [], 5: [], 6: ["a"]},
    },
    "pending_never_fires": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "3m"})],
        "series": [series('cpu{host="a"}', "95 95 95 50 95 95 50 95")],
        "until": "9m",
        "expect": {m: [] for m in range(10)},
    },
    "keep_firing_for_after_the_condition_clears": {
        "rules": [rule("Hot", "cpu > 90", keep_firing_for="2m")],
        "series": [series('cpu{host="a"}', "95 50 50 50 50")],
        "until": "5m",
        "expect": {0: ["a"], 1: ["a"], 2: ["a"], 3: []},  # 2 m from the first miss (1 m): resolved at 3 m
    },
    "keep_firing_for_equal_to_the_interval": {
        "rules": [rule("Hot", "cpu > 90", keep_firing_for="1m")],
        "series": [series('cpu{host="a"}', "95 50 50")],
        "until": "3m",
        "expect": {0: ["a"], 1: ["a"], 2: []},
    },
    "keep_firing_for_reset_by_a_new_match": {
        "rules": [rule("Hot", "cpu > 90", keep_firing_for="2m")],
        "series": [series('cpu{host="a"}', "95 50 95 50 50 50 50")],
        "until": "7m",
        "expect": {1: ["a"], 3: ["a"], 4: ["a"], 5: []},
    },
    "prometheus_TestKeepFiringFor": {
        "rules": [
            rule(
                "HTTPRequestRateHigh",
                'http_requests{group="canary", job="app-server"} > 60',
                **{"for": "1m", "keep_firing_for": "1m", "labels": {"severity": "critical"}},
            )
        ],
        "series": [series(CANARY, "75 85 70 70 10x5")],
        "until": "7m",
        "expect": {0: [], 1: ["0"], 3: ["0"], 4: ["0"], 5: []},
    },
    "prometheus_TestPendingAndKeepFiringFor": {
        "rules": [
            rule(
                "HTTPRequestRateHigh",
                'http_requests{group="canary", job="app-server"} > 60',
                **{"for": "1m", "keep_firing_for": "1m", "labels": {"severity": "critical"}},
            )
        ],
        "series": [series(CANARY, "75 10x10")],
        "until": "4m",
        "expect": {0: [], 1: [], 2: []},  # pending at 0, dropped at 1 m: keep_firing_for is never applied
    },
    "flapping_for_0": {
        "rules": [HOT],
        "series": [series('cpu{host="a"}', "95 50 95 50 95 50")],
        "until": "6m",
    },
    "flapping_for_1m": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m"})],
        "series": [series('cpu{host="a"}', "95 50 95 95 50 95 95 95 50")],
        "until": "9m",
    },
    "flapping_with_keep_firing_for": {
        "rules": [rule("Hot", "cpu > 90", keep_firing_for="1m")],
        "series": [series('cpu{host="a"}', "95 50 95 50 50 95 50 95 50 50 50")],
        "until": "11m",
    },
    "several_series_of_one_rule": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m"})],
        "series": [
            series('cpu{host="a"}', "95 95 95 50 50"),
            series('cpu{host="b"}', "50 95 95 95 95"),
            series('cpu{host="c"}', "95 50 95 50 95"),
        ],
        "until": "6m",
        "expect": {1: ["a"], 2: ["a", "b"], 3: ["b"]},
    },
    "extra_labels_make_separate_alerts": {
        "rules": [rule("Hot", "cpu > 90", labels={"team": "infra"})],
        "series": [
            series('cpu{host="a", job="api"}', "95 95 50"),
            series('cpu{host="a", job="web"}', "95 50 50"),
            series('cpu{host="b"}', "95 95 95"),
        ],
        "until": "3m",
    },
    "rule_labels_override_series_labels_and_annotations": {
        "rules": [
            rule(
                "Hot",
                'cpu{job=~"api|web"} > 90',
                labels={"severity": "page", "job": "rewritten"},
                annotations={
                    "summary": "{{ $labels.host }} ({{ $labels.job }}) at {{ $value }}",
                    "metric": "{{ $labels.__name__ }}={{ .Value }}",
                },
            )
        ],
        "series": [
            series('cpu{host="a", job="api"}', "95 99.5 1000000 50"),
            series('cpu{host="b", job="db"}', "95 95 95 95"),
        ],
        "until": "4m",
    },
    "gap_within_the_lookback_keeps_the_last_sample": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "2m"})],
        "series": [series('cpu{host="a"}', "95 _ _ 95 _ 50")],
        "until": "7m",
        "expect": {2: ["a"], 3: ["a"], 4: ["a"], 5: []},
    },
    "silence_longer_than_the_lookback": {
        "rules": [HOT],
        "series": [series('cpu{host="a"}', "95 _x9 95")],
        "until": "11m",
        "expect": {5: ["a"], 6: [], 9: [], 10: ["a"]},  # the 5 m lookback includes its start (2.x)
    },
    "stale_marker_ends_the_series": {
        "rules": [HOT],
        "series": [series('cpu{host="a"}', "95 95 stale _ 95")],
        "until": "5m",
        "expect": {1: ["a"], 2: [], 3: [], 4: ["a"]},
    },
    "stale_marker_with_keep_firing_for": {
        "rules": [rule("Hot", "cpu > 90", keep_firing_for="2m")],
        "series": [series('cpu{host="a"}', "95 stale _x5")],
        "until": "6m",
    },
    "missing_sample_for_one_host_while_others_report": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m"})],
        "series": [series('cpu{host="a"}', "95 95 _ 95 _ _ _ _ _ _ 95"), series('cpu{host="b"}', "10x10")],
        "until": "11m",
    },
    "samples_faster_than_the_evaluation_interval": {
        "interval": "30s",
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m"})],
        "series": [series('cpu{host="a"}', "50 95 95 95 50 95 95 50 50 95 95 95 95")],
        "until": "7m",
    },
    "samples_slower_than_the_evaluation_interval": {
        "interval": "2m",
        "rules": [rule("Hot", "cpu > 90", **{"for": "2m"})],
        "series": [series('cpu{host="a"}', "95 95 50 95 95 95 _ _ 95")],
        "until": "18m",
    },
    "evaluation_interval_30s": {
        "evaluation_interval": "30s",
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m", "keep_firing_for": "30s"})],
        "series": [series('cpu{host="a"}', "95 95 95 50 95 50 50")],
        "until": "7m",
    },
    "every_comparison_operator": {
        "rules": [
            rule("Gt", "cpu > 5"),
            rule("Ge", "cpu >= 5"),
            rule("Lt", "cpu < 5"),
            rule("Le", "cpu <= 5"),
            rule("Eq", "cpu == 5"),
            rule("Ne", "cpu != 5"),
        ],
        "series": [series('cpu{host="a"}', "4 5 6 NaN -1e3 5"), series('cpu{host="b"}', "5 stale 5")],
        "until": "6m",
    },
    "matchers_select_series": {
        "rules": [
            rule("Api", 'cpu{job="api"} > 90'),
            rule("NotApi", 'cpu{job!="api"} > 90'),
            rule("Re", 'cpu{host=~"a|c", job!~"w.*"} > 90'),
            rule("NoJob", 'cpu{job=""} > 90'),
        ],
        "series": [
            series('cpu{host="a", job="api"}', "95 95"),
            series('cpu{host="b", job="web"}', "95 50"),
            series('cpu{host="c"}', "95 95"),
        ],
        "until": "2m",
    },
    "an_empty_label_is_no_label": {
        "rules": [rule("Hot", 'cpu{job=""} > 90')],
        "series": [series('cpu{host="a", job=""}', "95 95"), series('cpu{host="b", job="x"}', "95 95")],
        "until": "2m",
    },
    "two_metrics_two_rules": {
        "rules": [rule("Hot", "cpu > 90", **{"for": "1m"}), rule("Full", "disk >= 0.95", keep_firing_for="1m")],
        "series": [
            series('cpu{host="a"}', "95 95 95 95"),
            series('disk{host="a"}', "0.9 0.95 0.99 0.5 0.5"),
        ],
        "until": "5m",
    },
    "value_and_annotations_follow_the_latest_sample": {
        "rules": [rule("Hot", "cpu > 90", annotations={"v": "{{ $value }}"}, keep_firing_for="2m")],
        "series": [series('cpu{host="a"}', "91 92.25 0.001 93 10 10")],
        "until": "6m",
    },
}


def _files(tmp: Path, name: str, sc: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    rules = tmp / f"{name}.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": name, "rules": sc["rules"]}]}, sort_keys=False))
    group = {"interval": sc.get("interval", sc.get("evaluation_interval", "1m")), "input_series": sc["series"]}
    return rules, group


def _test_file(tmp: Path, name: str, sc: dict[str, Any]) -> tuple[Path, dict[int, list[dict[str, Any]]]]:
    """The promtool test file of a scenario, with Workbench's alerts at every evaluation time."""
    rules, group = _files(tmp, name, sc)
    interval = sc.get("evaluation_interval", "1m")
    seen = timeline([rules], group, evaluation_interval=interval, until=sc["until"])
    names = [r["alert"] for r in sc["rules"]]
    alert_tests, expr_tests = [], []
    for t, alerts in seen.items():
        at = format_duration(t)
        for alertname in names:
            firing = [a for a in alerts if a["alertname"] == alertname and a["state"] == "firing"]
            exp = [
                {
                    "exp_labels": {k: v for k, v in a["labels"].items() if k != "alertname"},
                    "exp_annotations": a["annotations"],
                }
                for a in firing
            ]
            alert_tests.append({"eval_time": at, "alertname": alertname, "exp_alerts": exp})
        samples = []
        for a in alerts:
            labels = {**a["labels"], "alertstate": a["state"]}
            body = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            samples.append({"labels": f"ALERTS{{{body}}}", "value": 1})
        expr_tests.append({"expr": "ALERTS", "eval_time": at, "exp_samples": samples})
    doc = {
        "rule_files": [rules.name],
        "evaluation_interval": interval,
        "tests": [{**group, "alert_rule_test": alert_tests, "promql_expr_test": expr_tests}],
    }
    path = tmp / f"{name}.test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, seen


def _promtool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True)


@needs_promtool
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_promtool_agrees_at_every_evaluation_time(name, tmp_path):
    sc = SCENARIOS[name]
    path, seen = _test_file(tmp_path, name, sc)
    assert len(seen) >= 2
    for minute, hosts in sc.get("expect", {}).items():  # pinned by hand, from the documentation
        firing = [
            a["labels"].get("host", a["labels"].get("instance"))
            for a in seen[minute * 60_000]
            if a["state"] == "firing"
        ]
        assert sorted(firing) == sorted(hosts), f"{name}: at {minute}m"
    done = _promtool(path)
    assert done.returncode == 0, f"promtool disagrees on {name}:\n{done.stdout}{done.stderr}"
    assert "SUCCESS" in done.stdout
    ours = run_rule_tests(path)
    assert ours.passed, ours.text()


def test_the_scenarios_cover_the_issue():
    assert len(SCENARIOS) >= 20
    fired = [n for n in SCENARIOS if n != "pending_never_fires"]
    assert {"prometheus_TestKeepFiringFor", "prometheus_TestPendingAndKeepFiringFor"} <= set(fired)


@needs_promtool
def test_a_changed_expectation_fails_in_both_tools_with_the_same_report(tmp_path):
    path, _ = _test_file(tmp_path, "changed", SCENARIOS["threshold_for_1m"])
    doc = yaml.safe_load(path.read_text())
    case = next(c for c in doc["tests"][0]["alert_rule_test"] if c["eval_time"] == "2m")
    case["exp_alerts"][0]["exp_labels"]["host"] = "b"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    theirs = _promtool(path)
    ours = run_rule_tests(path)
    assert theirs.returncode == 1 and not ours.passed
    assert ours.errors[0] in theirs.stderr + theirs.stdout
    assert 'Labels:{alertname="Hot", host="b"}' in ours.text()


def test_workbench_rule_files_read_the_same_test_file(tmp_path):
    """A team keeps one test file: a Workbench rule file gives the same alerts as the Prometheus one."""
    sc = SCENARIOS["keep_firing_for_reset_by_a_new_match"]
    path, _ = _test_file(tmp_path, "wb", sc)
    wb_rules = tmp_path / "wb.workbench.yml"
    wb_rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "name": "Hot",
                        "kind": "threshold",
                        "metric": "cpu",
                        "value": 90,
                        "keep_firing_for": "2m",
                        "severity_label": False,
                    }
                ]
            }
        )
    )
    doc = yaml.safe_load(path.read_text())
    doc["rule_files"] = [wb_rules.name]
    path.write_text(yaml.safe_dump(doc))
    assert run_rule_tests(path).passed


def test_unsupported_expressions_and_notation_are_named(tmp_path):
    from workbench.errors import ConfigError

    (tmp_path / "r.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [rule("Up", "sum(rate(x[5m])) > 1")]}]})
    )
    (tmp_path / "t.yml").write_text(yaml.safe_dump({"rule_files": ["r.yml"], "tests": []}))
    with pytest.raises(ConfigError, match=r"rule 'Up': expr 'sum\(rate\(x\[5m\]\)\) > 1' is not supported"):
        run_rule_tests(tmp_path / "t.yml")
    (tmp_path / "r.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "x", "expr": "y"}]}]})
    )
    with pytest.raises(ConfigError, match="recording rule 'x' is not supported"):
        run_rule_tests(tmp_path / "t.yml")


def test_durations_print_as_prometheus_prints_them():
    assert [format_duration(parse_duration(x)) for x in ("0s", "90s", "1h", "5m")] == ["0s", "1m30s", "1h", "5m"]


def _readme_example(tmp: Path) -> Path:
    import re

    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (tmp / "rules.yml").write_text(next(b for b in blocks if b.startswith("# rules.yml")))
    path = tmp / "rules.test.yml"
    path.write_text(next(b for b in blocks if b.startswith("# rules.test.yml")))
    return path


@needs_promtool
def test_the_readme_example_passes_and_a_changed_expectation_fails_byte_for_byte_as_promtool(tmp_path, capfd):
    from workbench.cli import main

    path = _readme_example(tmp_path)
    assert _promtool(path).returncode == 0
    assert main(["alerts", "test", str(path)]) == 0
    assert "SUCCESS" in capfd.readouterr().out
    path.write_text(path.read_text().replace("exp_labels: {host: web-1", "exp_labels: {host: web-9", 1))
    theirs = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True)
    assert main(["alerts", "test", str(path)]) == 1
    ours = capfd.readouterr()
    assert theirs.returncode == 1
    assert (ours.out, ours.err) == (theirs.stdout, theirs.stderr)


@needs_promtool
def test_eval_times_between_evaluations_and_a_slower_test_interval_report_byte_for_byte(tmp_path, capfd):
    from workbench.cli import main

    (tmp_path / "r.yml").write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [rule("Hot", 'cpu{job="x"} > 90', **{"for": "1m"}, labels={"s": "p"})]}]}
        )
    )
    doc = {
        "rule_files": ["r.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "slower input",
                "interval": "45s",
                "input_series": [series('cpu{host="a", job="x"}', "95 95 95 95 10 10")],
                "alert_rule_test": [
                    {"eval_time": t, "alertname": "Hot", "exp_alerts": []} for t in ("90s", "119s", "200s")
                ],
                "promql_expr_test": [{"expr": 'ALERTS{alertstate="pending"}', "eval_time": "59s", "exp_samples": []}],
            }
        ],
    }
    path = tmp_path / "t.yml"
    path.write_text(yaml.safe_dump(doc))
    theirs = _promtool(path)
    assert main(["alerts", "test", str(path)]) == theirs.returncode == 1
    ours = capfd.readouterr()
    assert ours.err.count("alertname: Hot") == 2 and "ALERTS" in ours.err  # resolved by 3m20s
    assert ours.err == theirs.stderr
    assert ours.out.replace(str(path), path.name) == theirs.stdout


def _random_scenario(seed: int) -> dict[str, Any]:
    import random

    rng = random.Random(seed)
    kw: dict[str, Any] = {"for": rng.choice(["0s", "1m", "2m"]), "keep_firing_for": rng.choice(["0s", "1m", "90s"])}
    op, value = rng.choice([(">", 90), (">=", 95), ("<", 60), ("!=", 50)])
    tokens = ["50", "95", "95", "_", "stale", "_x6", "99"]
    hosts = rng.sample(["a", "b", "c"], rng.randint(1, 3))
    return {
        "interval": rng.choice(["30s", "1m", "2m"]),
        "evaluation_interval": rng.choice(["30s", "1m"]),
        "rules": [rule("Rnd", f"cpu {op} {value}", annotations={"v": "{{ $labels.host }}={{ $value }}"}, **kw)],
        "series": [series(f'cpu{{host="{h}"}}', " ".join(rng.choice(tokens) for _ in range(14))) for h in hosts],
        "until": "16m",
    }


@needs_promtool
@pytest.mark.parametrize("seed", range(12))
def test_promtool_agrees_on_random_scenarios(seed, tmp_path):
    sc = _random_scenario(seed)
    path, seen = _test_file(tmp_path, f"random{seed}", sc)
    done = _promtool(path)
    assert done.returncode == 0, f"promtool disagrees on seed {seed} ({sc}):\n{done.stdout}{done.stderr}"
    assert run_rule_tests(path).passed

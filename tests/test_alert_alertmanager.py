"""Alertmanager as a receiver, against Debian's real ``prometheus-alertmanager`` on loopback.

The test starts Alertmanager (random free port, temporary storage, clustering off)
with a webhook receiver, runs alert rules in event time close to the wall clock (as a
live pipeline does: Alertmanager reads ``startsAt``/``endsAt`` against its own clock),
and checks what reaches the webhook: grouping, a silence created through
Alertmanager's API, resolved alerts with their ``endsAt``, and nothing lost while
Alertmanager restarts mid-run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.alert_servers import Hook, hook_server
from workbench.alerts.amsender import AlertmanagerNotifier, rfc3339
from workbench.alerts.manager import AlertManager
from workbench.alerts.outbox import Outbox
from workbench.alerts.rules import Threshold
from workbench.errors import ConfigError

BINARY = Path("/usr/bin/prometheus-alertmanager")
pytestmark = pytest.mark.skipif(not BINARY.exists(), reason="prometheus-alertmanager (Debian) is not installed")


class Alertmanager:
    """A real Alertmanager process on 127.0.0.1 that can be stopped and started again (same port, same storage)."""

    def __init__(self, tmp: Path, hook_url: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "alertmanager.yml"
        self.config.write_text(
            json.dumps(
                {
                    "route": {
                        "receiver": "hook",
                        "group_by": ["alertname"],
                        "group_wait": "3s",  # a loaded machine may space two POSTs of one evaluation by > 1 s
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [{"name": "hook", "webhook_configs": [{"url": hook_url, "send_resolved": True}]}],
                }
            )
        )
        self.storage = tmp / "alertmanager-data"
        self.log = tmp / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BINARY),
                    f"--config.file={self.config}",
                    f"--storage.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"alertmanager did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def api(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read() or b"null")


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def seen(hook: Hook) -> list[tuple[str, str]]:
    with hook.lock:
        return [(a["labels"]["host"], a["status"]) for n in hook.received for a in n["alerts"]]


@pytest.fixture
def running(tmp_path):
    with hook_server() as hook:
        am = Alertmanager(tmp_path, hook.url)
        am.start()
        try:
            yield am, hook
        finally:
            am.stop()


def when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_alerts_reach_a_real_alertmanager_as_prometheus_sends_them(running, tmp_path):
    am, hook = running
    box = Outbox({"am": AlertmanagerNotifier(am.url, retries=10, backoff=0.2)}, log=tmp_path / "outbox.jsonl")
    box.start()
    rule = Threshold(
        "Hot",
        metric="cpu",
        value=90,
        labels={"team": "infra"},
        annotations={"summary": "{{ $labels.host }} at {{ $value }}"},
    )
    manager = AlertManager([rule], outbox=box, evaluation_interval="10s")
    t0 = int(time.time()) // 10 * 10_000 - 120_000  # event time: two minutes ago, as a live pipeline lags

    def windows(first: int, n: int, **cpu: float) -> None:
        for k in range(first, first + n):
            manager.process(
                pl.DataFrame({"host": list(cpu), "window_end": [t0 + k * 10_000] * len(cpu), "cpu": list(cpu.values())})
            )

    try:
        # grouping: a and b fire in one evaluation; Alertmanager groups them by alertname into one notification
        windows(0, 3, a=95.0, b=97.0, c=10.0, d=10.0)
        assert box.drain(20)
        wait_for("the first notification", lambda: hook.received)
        first = hook.received[0]
        assert first["groupLabels"] == {"alertname": "Hot"} and first["status"] == "firing"
        alerts = sorted(first["alerts"], key=lambda a: a["labels"]["host"])
        assert [a["labels"] for a in alerts] == [
            {"alertname": "Hot", "host": "a", "severity": "warning", "team": "infra"},
            {"alertname": "Hot", "host": "b", "severity": "warning", "team": "infra"},
        ]
        assert [a["annotations"] for a in alerts] == [{"summary": "a at 95"}, {"summary": "b at 97"}]
        assert {datetime.fromisoformat(a["startsAt"]) for a in alerts} == {when(t0)}
        assert all(a["generatorURL"] == "http://workbench/alerts/Hot" for a in alerts)

        # a silence created through Alertmanager's API mutes c; a resolves with its endsAt
        now = datetime.now(UTC)
        silence = am.api(
            "/api/v2/silences",
            {
                "matchers": [{"name": "host", "value": "c", "isRegex": False, "isEqual": True}],
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
                "createdBy": "test",
                "comment": "maintenance",
            },
        )["silenceID"]
        windows(3, 3, a=10.0, b=97.0, c=99.0, d=10.0)
        assert box.drain(20)
        wait_for("a resolved", lambda: ("a", "resolved") in seen(hook))
        resolved = next(
            a for n in hook.received for a in n["alerts"] if a["labels"]["host"] == "a" and a["status"] == "resolved"
        )
        assert datetime.fromisoformat(resolved["endsAt"]) == when(t0 + 30_000)
        c = wait_for("c at the Alertmanager", lambda: am.api('/api/v2/alerts?filter=host="c"'))
        assert c[0]["status"]["state"] == "suppressed" and c[0]["status"]["silencedBy"] == [silence]

        # Alertmanager restarts mid-run: d fires while it is down; the outbox delivers after the restart
        am.stop()
        windows(6, 3, a=10.0, b=97.0, c=99.0, d=96.0)
        time.sleep(1.0)
        am.start()
        assert box.drain(30)
        wait_for("d after the restart", lambda: ("d", "firing") in seen(hook))
        assert [s["id"] for s in am.api("/api/v2/silences") if s["status"]["state"] == "active"] == [silence]
        hosts = wait_for("b re-sent after the restart", lambda: am.api("/api/v2/alerts?active=true&silenced=false"))
        assert sorted(a["labels"]["host"] for a in hosts) == ["b", "d"]
        assert not [h for h, _ in seen(hook) if h == "c"]  # silenced throughout, restart included
        assert {("a", "firing"), ("b", "firing"), ("a", "resolved"), ("d", "firing")} <= set(seen(hook))
        assert box.stats()["failed"] == 0
        assert box.notifiers["am"].attempts > box.stats()["delivered"]  # deliveries did fail while it was down
    finally:
        manager.close()


def test_resend_and_ends_at_follow_prometheus():
    from workbench.alerts.amsender import PrometheusSender
    from workbench.alerts.lifecycle import STATE_SCHEMA, TRANSITION_SCHEMA

    sender = PrometheusSender([Threshold("hot", metric="cpu", value=90)], lambda r: ("host",), interval_ms=10_000)
    state = pl.DataFrame(
        {
            "rule": [0],
            "entity": ["a"],
            "state": ["firing"],
            "active_at": [0],
            "fired_at": [0],
            "last_match": [0],
            "keep_since": [None],
            "value": [95.0],
        },
        schema=STATE_SCHEMA,
    )
    none = pl.DataFrame(schema=TRANSITION_SCHEMA)
    sent = [t for t in range(0, 130_000, 10_000) if sender.step(t, state, none)]
    assert sent == [0, 60_000, 120_000]  # re-sent every resend_delay while firing
    assert sender.step(180_000, state, none)[0]["endsAt"] == rfc3339(180_000 + 4 * 60_000)
    gone = pl.DataFrame(
        {
            "rule": [0],
            "entity": ["a"],
            "from_state": ["firing"],
            "to_state": ["resolved"],
            "at": [190_000],
            "active_at": [0],
            "value": [95.0],
        },
        schema=TRANSITION_SCHEMA,
    )
    empty = state.clear()
    out = sender.step(190_000, empty, gone)
    assert [(a["endsAt"], a["startsAt"]) for a in out] == [(rfc3339(190_000), rfc3339(0))]
    resent = [t for t in range(200_000, 190_000 + 16 * 60_000, 10_000) if sender.step(t, empty, none)]
    assert resent[:2] == [250_000, 310_000] and resent[-1] <= 190_000 + 15 * 60_000


def test_an_alertmanager_receiver_is_not_routed(tmp_path):
    from workbench.alerts.dispatch import Route

    box = Outbox({"am": AlertmanagerNotifier("http://127.0.0.1:1")}, log=tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match=r"receiver\(s\) \['am'\] are Alertmanagers"):
        AlertManager([Threshold("hot", metric="cpu", value=90)], routes=[Route(receivers=("am",))], outbox=box)

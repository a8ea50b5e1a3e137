"""Issue 21, finding 4: MQTT loss is reported, on a real Mosquitto with a small queue and a real ``kill -9``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from connectors import BASE_MS, MqttPub, free_port, wait_for

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto (make services)")


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto of our own on a free port: queue limit 50, no persistence, $SYS every second."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nsys_interval 1\nmax_queued_messages 50\npersistence false\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, 10, "mosquitto")
        yield port, conf
    finally:
        proc.terminate()
        proc.wait(10)


def _payloads(start: int, stop: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "event_id": f"e{i}",
                "seq": i,
                "ts": BASE_MS + i * 20,
                "host": f"h{i % 4}",
                "cpu": 1.0,
                "mem": 1.0,
                "latency_ms": 1.0,
                "status": 200,
            }
        ).encode()
        for i in range(start, stop)
    ]


def _publish(pub: MqttPub, payloads: list[bytes]) -> None:
    c = pub._client()
    c.connect("127.0.0.1", pub.port)
    c.loop_start()
    for info in [c.publish(f"{pub.topic}/p1", p, qos=1) for p in payloads]:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def test_messages_the_broker_drops_while_the_pipeline_is_down_turn_health_red(broker, tmp_path):
    port, conf = broker
    pub = MqttPub(port)
    pub.setup()
    url = f"{pub.url}&seq_field=seq"
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "workbench.cli",
        "run",
        "--source",
        url,
        "--out",
        str(out),
        "--checkpoint-every",
        "0.2s",
    ]

    def epoch() -> int:
        files = sorted((out / "checkpoint").glob("checkpoint-*.wbck")) if (out / "checkpoint").exists() else []
        return int(files[-1].stem.split("-")[1]) if files else 0

    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        seq = 0
        deadline = time.monotonic() + 90
        while not epoch() and time.monotonic() < deadline:  # one message at a time until it runs: none dropped
            _publish(pub, _payloads(seq, seq + 1))
            seq += 1
            time.sleep(0.3)
        assert epoch(), "the first run never checkpointed"
        for _ in range(25):  # 2.5 s of traffic: the $SYS counter is seen and checkpointed with the offsets
            _publish(pub, _payloads(seq, seq + 10))
            seq += 10
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = epoch()
    _publish(pub, _payloads(seq, seq + 400))  # 400 while down: the broker queues 50 and drops the rest
    seq += 400
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: epoch() > before, 90, "the second run's first checkpoint")
        _publish(pub, _payloads(seq, seq + 20))
        time.sleep(2.5)  # a $SYS tick after the drops
    finally:
        second.send_signal(signal.SIGTERM)
    stdout, _ = second.communicate(60)
    assert second.returncode == 0
    health = json.loads(stdout)["source"]
    assert health["status"] == "red", stdout
    assert health["lost"]["sequence_gaps"] >= 300, health
    assert health["lost"]["broker_dropped"] >= 300, health
    pub.cleanup()

    check = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "check-mqtt", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 1 and "persistence" in check.stdout and "max_queued_messages: 50" in check.stdout

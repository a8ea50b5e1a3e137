import json
import socket

import pytest
from alert_servers import hook_server

from workbench.alerts.notifiers import JsonlNotifier, NotifyError, SlackNotifier, WebhookNotifier, sign
from workbench.clock import ManualClock


def test_webhook_posts_json_with_hmac_signature():
    with hook_server() as hook:
        WebhookNotifier(hook.url, secret="s3cret").notify({"id": "n1", "alert": "cpu_high", "value": 97.5})
    assert hook.received == [{"id": "n1", "alert": "cpu_high", "value": 97.5}]
    headers = {k.lower(): v for k, v in hook.headers[0].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-workbench-signature"] == sign(hook.bodies[0], "s3cret")
    assert headers["idempotency-key"] == "n1"


def test_webhook_retries_5xx_with_exponential_backoff_then_delivers():
    clock = ManualClock()
    with hook_server() as hook:
        hook.fail_next = 3
        WebhookNotifier(hook.url, retries=5, backoff=0.5, clock=clock).notify({"n": 1})
    assert hook.attempts == 4
    assert hook.received == [{"n": 1}]
    assert clock.monotonic() == pytest.approx(0.5 + 1.0 + 2.0)


def test_webhook_gives_up_after_the_last_retry_naming_url_and_error():
    clock = ManualClock()
    with hook_server() as hook:
        hook.fail_next = 100
        notifier = WebhookNotifier(hook.url, retries=2, backoff=0.1, clock=clock)
        with pytest.raises(NotifyError, match=r"webhook http://127\.0\.0\.1:\d+/hook: .*3 attempt.*HTTP 503"):
            notifier.notify({"n": 1})
    assert hook.attempts == 3


def test_webhook_does_not_retry_a_client_error():
    with hook_server() as hook:
        hook.fail_next, hook.fail_status = 1, 400
        with pytest.raises(NotifyError, match="HTTP 400"):
            WebhookNotifier(hook.url, retries=5, clock=ManualClock()).notify({"n": 1})
    assert hook.attempts == 1


def test_webhook_retries_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = ManualClock()
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/x", retries=3, backoff=1.0, clock=clock)
    with pytest.raises(NotifyError, match=f"127.0.0.1:{port}/x.*4 attempt"):
        notifier.notify({"n": 1})
    assert notifier.attempts == 4
    assert clock.monotonic() == pytest.approx(1 + 2 + 4)


def test_webhook_rejects_a_bad_url():
    with pytest.raises(Exception, match="url must start with http"):
        WebhookNotifier("ftp://x")


def test_slack_payload_shape():
    with hook_server() as hook:
        SlackNotifier(hook.url).notify(
            {"status": "firing", "severity": "page", "summary": "cpu high", "alerts": [{"labels": {"host": "h1"}}]}
        )
    body = hook.received[0]
    assert body["text"] == "[FIRING] page: cpu high"
    assert body["blocks"][0]["type"] == "section"
    assert "host=h1" in body["blocks"][0]["text"]["text"]


def test_jsonl_appends_lines(tmp_path):
    n = JsonlNotifier(tmp_path / "a" / "log.jsonl")
    n.notify({"a": 1})
    n.notify({"a": 2})
    assert [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()] == [{"a": 1}, {"a": 2}]

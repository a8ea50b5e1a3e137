"""Notifiers: where alert notifications go, each with retries and exponential backoff.

Every notifier has one verb, ``notify(message: dict) -> None``, which either delivers
the message or raises :class:`NotifyError` naming the destination and the last error
after its last try. Notifiers are stateless senders: the at-least-once guarantee (the
persisted notification log, the outbox and its delivery thread) lives in
:mod:`workbench.alerts.outbox`, which calls them.

- :class:`JsonlNotifier` appends one JSON line per message to a file (fsync'd).
- :class:`WebhookNotifier` POSTs the JSON body; with a ``secret`` it signs it
  (``X-Workbench-Signature: sha256=<hex HMAC-SHA256 of the body>``). Connection
  errors, timeouts, 429 and 5xx are retried; other 4xx are not (the request is wrong).
  A message with an ``id`` carries it as ``Idempotency-Key`` so a receiver can drop
  the repeats at-least-once delivery may produce.
- :class:`SlackNotifier` is a webhook with Slack's incoming-webhook payload
  (``text`` plus ``blocks``).
- :class:`~workbench.alerts.mail.EmailNotifier` sends over SMTP;
  :class:`~workbench.alerts.mail.BusNotifier` publishes to MQTT, Redis or NATS.

Examples
--------
>>> sign(b'{"a":1}', "s3cret")
'sha256=5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from workbench.bus.retry import Backoff, call_with_retries
from workbench.clock import Clock, SystemClock
from workbench.errors import ConfigError, WorkbenchError
from workbench.masking import mask

__all__ = [
    "JsonlNotifier",
    "NotifyError",
    "Notifier",
    "SlackNotifier",
    "WebhookNotifier",
    "encode",
    "sign",
]

SIGNATURE_HEADER = "X-Workbench-Signature"


class NotifyError(WorkbenchError):
    """A notification could not be delivered (after every retry)."""


def encode(message: dict[str, Any]) -> bytes:
    """A message as compact, key-sorted JSON bytes (datetimes as ISO strings).

    Examples
    --------
    >>> encode({"b": 1, "a": "x"})
    b'{"a":"x","b":1}'
    """
    return json.dumps(message, sort_keys=True, separators=(",", ":"), default=_default).encode()


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__} {value!r}")


def sign(body: bytes, secret: str) -> str:
    """The signature header value of ``body``: ``sha256=`` + hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier(ABC):
    """Base of notifiers: a name, retries with backoff, and ``notify``.

    Parameters
    ----------
    retries
        Attempts after the first one.
    backoff
        Seconds before the first retry; doubled after each (capped at 30 s).
    clock
        Injected clock (its ``sleep`` waits between tries).
    """

    kind = "notifier"

    def __init__(self, *, retries: int = 5, backoff: float = 0.5, clock: Clock | None = None) -> None:
        self.backoff = Backoff(retries=retries, base=backoff, cap=max(30.0, backoff))
        self.clock = clock or SystemClock()
        self.attempts = 0

    @property
    @abstractmethod
    def target(self) -> str:
        """Where messages go (URL, path, address), for messages and logs."""

    @abstractmethod
    def send(self, message: dict[str, Any]) -> None:
        """One delivery attempt; raise on failure."""

    def retryable(self, exc: Exception) -> bool:
        """Whether a failed attempt is worth repeating."""
        return isinstance(exc, OSError | TimeoutError)

    def notify(self, message: dict[str, Any]) -> None:
        """Deliver ``message`` or raise :class:`NotifyError` after the last try."""

        def attempt() -> None:
            self.attempts += 1
            self.send(message)

        tries = 0

        def count(attempt_no: int, exc: Exception, delay: float) -> None:
            nonlocal tries
            tries = attempt_no

        try:
            call_with_retries(attempt, backoff=self.backoff, retryable=self.retryable, clock=self.clock, on_retry=count)
        except Exception as exc:
            raise NotifyError(
                f"{self.kind} {self.target}: delivery failed after {tries + 1} attempt(s): {type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:  # noqa: B027 - most notifiers hold no connection
        """Release connections (nothing to release by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class JsonlNotifier(Notifier):
    """Append each message as one JSON line to ``path`` (created with its folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "alerts.jsonl"
    >>> n = JsonlNotifier(path)
    >>> n.notify({"alert": "cpu_high", "status": "firing"})
    >>> path.read_text()
    '{"alert":"cpu_high","status":"firing"}\\n'
    """

    kind = "jsonl"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self._lock = threading.Lock()

    @property
    def target(self) -> str:  # noqa: D102
        return str(self.path)

    def send(self, message: dict[str, Any]) -> None:  # noqa: D102
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "ab") as f:
            f.write(encode(message) + b"\n")
            f.flush()
            os.fsync(f.fileno())


class _HTTPStatus(OSError):
    """A non-2xx answer; ``status`` decides whether to retry."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


class WebhookNotifier(Notifier):
    """POST each message as JSON to ``url``; HMAC-SHA256 signed when ``secret`` is set.

    Parameters
    ----------
    url
        ``http://`` or ``https://`` endpoint.
    secret
        Key of the ``X-Workbench-Signature`` header (``sha256=<hex>`` over the body).
    timeout
        Seconds per attempt (connect and read).
    retries
        Attempts after the first, on connection errors, timeouts, 429 and 5xx.
    backoff
        Seconds before the first retry, doubled after each.
    headers
        Extra request headers.
    clock
        Injected clock for the waits between tries.

    Examples
    --------
    >>> n = WebhookNotifier("http://127.0.0.1:1/hook", retries=0)
    >>> n.notify({"alert": "cpu_high"})
    Traceback (most recent call last):
    ...
    workbench.alerts.notifiers.NotifyError: webhook http://127.0.0.1:1/hook: delivery failed after 1 attempt(s): ...
    """

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook: url must start with http:// or https://, not {url!r}")
        if timeout <= 0:
            raise ConfigError(f"webhook {url}: timeout must be > 0 seconds, not {timeout}")
        super().__init__(retries=retries, backoff=backoff, clock=clock)
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.headers = dict(headers or {})

    @property
    def target(self) -> str:  # noqa: D102
        return mask(self.url)  # a hook URL often carries its token

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        """The JSON document posted for ``message`` (the message itself)."""
        return message

    def send(self, message: dict[str, Any]) -> None:  # noqa: D102
        body = encode(self.payload(message))
        headers = {"Content-Type": "application/json", "User-Agent": "workbench-alerts", **self.headers}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        if "id" in message:
            headers["Idempotency-Key"] = str(message["id"])
        self.post(body, headers)

    def post(self, body: bytes, headers: dict[str, str]) -> None:
        """POST ``body`` to the URL; an HTTP error status raises (and :meth:`retryable` judges it)."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _HTTPStatus(exc.code, str(exc.reason)) from None

    def retryable(self, exc: Exception) -> bool:  # noqa: D102
        if isinstance(exc, _HTTPStatus):
            return exc.status >= 500 or exc.status in (408, 429)
        return isinstance(exc, OSError | TimeoutError)


class SlackNotifier(WebhookNotifier):
    """A Slack-compatible incoming webhook: ``{"text": …, "blocks": [...]}``.

    Examples
    --------
    >>> n = SlackNotifier("http://127.0.0.1:1/slack")
    >>> n.payload({"status": "firing", "summary": "cpu high on h1", "severity": "page"})["text"]
    '[FIRING] page: cpu high on h1'
    """

    kind = "slack"

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:  # noqa: D102
        status = str(message.get("status", "notification")).upper()
        severity = message.get("severity")
        summary = message.get("summary") or message.get("text") or encode(message).decode()
        text = f"[{status}] {severity}: {summary}" if severity else f"[{status}] {summary}"
        lines = [f"*{text}*"]
        for alert in message.get("alerts", [])[:20]:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.get("labels", {}).items()))
            lines.append(f"• {alert.get('state', '')} {alert.get('summary', '')} ({labels})")
        return {
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}],
        }

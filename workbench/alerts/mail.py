"""E-mail (SMTP, stdlib ``smtplib``) and event-bus notifiers.

Examples
--------
>>> n = EmailNotifier("127.0.0.1", 25, sender="wb@example.org", to=["ops@example.org"])
>>> n.render({"status": "firing", "severity": "page", "summary": "cpu high"})["Subject"]
'[FIRING] page: cpu high'
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

from workbench.alerts.notifiers import Notifier, encode
from workbench.bus.base import Publisher, PublishError
from workbench.errors import ConfigError

__all__ = ["BusNotifier", "EmailNotifier"]


class EmailNotifier(Notifier):
    """Send each notification as a plain-text e-mail.

    Parameters
    ----------
    host, port
        SMTP server.
    sender, to
        From and To addresses.
    starttls
        Upgrade the connection with STARTTLS first.
    username, password
        SMTP login, when the server needs one.
    timeout
        Seconds per attempt.
    **kwargs
        ``retries``, ``backoff``, ``clock``: see :class:`~workbench.alerts.notifiers.Notifier`.
    """

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        to: Sequence[str],
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if not to or isinstance(to, str):
            raise ConfigError(f"email notifier: to must be a non-empty list of addresses, not {to!r}")
        super().__init__(**kwargs)
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.starttls, self.username, self.password, self.timeout = starttls, username, password, timeout

    @property
    def target(self) -> str:  # noqa: D102
        return f"smtp://{self.host}:{self.port} to {','.join(self.to)}"

    def retryable(self, exc: Exception) -> bool:  # noqa: D102
        if isinstance(exc, smtplib.SMTPResponseException):
            return exc.smtp_code >= 400 and exc.smtp_code < 500  # 4xx: try again later; 5xx: refused
        return isinstance(exc, OSError | smtplib.SMTPServerDisconnected)

    def render(self, message: dict[str, Any]) -> EmailMessage:
        """The e-mail for a notification: subject line and a plain-text body."""
        status = str(message.get("status", "notification")).upper()
        severity = message.get("severity")
        summary = message.get("summary", "")
        mail = EmailMessage()
        mail["Subject"] = f"[{status}] {severity}: {summary}" if severity else f"[{status}] {summary}"
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        if "id" in message:
            mail["X-Workbench-Notification"] = str(message["id"])
        lines = [mail["Subject"], ""]
        for alert in message.get("alerts", []):
            labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.get("labels", {}).items()))
            lines.append(
                f"- {alert.get('status', '')}: {alert.get('summary', '')} [{labels}] since {alert.get('starts_at')}"
            )
        lines += ["", encode(message).decode()]
        mail.set_content("\n".join(lines))
        return mail

    def send(self, message: dict[str, Any]) -> None:  # noqa: D102
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(self.render(message))


class BusNotifier(Notifier):
    """Publish each notification as JSON to a broker topic (MQTT, Redis Streams, NATS JetStream).

    ``topic`` may use ``{receiver}``, ``{status}`` and ``{severity}``. The publisher
    reconnects and retries on its own; this notifier retries whole publishes on top.
    """

    kind = "bus"

    def __init__(self, publisher: Publisher, topic: str, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 2)
        super().__init__(**kwargs)
        self.publisher = publisher
        self.topic = topic

    @property
    def target(self) -> str:  # noqa: D102
        return f"{self.publisher.address} {self.topic}"

    def retryable(self, exc: Exception) -> bool:  # noqa: D102
        return isinstance(exc, PublishError)

    def send(self, message: dict[str, Any]) -> None:  # noqa: D102
        topic = self.topic.format(
            receiver=message.get("receiver", ""), status=message.get("status", ""), severity=message.get("severity", "")
        )
        self.publisher.publish(topic, encode(message))

    def close(self) -> None:  # noqa: D102
        self.publisher.close()

"""Failure notifications of report runs, delivered by the alert notifiers (:mod:`workbench.alerts.notifiers`).

Examples
--------
>>> m = failure_message(job="daily", notebook="daily.ipynb", error="cell 3 raised KeyError: 'x'")
>>> m["kind"], m["status"], m["summary"]
('workbench.report_failed', 'failed', "report job 'daily' failed: cell 3 raised KeyError: 'x'")
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

__all__ = ["FailureNotifier", "failure_message", "notify_failure"]


class FailureNotifier(Protocol):
    """What a failed run needs from a notifier (every alert notifier has it)."""

    def notify(self, message: dict[str, Any]) -> None:
        """Deliver ``message`` or raise after the last try."""


def failure_message(
    *,
    job: str,
    notebook: str,
    error: str,
    scheduled: datetime | None = None,
    started: datetime | None = None,
    ended: datetime | None = None,
    output: str | None = None,
    parameters: dict[str, Any] | None = None,
    run: int | None = None,
) -> dict[str, Any]:
    """The JSON message sent when a report run fails (its ``id`` is stable per job and fire time)."""
    iso = {
        k: v.isoformat() if v else None for k, v in (("scheduled", scheduled), ("started", started), ("ended", ended))
    }
    return {
        "id": f"report-{job}-{iso['scheduled'] or run or 'adhoc'}",
        "kind": "workbench.report_failed",
        "status": "failed",
        "job": job,
        "notebook": notebook,
        **iso,
        "run": run,
        "output": output,
        "parameters": parameters or {},
        "error": error,
        "summary": f"report job {job!r} failed: {error}",
    }


def notify_failure(
    url: str, message: dict[str, Any], *, secret: str | None = None, retries: int = 5, backoff: float = 0.5
) -> None:
    """POST ``message`` to the webhook ``url`` (HMAC-signed with ``secret``); raises ``NotifyError`` at the end."""
    from workbench.alerts.notifiers import WebhookNotifier

    WebhookNotifier(url, secret=secret, retries=retries, backoff=backoff).notify(message)

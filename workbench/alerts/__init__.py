"""Smart alerting: rules as values, an event-time lifecycle, routing and notifications.

Notifiers (:mod:`workbench.alerts.notifiers`) deliver one message each, with retries
and exponential backoff, or raise :class:`NotifyError` naming where and why.
"""

from workbench.alerts.notifiers import JsonlNotifier, Notifier, NotifyError, SlackNotifier, WebhookNotifier

__all__ = ["JsonlNotifier", "Notifier", "NotifyError", "SlackNotifier", "WebhookNotifier"]

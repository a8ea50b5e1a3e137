"""Receivers from settings: the ``receivers:`` section of an alert YAML file → notifiers.

Each receiver names a ``kind`` and that notifier's settings::

    receivers:
      log:   {kind: jsonl, path: data/alerts.jsonl}
      ops:   {kind: webhook, url: "http://127.0.0.1:9000/hook", secret: s3cret, retries: 5}
      chat:  {kind: slack, url: "https://hooks.example.org/T000/B000"}
      am:    {kind: alertmanager, url: "http://127.0.0.1:9093"}   # every alert, as Prometheus sends it
      mail:  {kind: email, host: 127.0.0.1, port: 25, sender: wb@example.org, to: [ops@example.org]}
      mqtt:  {kind: mqtt, host: 127.0.0.1, port: 1883, topic: "alerts/{severity}"}
      redis: {kind: redis, host: 127.0.0.1, port: 6379, topic: alerts, maxlen: 10000}
      nats:  {kind: nats, url: "nats://127.0.0.1:4222", stream: ALERTS, subjects: ["alerts.>"], topic: alerts.all}

Examples
--------
>>> build_receivers({"log": {"kind": "jsonl", "path": "/tmp/wb-alerts.jsonl"}})
{'log': JsonlNotifier('/tmp/wb-alerts.jsonl')}
>>> build_receivers({"x": {"kind": "pager"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: receiver 'x': kind must be one of ['alertmanager', 'email', 'jsonl', ...], not 'pager'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from workbench.alerts.mail import BusNotifier, EmailNotifier
from workbench.alerts.notifiers import JsonlNotifier, Notifier, SlackNotifier, WebhookNotifier
from workbench.errors import ConfigError

__all__ = ["build_receivers"]


def _bus(factory: Callable[..., Any]) -> Callable[..., Notifier]:
    def build(topic: str, **settings: Any) -> Notifier:
        return BusNotifier(factory(**settings), topic)

    return build


def _publisher(kind: str) -> Callable[..., Any]:
    def make(**settings: Any) -> Any:
        from workbench import bus

        cls = {"mqtt": bus.MqttPublisher, "redis": bus.RedisStreamPublisher, "nats": bus.NatsPublisher}[kind]
        return cls(**settings)

    return make


def _alertmanager(url: str, **settings: Any) -> Notifier:
    from workbench.alerts.amsender import AlertmanagerNotifier

    return AlertmanagerNotifier(url, **settings)


_KINDS: dict[str, Callable[..., Notifier]] = {
    "alertmanager": _alertmanager,
    "jsonl": JsonlNotifier,
    "webhook": WebhookNotifier,
    "slack": SlackNotifier,
    "email": EmailNotifier,
    "mqtt": _bus(_publisher("mqtt")),
    "redis": _bus(_publisher("redis")),
    "nats": _bus(_publisher("nats")),
}


def build_receivers(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Notifier]:
    """One notifier per receiver; errors name the receiver and the setting."""
    out: dict[str, Notifier] = {}
    for name, conf in settings.items():
        conf = dict(conf)
        kind = conf.pop("kind", None)
        if kind not in _KINDS:
            raise ConfigError(f"receiver {name!r}: kind must be one of {sorted(_KINDS)}, not {kind!r}")
        try:
            out[name] = _KINDS[kind](**conf)
        except TypeError as exc:
            raise ConfigError(f"receiver {name!r} ({kind}): {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"receiver {name!r}: {exc}") from None
    return out

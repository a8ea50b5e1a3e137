"""External event bus: publishers to MQTT, Redis Streams and NATS JetStream.

Every publisher follows one small interface, :class:`~workbench.bus.base.Publisher`:
``publish(topic, payload: bytes)`` and ``close()``; connection errors become one
:class:`~workbench.bus.base.PublishError` naming the broker, and a lost connection is
re-opened with exponential backoff (:class:`~workbench.bus.retry.Backoff`).
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Backoff": "workbench.bus.retry",
    "MqttPublisher": "workbench.bus.mqtt",
    "NatsPublisher": "workbench.bus.nats_jetstream",
    "PublishError": "workbench.bus.base",
    "Publisher": "workbench.bus.base",
    "RedisStreamPublisher": "workbench.bus.redis_streams",
    "call_with_retries": "workbench.bus.retry",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)

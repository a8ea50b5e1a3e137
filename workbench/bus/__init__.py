"""External event bus: publishers to MQTT, Redis Streams and NATS JetStream.

Every publisher follows one small interface, :class:`~workbench.bus.base.Publisher`:
``publish(topic, payload: bytes)`` and ``close()``; connection errors become one
:class:`~workbench.bus.base.PublishError` naming the broker, and a lost connection is
re-opened with exponential backoff (:class:`~workbench.bus.retry.Backoff`).
"""

from workbench.bus.retry import Backoff, call_with_retries

__all__ = ["Backoff", "call_with_retries"]

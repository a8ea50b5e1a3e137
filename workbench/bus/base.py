"""The ``Publisher`` interface every broker module implements.

``publish(topic, payload)`` sends bytes to a topic (MQTT topic, Redis stream key, NATS
subject) and returns once the broker has accepted them (MQTT QoS 1 ack, XADD reply,
JetStream publish ack); ``close()`` releases the connection. A connection problem is
retried with exponential backoff (re-connecting first); after the last try one
:class:`PublishError` names the broker, the topic and the last error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from workbench.bus.retry import Backoff, call_with_retries
from workbench.clock import Clock, SystemClock
from workbench.errors import WorkbenchError

__all__ = ["PublishError", "Publisher"]


class PublishError(WorkbenchError):
    """A broker refused or could not be reached (after every retry)."""


class Publisher(ABC):
    """Base of broker publishers: connect lazily, publish with retries, reconnect on failure.

    Parameters
    ----------
    backoff
        Retry schedule for connecting and publishing.
    clock
        Injected clock (its ``sleep`` waits between tries).
    """

    scheme = "broker"

    def __init__(self, *, backoff: Backoff | None = None, clock: Clock | None = None) -> None:
        self.backoff = backoff or Backoff(retries=5, base=0.2, cap=5.0)
        self.clock = clock or SystemClock()
        self.published = 0
        self.reconnects = 0
        self._connected = False

    @property
    @abstractmethod
    def address(self) -> str:
        """``scheme://host:port``, for messages."""

    @abstractmethod
    def _connect(self) -> None:
        """Open the connection (raise on failure)."""

    @abstractmethod
    def _send(self, topic: str, payload: bytes) -> None:
        """One publish attempt on an open connection (raise on failure)."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Drop the connection, ignoring errors of an already broken one."""

    def _retryable(self, exc: Exception) -> bool:
        return isinstance(exc, OSError | TimeoutError | ConnectionError)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` to ``topic``; re-connect and retry on connection errors."""
        if not isinstance(payload, bytes | bytearray):
            raise PublishError(f"{self.address}: payload must be bytes, not {type(payload).__name__}")

        def attempt() -> None:
            if not self._connected:
                self._connect()
                self._connected = True
            try:
                self._send(topic, bytes(payload))
            except Exception:
                self._connected = False
                self.reconnects += 1
                self._disconnect()
                raise

        try:
            call_with_retries(attempt, backoff=self.backoff, retryable=self._retryable, clock=self.clock)
        except Exception as exc:
            raise PublishError(f"{self.address}: cannot publish to {topic!r}: {type(exc).__name__}: {exc}") from exc
        self.published += 1

    def close(self) -> None:
        """Close the connection (publishing again re-opens it)."""
        if self._connected:
            self._disconnect()
            self._connected = False

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"

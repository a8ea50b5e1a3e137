"""Redis Streams publisher (redis-py): ``XADD topic MAXLEN ~ N * payload <bytes>``.

Examples
--------
>>> RedisStreamPublisher("127.0.0.1", 6379, maxlen=1000).address
'redis://127.0.0.1:6379/0'
"""

from __future__ import annotations

from typing import Any

from workbench.bus.base import Publisher
from workbench.errors import ConfigError

__all__ = ["RedisStreamPublisher"]


class RedisStreamPublisher(Publisher):
    """Append each payload to a Redis stream (the topic is the stream key), capped at ``maxlen``.

    Parameters
    ----------
    host, port, db
        The server.
    maxlen
        Approximate cap of each stream (``MAXLEN ~``), so the bus never grows unbounded.
    field
        Field name of the payload in each entry.
    timeout
        Socket timeout in seconds.
    **kwargs
        ``backoff`` and ``clock``, see :class:`~workbench.bus.base.Publisher`.
    """

    scheme = "redis"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        db: int = 0,
        maxlen: int = 100_000,
        field: str = "payload",
        timeout: float = 5.0,
        **kwargs: Any,
    ) -> None:
        if maxlen <= 0:
            raise ConfigError(f"redis publisher: maxlen must be > 0, not {maxlen}")
        super().__init__(**kwargs)
        self.host, self.port, self.db, self.maxlen, self.field, self.timeout = host, port, db, maxlen, field, timeout
        self._client: Any = None

    @property
    def address(self) -> str:  # noqa: D102
        return f"redis://{self.host}:{self.port}/{self.db}"

    def _retryable(self, exc: Exception) -> bool:  # noqa: D102
        import redis

        return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)

    def _connect(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # our own backoff decides about retries (redis-py's would hide the reconnects)
        client = redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        client.ping()
        self._client = client

    def _send(self, topic: str, payload: bytes) -> None:
        self._client.xadd(topic, {self.field: payload}, maxlen=self.maxlen, approximate=True)

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

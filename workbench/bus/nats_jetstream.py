"""NATS JetStream publisher (nats-py), run on its own asyncio loop thread.

nats-py is asyncio-only; this publisher keeps one event loop on a daemon thread and
blocks the caller until JetStream acknowledges each message (or the timeout).

Examples
--------
>>> NatsPublisher("nats://127.0.0.1:4222", stream="ALERTS", subjects=["alerts.>"]).address
'nats://127.0.0.1:4222'
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from workbench.bus.base import Publisher

__all__ = ["NatsPublisher"]


class NatsPublisher(Publisher):
    """Publish to NATS JetStream subjects.

    Parameters
    ----------
    url
        Server URL.
    stream
        A JetStream stream to create when missing (with ``subjects``); ``None``: it must exist.
    subjects
        Subjects of ``stream`` when it is created.
    max_msgs
        Cap of the created stream (oldest dropped), so the bus never grows unbounded.
    timeout
        Seconds for the connection and for each publish acknowledgement.
    **kwargs
        ``backoff`` and ``clock``, see :class:`~workbench.bus.base.Publisher`.
    """

    scheme = "nats"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str | None = None,
        subjects: Sequence[str] = (),
        max_msgs: int = 100_000,
        timeout: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.url, self.stream, self.subjects, self.max_msgs, self.timeout = (
            url,
            stream,
            list(subjects),
            max_msgs,
            timeout,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._js: Any = None

    @property
    def address(self) -> str:  # noqa: D102
        return self.url

    def _retryable(self, exc: Exception) -> bool:  # noqa: D102
        import nats.errors

        return isinstance(exc, OSError | TimeoutError | nats.errors.Error | asyncio.TimeoutError)

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="wb-nats", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout + 1)

    def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig

        async def connect() -> None:
            nc = await nats.connect(
                self.url, connect_timeout=self.timeout, allow_reconnect=False, max_reconnect_attempts=0
            )
            js = nc.jetstream(timeout=self.timeout)
            if self.stream is not None:
                try:
                    await js.stream_info(self.stream)
                except nats.js.errors.NotFoundError:
                    await js.add_stream(StreamConfig(name=self.stream, subjects=self.subjects, max_msgs=self.max_msgs))
            self._nc, self._js = nc, js

        self._run(connect())

    def _send(self, topic: str, payload: bytes) -> None:
        self._run(self._js.publish(topic, payload, timeout=self.timeout))

    def _disconnect(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):  # an already broken connection: nothing left to close
                self._run(nc.close())

    def close(self) -> None:  # noqa: D102
        super().close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop.close()
            self._loop = None

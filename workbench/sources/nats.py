"""NATS JetStream source (nats-py): a durable pull consumer, acked after the checkpoint.

The consumer uses ``AckPolicy.ALL``: acknowledging the last message of the batches
a durable checkpoint covers acknowledges every earlier one, in one publish. A
crash before it re-delivers the messages after the consumer's ack floor (``dedupe``
drops the repeats). JetStream would re-deliver the ones a killed process had fetched only
after ``ack_wait``, behind newer messages that would push the watermark past them; so on
its first connection the source restarts a consumer that has messages pending from
before at its ack floor, and the replay comes first, in stream order. nats-py is
asynchronous; the source runs its own event loop on a daemon thread and calls it from the
pipeline's threads.

Examples
--------
>>> from workbench.sources.factory import from_url
>>> src = from_url("nats://127.0.0.1:4222/metrics.>?stream=METRICS&durable=wb")
>>> src.subject, src.stream, src.durable
('metrics.>', 'METRICS', 'wb')
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any

from workbench.errors import ConfigError, SourceError
from workbench.sources.broker import BrokerSource, Message
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = ["NatsSource"]


def _transient() -> tuple[type[BaseException], ...]:
    import nats.errors as ne

    return (
        OSError,
        ConnectionError,
        ne.NoServersError,
        ne.ConnectionClosedError,
        ne.StaleConnectionError,
        ne.UnexpectedEOF,
        ne.OutboundBufferLimitError,
        ne.NoRespondersError,
    )


class NatsSource(BrokerSource):
    """Pull messages of a JetStream stream through a durable consumer.

    Parameters
    ----------
    url
        ``nats://[user:password@]host[:port]/subject?stream=…&durable=…`` (port 4222).
    stream
        The stream (default: the one whose subjects match ``subject``).
    durable
        Durable consumer name: its ack floor survives restarts (default ``workbench``). One
        pipeline per durable: on start the source may recreate it at its ack floor.
    max_ack_pending
        The consumer's limit of unacknowledged messages (a new consumer is created with it).
    ack_wait
        Seconds before the server re-delivers an unacknowledged message.
    connect_timeout
        Seconds for the first connection.
    **kwargs
        :class:`~workbench.sources.broker.BrokerSource` options.
    """

    poll_s = 0.25

    def __init__(
        self,
        url: str | ParsedUrl,
        *,
        stream: str | None = None,
        durable: str = "workbench",
        max_ack_pending: int = 20_000,
        ack_wait: float = 60.0,
        connect_timeout: float = 3.0,
        **kwargs: Any,
    ) -> None:
        u = parse_for(url, "nats")
        if not u.path:
            raise ConfigError(f"nats source {u.url!r}: no subject; use nats://host:port/subject?stream=…&durable=…")
        kwargs.setdefault("max_unacked", max(1, max_ack_pending // 2))
        kwargs.setdefault("name", "nats")
        super().__init__(u.url, **kwargs)
        self._transient = _transient()
        auth = f"{u.username}:{u.password}@" if u.username else ""
        self.host, self.port = u.host or "127.0.0.1", u.port or 4222
        self.server = f"nats://{auth}{self.host}:{self.port}"
        self.subject, self.stream, self.durable = u.path, stream, durable
        self.max_ack_pending = int(max_ack_pending)
        self.ack_wait = float(ack_wait)
        self.connect_timeout = connect_timeout
        self._resumed = False  # the first connection replays what an earlier process left unacked
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None
        self._sub: Any = None

    # -- the event loop ------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        if self._loop is None or self._loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name=f"wb-{self.name}-nats", daemon=True).start()
            self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- connection ----------------------------------------------------------------------
    def _connect(self) -> None:
        import nats
        import nats.js.errors as je
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        # nats-py retries a refused first connection for a long time: ask the socket first
        socket.create_connection((self.host, self.port), timeout=self.connect_timeout).close()

        where = f"nats://{self.host}:{self.port}"

        async def connect() -> tuple[Any, Any]:
            nc = await nats.connect(
                self.server,
                connect_timeout=max(1, int(self.connect_timeout)),
                allow_reconnect=False,
                max_reconnect_attempts=1,
                ping_interval=2,
                max_outstanding_pings=2,
                error_cb=self._on_error,
                name=f"workbench-{self.durable}",
            )
            self._nc = nc
            js = nc.jetstream()
            try:
                stream = self.stream or await js.find_stream_name_by_subject(self.subject)
                await js.stream_info(stream)
            except je.NotFoundError as exc:
                what = f"stream {self.stream!r}" if self.stream else f"no stream for subject {self.subject!r}"
                raise SourceError(f"nats source {self.url!r}: {what} not found on {where}") from exc
            except je.ServiceUnavailableError as exc:
                raise SourceError(f"nats source {self.url!r}: JetStream is not enabled on {where}") from exc
            config = ConsumerConfig(
                ack_policy=AckPolicy.ALL, max_ack_pending=self.max_ack_pending, ack_wait=self.ack_wait
            )
            if not self._resumed:
                with contextlib.suppress(je.NotFoundError):  # a new durable starts at the stream's start
                    info = await js.consumer_info(stream, self.durable)
                    if info.num_ack_pending:  # fetched by an earlier process, never acked: replay them now
                        await js.delete_consumer(stream, self.durable)
                        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                        config.opt_start_seq = info.ack_floor.stream_seq + 1
            sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=stream, config=config)
            self._resumed = True
            return nc, sub

        self._nc, self._sub = self._run(connect(), self.connect_timeout + 10)

    def _describe(self, exc: BaseException) -> str:  # noqa: D102
        if isinstance(exc, OSError | TimeoutError):
            return f"no NATS server answered at nats://{self.host}:{self.port} ({type(exc).__name__}: {exc})"
        return super()._describe(exc)

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = self._describe(exc)

    def _close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None and self._loop is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._run(nc.close(), 3)

    # -- messages ------------------------------------------------------------------------
    def _receive(self, n: int, timeout: float) -> list[Message]:
        import nats.errors as ne

        nc, sub = self._nc, self._sub
        if nc is None or not nc.is_connected:
            raise ConnectionError(f"nats connection to {self.host}:{self.port} lost")

        async def fetch() -> list[Any]:
            try:
                return await sub.fetch(batch=n, timeout=max(timeout, 0.1))
            except (TimeoutError, ne.TimeoutError):  # nothing within the timeout (not a lost link)
                return []

        msgs = self._run(fetch(), max(timeout, 0.1) + 30)  # a big batch on a loaded machine takes a while
        return [(m.data, m.reply) for m in msgs]

    def _ack(self, tokens: list[Any]) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise ConnectionError(f"nats connection to {self.host}:{self.port} lost")

        async def ack() -> None:
            await nc.publish(tokens[-1], b"+ACK")  # AckPolicy.ALL: the last acks all before it
            await nc.flush(timeout=5)

        self._run(ack(), 10)

    def health(self) -> dict[str, Any]:  # noqa: D102
        return {**super().health(), "subject": self.subject, "stream": self.stream, "durable": self.durable}

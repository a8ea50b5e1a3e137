"""``BrokerSource``: the shared machinery of live message sources.

A broker source turns messages into NDJSON lines and cuts a :class:`RawBatch` when it
holds ``max_rows`` messages or its first message has waited ``max_delay`` — whichever
comes first. It owns three things every connector needs:

* **Acks after the checkpoint.** Each batch's offset is a sequence number; the
  broker's ack tokens of the batch wait in a bounded list until the pipeline calls
  :meth:`commit` with an offset covered by a durable checkpoint, and only then are
  they acknowledged (``_ack``). A crash before that re-delivers instead of losing.
  When the unacknowledged messages reach ``max_unacked`` the batch asks the
  pipeline for a checkpoint (``meta["checkpoint"]``), so a broker that stops
  delivering until it sees acks (MQTT's in-flight window, JetStream's
  ``max_ack_pending``) never stalls.
* **Reconnect with backoff.** The first connection failing is a configuration
  error and raises one :class:`~workbench.errors.SourceError` naming the URL and
  the cause. A connection lost later is retried with exponential backoff until
  the source is stopped, while :meth:`health` says ``connected: False``.
* **Idle ticks.** While no message arrives and batches await their ack, an empty
  batch (``meta["tick"]``) every ``tick_s`` lets the pipeline take a due checkpoint,
  so held sink rows and acks never wait for the next message.
* **Health.** ``connected``, ``last_message_age_s``, ``reconnects``, ``unacked``
  and the last error, for ``Pipeline.health()`` and the pipeline view.
* **Replay within a run.** With ``retain`` set (a pipeline on a cluster sets it), the
  batches not yet acknowledged are kept — bounded by ``max_unacked`` — and
  :meth:`rewind` delivers them again, in order, before anything new: after a lost
  worker the pipeline restores the newest checkpoint and replays what came after it
  without ending the run. Messages received but not yet cut into a batch when the
  source stops are kept for its next run in this process, never dropped.

Subclasses implement ``_connect`` / ``_close`` / ``_receive`` / ``_ack`` and list
their transient (retryable) exceptions in ``_transient``.

Examples
--------
>>> lines = [b'{"a": 1}', b'{"a":\\n 2}']
>>> joined_lines(lines)
b'{"a": 1}\\n{"a":  2}\\n'
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from workbench.clock import Clock
from workbench.config import parse_duration
from workbench.errors import ConfigError, SourceError
from workbench.sources.base import RawBatch, Source
from workbench.sources.urls import masked

__all__ = ["BrokerSource", "Message", "joined_lines"]

log = logging.getLogger(__name__)

#: One received message: its payload and what the broker needs to acknowledge it.
Message = tuple[bytes, Any]


def joined_lines(payloads: Sequence[bytes]) -> bytes:
    """Payloads as NDJSON: one line each (newlines inside a payload become spaces).

    A JSON document may be pretty-printed; its line breaks are insignificant
    whitespace (a raw newline inside a JSON string is invalid anyway), so joining
    keeps one record per message.
    """
    body = b"\n".join(payloads)
    if body.count(b"\n") != len(payloads) - 1 or b"\r" in body:
        body = b"\n".join(p.replace(b"\r", b" ").replace(b"\n", b" ") for p in payloads)
    return body + b"\n" if payloads else b""


class BrokerSource(Source):
    """Base class of broker sources (MQTT, Redis Streams, NATS JetStream, Kafka, HTTP polling).

    Parameters
    ----------
    url
        The source URL (shown in every message and in health).
    max_rows
        Messages per batch at most.
    max_delay
        Longest the first message of a batch waits before the batch is cut.
    max_unacked
        Unacknowledged messages at which a batch asks the pipeline to checkpoint.
    backoff
        ``(first, longest)`` wait between reconnection attempts, in seconds.
    name, clock
        As for :class:`~workbench.sources.base.Source`.
    """

    #: Exceptions meaning "the connection is gone; retry" (set by subclasses).
    _transient: tuple[type[BaseException], ...] = (OSError,)
    #: Ask for a checkpoint whenever the stream goes quiet with messages unacknowledged
    #: (for brokers whose in-flight window is small and unknown, e.g. MQTT).
    checkpoint_when_idle = False
    #: How long one ``_receive`` call may block, seconds.
    poll_s = 0.05
    #: While idle with batches not yet acknowledged, an empty tick batch this often (the
    #: pipeline takes a due checkpoint on it, so sinks and acks never wait for traffic).
    tick_s = 0.25

    def __init__(
        self,
        url: str,
        *,
        max_rows: int = 10_000,
        max_delay: str | float | timedelta = 0.5,
        max_unacked: int = 100_000,
        backoff: tuple[float, float] = (0.2, 5.0),
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name or url.split("://", 1)[0], clock=clock)
        if max_rows <= 0:
            raise ConfigError(f"source {url!r}: max_rows must be > 0, not {max_rows}")
        if max_unacked <= 0:
            raise ConfigError(f"source {url!r}: max_unacked must be > 0, not {max_unacked}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ConfigError(f"source {url!r}: backoff must be 0 < first <= longest, not {backoff}")
        self.url = masked(url)  # shown in messages and health: never a password
        self.max_rows = max_rows
        self.max_delay_s = parse_duration(max_delay, what="max_delay") / 1000
        self.max_unacked = max_unacked
        self.backoff = backoff
        self.offset = 0
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_message_at: float | None = None  # clock.monotonic() of the newest message
        self.disconnected_at: float | None = None
        self.acked = 0
        self._ever_connected = False
        self._pending: deque[tuple[int, list[Any], RawBatch | None]] = deque()  # (offset, ack tokens, batch)
        #: keep each unacknowledged batch for :meth:`rewind` (bounded by ``max_unacked``)
        self.retain = False
        self._replay: deque[RawBatch] = deque()
        self._carry: tuple[list[bytes], list[Any]] | None = None  # received, not yet cut, when stopped
        self._unacked = 0
        self._ack_lock = threading.Lock()
        self._reading = False

    # -- what subclasses implement -------------------------------------------------------
    @abstractmethod
    def _connect(self) -> None:
        """Open the connection (and subscription); raise on failure."""

    @abstractmethod
    def _close(self) -> None:
        """Close the connection; must not raise."""

    @abstractmethod
    def _receive(self, n: int, timeout: float) -> list[Message]:
        """Up to ``n`` messages, waiting at most ``timeout`` s for the first; ``[]`` when none."""

    @abstractmethod
    def _ack(self, tokens: list[Any]) -> None:
        """Acknowledge these messages to the broker (tokens in delivery order)."""

    def _describe(self, exc: BaseException) -> str:
        """The cause of a failure, for messages."""
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    # -- the reading loop ----------------------------------------------------------------
    def _open(self) -> None:
        """Connect; the first failure ever is a configuration error."""
        try:
            self._connect()
        except SourceError:
            self._close()
            raise
        except self._transient as exc:
            self._close()
            if not self._ever_connected:
                raise SourceError(f"source {self.url!r}: cannot connect: {self._describe(exc)}") from exc
            raise
        self.connected, self._ever_connected = True, True
        self.disconnected_at = None

    def _lost(self, exc: BaseException) -> None:
        if self.connected:
            log.warning("source %r: connection lost (%s); reconnecting", self.url, self._describe(exc))
        self.connected = False
        self.last_error = self._describe(exc)
        if self.disconnected_at is None:
            self.disconnected_at = self.clock.monotonic()
        self._close()

    def _reconnect(self) -> None:
        """Retry with exponential backoff until connected or stopped."""
        wait = self.backoff[0]
        while not self.stopped:
            self._sleep(wait)
            if self.stopped:
                return
            self.reconnects += 1
            try:
                self._open()
                log.info("source %r: reconnected", self.url)
                return
            except self._transient as exc:
                self.last_error = self._describe(exc)
                wait = min(wait * 2, self.backoff[1])

    def _sleep(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while not self.stopped and (left := end - self.clock.monotonic()) > 0:
            self.clock.sleep(min(left, 0.1))

    def _batches(self) -> Iterator[RawBatch]:
        if not self.connected:
            self._open()
        buf: list[bytes] = []
        tokens: list[Any] = []
        first_at = last_tick = 0.0
        self._reading = True
        try:
            while self._replay and not self.stopped:  # what a restored checkpoint does not cover, again
                yield self._replay.popleft()
            if self._carry is not None:
                (buf, tokens), self._carry = self._carry, None
                first_at = self.clock.monotonic()
            while not self.stopped:
                timeout = self.poll_s
                if buf:
                    timeout = max(0.0, min(timeout, first_at + self.max_delay_s - self.clock.monotonic()))
                try:
                    got = self._receive(self.max_rows - len(buf), timeout) if self.connected else []
                except self._transient as exc:
                    self._lost(exc)
                    if buf:  # what was received is processed; its acks fail and it is re-delivered
                        batch = self._cut(buf, tokens, checkpoint=False)
                        buf, tokens = [], []  # cut: a stop while it is out is not a carry
                        yield batch
                    self._reconnect()
                    continue
                now = self.clock.monotonic()
                if got:
                    if not buf:
                        first_at = now
                    self.last_message_at = now
                    buf.extend(m[0] for m in got)
                    tokens.extend(m[1] for m in got)
                if not buf:
                    if self._pending and now - last_tick >= self.tick_s:
                        last_tick = now  # batches await a checkpoint: let the pipeline take it while idle
                        yield RawBatch(data=b"", offset=self.offset, rows=0, meta={"tick": True})
                    continue
                full = len(buf) >= self.max_rows
                unacked = self._unacked + len(buf) >= self.max_unacked
                idle = not got and self.checkpoint_when_idle
                if full or unacked or idle or now - first_at >= self.max_delay_s:
                    batch = self._cut(buf, tokens, checkpoint=unacked or idle)
                    buf, tokens = [], []  # cut: a stop while it is out is not a carry
                    yield batch
        finally:
            if buf:  # stopped between batches: the next run in this process starts with them
                self._carry = (buf, tokens)
            with self._ack_lock:  # decided together with commit(): never close under an ack
                self._reading = False
                if self.stopped and not self._pending:  # else the final commit acks, then closes
                    self._shut()

    def _shut(self) -> None:
        self.connected = False
        self._close()

    def _cut(self, buf: list[bytes], tokens: list[Any], *, checkpoint: bool) -> RawBatch:
        self.offset += 1
        meta = {"checkpoint": True} if checkpoint else {}
        batch = RawBatch(data=joined_lines(buf), offset=self.offset, rows=len(buf), meta=meta)
        with self._ack_lock:
            self._pending.append((self.offset, tokens, batch if self.retain else None))
            self._unacked += len(tokens)
        return batch

    def rewind(self) -> int | None:
        """Deliver every batch not yet acknowledged again, in order, before anything new.

        For a pipeline that restored its newest checkpoint within the run (a lost
        worker): the batches after it are exactly those not acknowledged, since acks
        follow checkpoints. Returns the messages to be re-delivered, or ``None`` when
        the batches were not kept (``retain`` off): only a new run can replay then.
        """
        with self._ack_lock:
            if any(batch is None for _, _, batch in self._pending):
                return None
            self._replay = deque(batch for _, _, batch in self._pending if batch is not None)
            return sum(b.rows for b in self._replay)

    # -- acks ----------------------------------------------------------------------------
    def commit(self, offset: Any) -> None:
        """Acknowledge every message of the batches up to ``offset`` (a durable checkpoint covers them)."""
        if not isinstance(offset, int):
            return
        with self._ack_lock:
            done: list[Any] = []
            while self._pending and self._pending[0][0] <= offset:
                done.extend(self._pending.popleft()[1])
            self._unacked -= len(done)
            if done:
                try:
                    self._ack(done)
                    self.acked += len(done)
                except self._transient as exc:  # the broker re-delivers them; dedupe drops the repeats
                    self.last_error = f"ack failed: {self._describe(exc)}"
                    log.warning("source %r: %d acks failed (%s); they will be re-delivered", self.url, len(done), exc)
            if self.stopped and not self._reading and not self._pending and self.connected:
                self._shut()

    def seek(self, offset: Any) -> None:
        """Brokers keep the position (unacknowledged messages are re-delivered); keep numbering after it."""
        if isinstance(offset, int) and offset > self.offset:
            self.offset = offset

    # -- health --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Connection state, last message age (s), reconnects, unacknowledged messages, last error."""
        now = self.clock.monotonic()
        age = None if self.last_message_at is None else max(0.0, now - self.last_message_at)
        down = None if self.disconnected_at is None else max(0.0, now - self.disconnected_at)
        return {
            "url": self.url,
            "connected": self.connected,
            "down_s": down,
            "last_message_age_s": age,
            "reconnects": self.reconnects,
            "unacked": self._unacked,
            "acked": self.acked,
            "error": self.last_error,
        }

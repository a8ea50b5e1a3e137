"""Redis Streams source (redis-py): a consumer group, XACK only after the checkpoint.

Each entry's payload is its ``data`` field (``field=`` to change; an entry without
it becomes the JSON object of its fields, which are all text in Redis: a field the
pipeline's schema declares a number is sent as one when it reads as one, so flat
entries such as ``XADD s * host h1 cpu 12.5`` decode like JSON records). On start — and after every reconnect —
the consumer first re-reads its own pending entries (delivered before a crash but
never acknowledged), claims entries other consumers left pending longer than
``claim_idle``, then reads new ones (``>``). Entries are acknowledged (XACK) only
once a checkpoint covering their batch is durable: a crash re-delivers rather than
loses. A group that vanished (a Redis restarted without persistence) is created
again.

Examples
--------
>>> from workbench.sources.factory import from_url
>>> src = from_url("redis://127.0.0.1:6379/events?group=wb&consumer=c1")
>>> src.stream, src.group, src.consumer, src.db
('events', 'wb', 'c1', 0)
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from workbench.errors import ConfigError, SourceError
from workbench.sources.broker import BrokerSource, Message
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = ["RedisStreamSource"]


def _number(text: str, kind: str) -> Any:
    """``text`` as an int or float when it reads as one (else unchanged: the decoder then says why).

    Examples
    --------
    >>> _number("12.5", "float"), _number("200", "int"), _number("2.5", "int"), _number("high", "float")
    (12.5, 200, 2.5, 'high')
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and abs(value) != float("inf") else text


def _transient() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisStreamSource(BrokerSource):
    """Read a Redis stream through a consumer group.

    Parameters
    ----------
    url
        ``redis://[:password@]host[:port]/stream?group=…`` (port 6379 by default).
    group
        Consumer group (created at ``start_id`` when missing).
    consumer
        Consumer name within the group; keep it fixed so a restart re-reads its
        pending entries (default ``workbench``).
    db
        Database number.
    field
        Entry field holding the JSON payload.
    create
        Create the stream when it does not exist (otherwise that is a configuration error).
    start_id
        Where a new group starts: ``"0"`` (the whole stream) or ``"$"`` (only new entries).
    claim_idle
        Seconds after which another consumer's pending entries are claimed (0: never).
    **kwargs
        :class:`~workbench.sources.broker.BrokerSource` options.
    """

    def __init__(
        self,
        url: str | ParsedUrl,
        *,
        group: str | None = None,
        consumer: str = "workbench",
        db: int = 0,
        field: str = "data",
        create: bool | str = False,
        start_id: str = "0",
        claim_idle: float = 60.0,
        **kwargs: Any,
    ) -> None:
        u = parse_for(url, "redis")
        if not u.path:
            raise ConfigError(f"redis source {u.url!r}: no stream; use redis://host:port/stream?group=…")
        if not group:
            raise ConfigError(f"redis source {u.url!r}: a consumer group is required (?group=…)")
        kwargs.setdefault("name", "redis")
        super().__init__(u.url, **kwargs)
        self._transient = _transient()
        self.host, self.port = u.host or "127.0.0.1", u.port or 6379
        self.password = u.password
        self.stream, self.group, self.consumer = u.path, group, consumer
        self.db, self.field = int(db), field.encode()
        self.create = create in (True, "1", "true", "yes")
        self.start_id = start_id
        self.claim_ms = int(float(claim_idle) * 1000)
        self._r: Any = None
        self._backlog: str | None = "0"  # where re-reading our pending entries stands; None: read new (">")

    def _connect(self) -> None:
        import redis

        r = redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            password=self.password,
            socket_connect_timeout=3,
            socket_timeout=10,
        )
        try:
            r.ping()
        except redis.AuthenticationError as exc:
            raise SourceError(f"redis source {self.url!r}: authentication failed: {exc}") from exc
        except redis.ResponseError as exc:
            raise SourceError(f"redis source {self.url!r}: the server refused: {exc}") from exc
        self._r = r
        if not self.create and not r.exists(self.stream) and not self._ever_connected:
            raise SourceError(
                f"redis source {self.url!r}: stream {self.stream!r} does not exist in db {self.db} "
                "(pass create=true to create it)"
            )
        self._ensure_group()
        self._backlog = "0"

    def _ensure_group(self) -> None:
        import redis

        try:
            self._r.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise SourceError(f"redis source {self.url!r}: cannot create group {self.group!r}: {exc}") from exc

    def _close(self) -> None:
        r, self._r = self._r, None
        if r is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                r.close()

    def _receive(self, n: int, timeout: float) -> list[Message]:
        import redis

        try:
            if self._backlog is not None:
                got = self._read_backlog(n)
                if got:
                    return got
                self._backlog = None
            reply = self._r.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=n, block=max(1, int(timeout * 1000))
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise SourceError(f"redis source {self.url!r}: read failed: {exc}") from exc
            self._ensure_group()  # the server lost the group (restarted without persistence)
            return []
        return [self._message(i, f) for _, entries in reply or [] for i, f in entries if f is not None]

    def _read_backlog(self, n: int) -> list[Message]:
        reply = self._r.xreadgroup(self.group, self.consumer, {self.stream: self._backlog}, count=n)
        entries = [(i, f) for _, es in reply or [] for i, f in es if f]
        if entries:
            self._backlog = entries[-1][0]
        elif self.claim_ms:
            claimed = self._r.xautoclaim(self.stream, self.group, self.consumer, self.claim_ms, "0-0", count=n)
            entries = [(i, f) for i, f in claimed[1] if f]
        return [self._message(i, f) for i, f in entries]

    def _message(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
        payload = fields.get(self.field)
        if payload is None:
            whole: dict[str, Any] = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
            numbers = self._numbers()
            for name, kind in numbers.items():
                text = whole.get(name)
                if text is not None:
                    whole[name] = _number(text, kind)
            if self.schema is not None and self.schema.extra == "keep-numeric":
                declared = {f.wire_name for f in self.schema.fields}
                for name, text in whole.items():  # undeclared fields kept as metrics when they read as numbers
                    if name not in declared:
                        whole[name] = _number(text, "float")
            return json.dumps(whole).encode(), entry_id
        return payload, entry_id

    def _numbers(self) -> dict[str, str]:
        """Input field name → kind, for the numeric fields (and an epoch time) of the pipeline's schema."""
        schema = self.schema
        if schema is None:
            return {}
        numeric = {f.wire_name: f.kind for f in schema.fields if f.kind in ("float", "int")}
        if schema.time_format.startswith("epoch") or schema.time_format == "auto":
            numeric[schema.field(schema.time).wire_name] = "int"  # epoch digits; ISO text stays text
        return numeric

    def _ack(self, tokens: list[Any]) -> None:
        for i in range(0, len(tokens), 10_000):
            self._r_for_ack().xack(self.stream, self.group, *tokens[i : i + 10_000])

    def _r_for_ack(self) -> Any:
        """A client for acks (the pipeline thread; redis-py's pool is thread-safe)."""
        r = self._r
        if r is None:
            raise ConnectionError("not connected")
        return r

    def health(self) -> dict[str, Any]:  # noqa: D102
        return {**super().health(), "stream": self.stream, "group": self.group}

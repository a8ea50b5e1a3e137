"""Kafka source (confluent-kafka): a consumer group whose offsets are stored only after the checkpoint.

The consumer runs with ``enable.auto.offset.store=false``: librdkafka commits only
offsets the application stored, and this source stores (and synchronously
commits) a partition's next offset only once a checkpoint covering the batch is
durable. A crash re-delivers from the last committed offsets (``dedupe`` drops
the repeats). An unknown topic, or a bootstrap server that never answers, is a
configuration error with one message.

Examples
--------
>>> from workbench.sources.factory import from_url
>>> src = from_url("kafka://127.0.0.1:9092/events?group=wb")
>>> src.topic, src.group, src.config["enable.auto.offset.store"]
('events', 'wb', False)
"""

from __future__ import annotations

from typing import Any, ClassVar

from workbench.errors import ConfigError, SourceError
from workbench.sources.broker import BrokerSource, Message
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = ["KafkaSource"]


class KafkaTransportError(ConnectionError):
    """All brokers are down (librdkafka's ``_ALL_BROKERS_DOWN``/``_TRANSPORT``)."""


class KafkaSource(BrokerSource):
    """Consume a Kafka topic in a consumer group.

    Parameters
    ----------
    url
        ``kafka://host:port[,host:port…]/topic?group=…``.
    group
        Consumer group id (required).
    offset_reset
        Where a group without committed offsets starts: ``earliest`` or ``latest``.
    config
        More librdkafka settings (e.g. ``security.protocol``, ``sasl.*``); keyword
        arguments with a dot in their name (``session.timeout.ms=6000`` in the URL's
        query) are librdkafka settings too.
    connect_timeout
        Seconds to wait for the topic's metadata at start.
    **kwargs
        :class:`~workbench.sources.broker.BrokerSource` options.
    """

    _transient = (KafkaTransportError, OSError)
    #: ``from_url`` passes query options with a dot in their name on: librdkafka settings
    dotted_options: ClassVar[bool] = True

    def __init__(
        self,
        url: str | ParsedUrl,
        *,
        group: str | None = None,
        offset_reset: str = "earliest",
        config: dict[str, Any] | None = None,
        connect_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        u = parse_for(url, "kafka")
        if not u.path:
            raise ConfigError(f"kafka source {u.url!r}: no topic; use kafka://host:port/topic?group=…")
        if not group:
            raise ConfigError(f"kafka source {u.url!r}: a consumer group is required (?group=…)")
        if offset_reset not in ("earliest", "latest"):
            raise ConfigError(f"kafka source {u.url!r}: offset_reset must be earliest or latest, not {offset_reset!r}")
        dotted = {k: kwargs.pop(k) for k in [k for k in kwargs if "." in k]}
        kwargs.setdefault("name", "kafka")
        super().__init__(u.url, **kwargs)
        bootstrap = u.url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        self.topic, self.group = u.path, group
        self.connect_timeout = connect_timeout
        self.config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,  # commits what was stored (only after checkpoints)
            "auto.offset.reset": offset_reset,
            "enable.partition.eof": False,
            **dotted,
            **(config or {}),
        }
        self._consumer: Any = None

    def _connect(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        errors: list[Any] = []
        consumer = Consumer({**self.config, "error_cb": errors.append})
        self._consumer = consumer
        try:
            meta = consumer.list_topics(self.topic, timeout=self.connect_timeout)
        except KafkaException as exc:
            raise KafkaTransportError(f"no Kafka broker answered at {self.config['bootstrap.servers']}: {exc}") from exc
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None:
            why = topic.error.str() if topic is not None and topic.error is not None else "not found"
            raise SourceError(f"kafka source {self.url!r}: topic {self.topic!r}: {why}")
        consumer.subscribe([self.topic])

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()  # commits the offsets stored so far
            except Exception:  # noqa: BLE001 - closing a broken connection
                return

    def _receive(self, n: int, timeout: float) -> list[Message]:
        from confluent_kafka import KafkaError

        msgs = self._consumer.consume(num_messages=n, timeout=timeout)
        out: list[Message] = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append((m.value() or b"", (m.topic(), m.partition(), m.offset())))
            elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
                raise KafkaTransportError(err.str())
            elif err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise SourceError(f"kafka source {self.url!r}: topic {self.topic!r}: {err.str()}")
        return out

    def _ack(self, tokens: list[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        consumer = self._consumer
        if consumer is None:
            raise KafkaTransportError("not connected")
        nxt: dict[tuple[str, int], int] = {}
        for topic, partition, offset in tokens:
            nxt[(topic, partition)] = max(nxt.get((topic, partition), 0), offset + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
        try:
            consumer.store_offsets(offsets=offsets)
            consumer.commit(offsets=offsets, asynchronous=False)
        except (KafkaException, RuntimeError) as exc:  # a rebalance took the partition, or closed: re-delivered
            raise KafkaTransportError(str(exc)) from exc

    def health(self) -> dict[str, Any]:  # noqa: D102
        return {**super().health(), "topic": self.topic, "group": self.group}

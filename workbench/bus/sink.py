"""Publish a pipeline output to a broker: one JSON message per row, at every checkpoint.

A :class:`BusSink` holds the frames of one output like the lake and PostgreSQL sinks do,
and publishes them when the pipeline commits an epoch — *before* the checkpoint that
covers them is written. Delivery is therefore **at least once**: a crash after the
publish and before the checkpoint replays that epoch and publishes its rows again (at
most one checkpoint interval of repeats); nothing is lost, because a row is never
covered by a checkpoint before its publish was acknowledged by the broker (MQTT QoS 1
PUBACK, Redis XADD reply, JetStream publish ack). Subscribers that must not see repeats
de-duplicate on the row's key (``event_id``, or entity + ``window_start``).

Held rows are bounded: past ``max_held`` rows they are published at once (still at least
once). Rows are serialised in bulk with polars (``write_ndjson``); times are ISO-8601.

Examples
--------
>>> import polars as pl
>>> from streamz import Stream
>>> class Recorder:  # any Publisher: publish(topic, payload) and close()
...     def __init__(self): self.sent = []
...     def publish(self, topic, payload): self.sent.append((topic, payload))
...     def close(self): pass
>>> source, rec = Stream(), Recorder()
>>> sink = BusSink(source, rec, "windows", topic="wb/{output}")
>>> source.emit(pl.DataFrame({"host": ["a", "b"], "count": [3, 4]}))
>>> rec.sent, sink.held_rows
([], 2)
>>> sink.commit(1)
>>> rec.sent
[('wb/windows', b'{"host":"a","count":3}'), ('wb/windows', b'{"host":"b","count":4}')]
"""

from __future__ import annotations

from typing import Any, Protocol

from streamz import Stream

from workbench.errors import ConfigError
from workbench.storage.held import HeldSink

__all__ = ["BusSink"]


class _Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> None: ...  # noqa: D102

    def close(self) -> None: ...  # noqa: D102


class BusSink(HeldSink):
    """Hold an output's frames and publish their rows, one message each, at every commit.

    Parameters
    ----------
    upstream
        The output stream.
    publisher
        A :class:`~workbench.bus.base.Publisher` (MQTT, Redis Streams, NATS JetStream).
    output
        The output's name (for ``{output}`` in ``topic`` and for messages).
    topic
        Topic, stream key or subject; ``{output}`` is replaced by the output's name.
    max_held
        Rows held before they are published without waiting for the commit.
    """

    def __init__(
        self, upstream: Stream, publisher: _Publisher, output: str, *, topic: str = "{output}", max_held: int = 100_000
    ) -> None:
        if max_held <= 0:
            raise ConfigError(f"bus sink {output!r}: max_held must be > 0, not {max_held}")
        super().__init__(upstream, stream_name=f"bus:{output}")
        self.publisher = publisher
        self.output = output
        self.topic = topic.format(output=output)
        self.max_held = max_held
        self.rows_published = 0

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> None:
        """Hold a frame; publish at once when more than ``max_held`` rows wait."""
        super().update(x, who, metadata)
        if self.held_rows > self.max_held:
            self._publish()

    def _publish(self) -> None:
        for frame in self._held:
            lines = frame.write_ndjson().encode().split(b"\n")
            for line in lines:
                if line:
                    self.publisher.publish(self.topic, line)
            self.rows_published += frame.height
        self.forget()

    def commit(self, epoch: int) -> None:
        """Publish every held row (``epoch`` is the checkpoint's); raises the publisher's error."""
        self._publish()

    def close(self) -> None:
        """Close the publisher."""
        self.publisher.close()

"""A broker source replays its unacknowledged batches within a run, and never drops what it received.

A scripted broker (no server): what the pipeline relies on when a worker is lost on a
cluster (``tests/test_cluster_brokers.py`` does it with real Redis and NATS).
"""

from __future__ import annotations

import time
from typing import Any

from workbench.sources.broker import BrokerSource, Message


class Scripted(BrokerSource):
    """Delivers the queued payloads; records what is acknowledged."""

    def __init__(self, payloads: list[bytes], **kwargs: Any) -> None:
        super().__init__("scripted://test", **kwargs)
        self.queue = [(p, i) for i, p in enumerate(payloads)]
        self.acked_tokens: list[Any] = []
        self.on_receive: Any = None
        self.until = time.monotonic() + 20  # a test that would wait forever fails instead

    def _connect(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _receive(self, n: int, timeout: float) -> list[Message]:
        if time.monotonic() > self.until:
            self.stop()
        got, self.queue = self.queue[:n], self.queue[n:]
        if self.on_receive is not None:
            self.on_receive(got)
        return got

    def _ack(self, tokens: list[Any]) -> None:
        self.acked_tokens.extend(tokens)


def _take(source: BrokerSource, n: int) -> list[Any]:
    out = []
    for batch in source.batches():
        if batch.meta.get("tick"):
            continue
        out.append(batch)
        if len(out) == n:
            source.stop()
    return out


def test_rewind_delivers_the_unacknowledged_batches_again_in_order_then_the_new_ones():
    src = Scripted([f'{{"i": {i}}}'.encode() for i in range(10)], max_rows=2, max_delay=0.01)
    src.retain = True
    first = _take(src, 3)
    assert [b.offset for b in first] == [1, 2, 3]
    src.commit(1)  # a checkpoint covers the first batch: acknowledged, not kept
    assert src.acked_tokens == [0, 1]
    assert src.rewind() == 4  # batches 2 and 3: four messages
    src.start()
    again = _take(src, 4)
    assert [(b.offset, b.data) for b in again[:2]] == [(b.offset, b.data) for b in first[1:]]
    assert [b.offset for b in again[2:]] == [4, 5] and again[2].data == b'{"i": 6}\n{"i": 7}\n'
    src.commit(5)
    assert src.acked_tokens == list(range(10))


def test_without_retain_there_is_nothing_to_rewind():
    src = Scripted([b"{}"] * 4, max_rows=2, max_delay=0.01)
    _take(src, 1)
    assert src.rewind() is None


def test_messages_received_when_the_source_stops_start_its_next_run():
    src = Scripted([b'{"i": 0}', b'{"i": 1}', b'{"i": 2}'], max_rows=10, max_delay=60)
    src.on_receive = lambda got: src.stop() if got else None  # stopped before the batch is cut
    assert list(src.batches()) == []
    src.on_receive = None
    src.max_delay_s = 0.01
    src.start()
    [batch] = _take(src, 1)
    assert batch.data == b'{"i": 0}\n{"i": 1}\n{"i": 2}\n' and batch.rows == 3

"""Read-ahead: raw batches decoded (and validated) on worker threads before the graph needs them.

The leading ``decode`` (and a ``validate`` right below it) are stateless, so running
them ahead on worker threads changes nothing but speed: polars and numpy release the
GIL, so decoding uses a second core while earlier batches run through the rest of the
graph in order. The pipeline records the offset of the last batch *processed*, never
of one merely read ahead.

While a live source is idle the pipeline thread wakes every 0.2 s and calls ``idle``
(a cluster's pipeline checks there whether a worker left, and recovers at once).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamz import Stream

from workbench.operators.nodes import decode, validate
from workbench.sources.base import Source

__all__ = ["preparer", "read_ahead"]

log = logging.getLogger(__name__)

Prepare = Callable[[Any], dict[str, Any]]


def preparer(head: Stream, *, name: str = "pipeline") -> Prepare | None:
    """The work that may run ahead of the graph below ``head``, or ``None``.

    Returns a function of a raw batch giving ``{node name: (result, seconds)}`` for a
    leading ``decode`` node and a ``validate`` node directly below it.
    """
    firsts = [d for d in head.downstreams if isinstance(d, decode)]
    if len(firsts) != 1:
        return None
    dec = firsts[0]
    nexts = [d for d in dec.downstreams if isinstance(d, validate)]
    val = nexts[0] if len(nexts) == 1 and len(dec.downstreams) == 1 else None

    def prepare(batch: Any) -> dict[str, Any]:
        # A failure here is left to the node itself: it redoes the work on the
        # pipeline thread, where its error policy applies (never a dead run).
        out: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            decoded = dec.prepare(batch)
            t1 = time.perf_counter()
            out[dec.name] = (decoded, t1 - t0)
            if val is not None and decoded is not None:
                out[val.name] = (val.prepare(decoded.frame, decoded.raw), time.perf_counter() - t1)
        except Exception:
            log.debug("pipeline %r: read-ahead failed; the node will retry", name, exc_info=True)
        return out

    return prepare


def _prepared(batch: Any, prepared: Any) -> Any:
    batch.meta["prepared"] = prepared
    return batch


def read_ahead(
    source: Source,
    prepare: Prepare,
    prefetch: int,
    *,
    name: str = "pipeline",
    idle: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """Raw batches of ``source`` in order, each with ``meta["prepared"]`` computed ahead.

    A bulk source (a file) is read on this thread; a live source gets a reader thread,
    so no batch waits for the next one to arrive, and ``idle()`` is called on this
    thread whenever no batch came for 0.2 s (what it raises ends the iteration).
    """
    if source.bulk:
        yield from _inline(source, prepare, prefetch, name)
    else:
        yield from _threaded(source, prepare, prefetch, name, idle)


def _inline(source: Source, prepare: Prepare, prefetch: int, name: str) -> Iterator[Any]:
    with ThreadPoolExecutor(prefetch, thread_name_prefix=f"wb-{name}-decode") as pool:
        ahead: deque = deque()
        try:
            for batch in source.batches():
                ahead.append((batch, pool.submit(prepare, batch)))
                if len(ahead) > prefetch:
                    first, fut = ahead.popleft()
                    yield _prepared(first, fut.result())
            while ahead:
                first, fut = ahead.popleft()
                yield _prepared(first, fut.result())
        finally:
            for _, fut in ahead:
                fut.cancel()


def _threaded(
    source: Source, prepare: Prepare, prefetch: int, name: str, idle: Callable[[], None] | None
) -> Iterator[Any]:
    ahead: queue.Queue = queue.Queue(maxsize=prefetch + 2)
    halt = threading.Event()
    end = object()
    pool = ThreadPoolExecutor(prefetch, thread_name_prefix=f"wb-{name}-decode")

    def read() -> None:
        try:
            for batch in source.batches():
                ahead.put((batch, pool.submit(prepare, batch)))
                if halt.is_set():
                    break
        except BaseException as exc:  # handed to the pipeline thread, which raises it
            ahead.put((end, exc))
            return
        ahead.put((end, None))

    reader = threading.Thread(target=read, name=f"wb-{name}-read", daemon=True)
    reader.start()
    try:
        while True:
            try:
                batch, item = ahead.get(timeout=0.2)
            except queue.Empty:  # back to the interpreter now and then: a signal's handler (SIGINT,
                if idle is not None:  # SIGTERM → stop) runs only there, and other threads may take the signal
                    idle()
                continue
            if batch is end:
                if item is not None:
                    raise item
                return
            yield _prepared(batch, item.result())
    finally:
        halt.set()
        if reader.is_alive():
            source.stop()  # a partial run: unblock a source waiting for data
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.05)  # let a blocked put through
        pool.shutdown(wait=True, cancel_futures=True)

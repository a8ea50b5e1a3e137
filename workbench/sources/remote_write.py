"""Prometheus remote-write receiver: Prometheus pushes its samples into ``prom_samples`` events.

``remote-write://127.0.0.1:9201/api/v1/write`` listens on that address and path for
Prometheus' remote-write 1.0 protocol (a protobuf ``WriteRequest`` compressed with
snappy's block format). Each sample becomes one ``prom_samples`` row, the shape of the
scrape source's rows: ``metric`` (``__name__``), ``labels`` (every other label, sorted,
``k="v"`` joined by commas), ``series`` (``metric{labels}``, Prometheus' own notation of
the series), ``instance`` (its ``instance`` label), ``value`` and ``ts`` (the sample's
own timestamp, ms), and for a counter (a name ending ``_total``, ``_count``, ``_sum`` or
``_bucket``: remote write 1.0 carries no types) ``rate``, the per-second increase since
the series' previous sample, as the scrape source gives it; ``event_id`` is a digest of
the series and ``|ts``, so a request Prometheus sends again is dropped by dedupe.

What Prometheus is answered, so that it retries what it should and drops what it should:

======================================  =======  ==========================================
the request                             status   Prometheus
======================================  =======  ==========================================
accepted and durably checkpointed       204      done
no/unknown bearer token (when one set)  401      drops it (4xx)
no ``Content-Length``                   411      drops it
body over ``max_body`` bytes, or the    413      drops it; counted as a dead letter
snappy header announces more than                (``too_large``); the body is neither read
``max_decoded`` bytes                            further nor decompressed
not snappy / not a ``WriteRequest``     400      drops it; dead letter ``bad_snappy`` /
                                                 ``bad_protobuf``
``max_pending`` requests already wait   503      retries later (backpressure)
not checkpointed within ``ack_timeout``  503      retries (dedupe drops what arrived twice)
======================================  =======  ==========================================

A request is answered 204 only once a checkpoint covering it is durable (the pipeline
calls :meth:`RemoteWriteSource.commit`), so a crash of Workbench never loses what
Prometheus was told is stored: it sends again. A pipeline without checkpoints commits
each batch once processed.

Stale markers (the NaN with bits ``0x7ff0000000000002`` that Prometheus writes when a
series disappears) are not values: they are left out of the rows, counted
(``stale_markers`` in :meth:`~RemoteWriteSource.health`) and the series is listed in
:attr:`RemoteWriteSource.stale` (bounded) until a sample of it arrives again. An
ordinary NaN sample is a value and passes.

The bearer token comes from the environment variable named by ``token_env``
(default ``WORKBENCH_REMOTE_WRITE_TOKEN``) or from ``token_file``; it is never part of the
URL, and never logged.

Examples
--------
>>> body = encode_write_request([({"__name__": "up", "job": "node"}, [(1_700_000_000_000, 1.0)])])
>>> frame, stale = samples_frame(decode_write_request(body))
>>> frame.select("series", "ts", "value").rows(), stale
([('up{job="node"}', 1700000000000, 1.0)], [])
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.clock import Clock
from workbench.config import parse_duration
from workbench.errors import ConfigError, SourceError
from workbench.sources.base import RawBatch, Source
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = [
    "STALE_NAN_BITS",
    "RemoteWriteSource",
    "decode_write_request",
    "encode_write_request",
    "samples_frame",
    "snappy_length",
]

log = logging.getLogger(__name__)

#: Prometheus' stale marker: a NaN with this exact bit pattern (``value.StaleNaN``).
STALE_NAN_BITS = 0x7FF0000000000002
_RAW_KEPT = 4096  # bytes of a malformed payload kept in its dead letter
_COUNTER = r"(_total|_count|_sum|_bucket)$"  # counter names (remote write 1.0 carries no types)
_LAST = {"series": pl.String, "t0": pl.Int64, "v0": pl.Float64}


# -- the protobuf messages (remote-write 1.0), built without protoc ---------------------------
def _messages() -> Any:
    """``WriteRequest`` and friends, from a descriptor built in Python (prometheus/prompb/remote.proto, types.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="workbench_prompb.proto", package="prometheus", syntax="proto3")
    f = descriptor_pb2.FieldDescriptorProto
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED

    def message(name: str, fields: Sequence[tuple[str, int, int, int, str | None]]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

    message("Label", [("name", 1, f.TYPE_STRING, optional, None), ("value", 2, f.TYPE_STRING, optional, None)])
    message("Sample", [("value", 1, f.TYPE_DOUBLE, optional, None), ("timestamp", 2, f.TYPE_INT64, optional, None)])
    message(
        "TimeSeries",
        [("labels", 1, f.TYPE_MESSAGE, repeated, ".prometheus.Label"),
         ("samples", 2, f.TYPE_MESSAGE, repeated, ".prometheus.Sample")],
    )  # fmt: skip
    # field 3 (metadata) is not declared: protobuf keeps it as an unknown field, unread
    message("WriteRequest", [("timeseries", 1, f.TYPE_MESSAGE, repeated, ".prometheus.TimeSeries")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


_WRITE_REQUEST: Any = None


def _write_request_class() -> Any:
    global _WRITE_REQUEST
    if _WRITE_REQUEST is None:
        _WRITE_REQUEST = _messages()
    return _WRITE_REQUEST


def encode_write_request(series: Sequence[tuple[dict[str, str], Sequence[tuple[int, float]]]]) -> bytes:
    """A snappy-compressed ``WriteRequest`` of ``(labels, [(ts_ms, value), …])`` pairs, as Prometheus sends it."""
    import cramjam

    req = _write_request_class()()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def snappy_length(body: bytes | bytearray | memoryview) -> int:
    """The uncompressed length a snappy block announces (its leading varint); ``ValueError`` if malformed.

    >>> snappy_length(bytes([0xFE, 0xFF, 0x7F]))
    2097150
    """
    n = shift = 0
    for i in range(min(len(body), 10)):
        b = body[i]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n
        shift += 7
    raise ValueError("no snappy length header")


def decode_write_request(body: bytes, *, max_decoded: int = 64 << 20) -> Any:
    """A compressed body as a ``WriteRequest`` message; ``ValueError`` with a reason code in ``args[0]``."""
    import cramjam
    from google.protobuf.message import DecodeError

    try:
        size = snappy_length(body)
    except ValueError:
        raise ValueError("bad_snappy", "the body is not a snappy block (no length header)") from None
    if size > max_decoded:
        raise ValueError("too_large", f"snappy header announces {size:,} bytes; limit {max_decoded:,}")
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise ValueError("bad_snappy", f"the body is not valid snappy: {exc}") from None
    req = _write_request_class()()
    try:
        req.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError("bad_protobuf", f"the body is not a remote-write WriteRequest: {exc}") from None
    return req


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def samples_frame(req: Any) -> tuple[pl.DataFrame, list[tuple[str, int]]]:
    """The ``prom_samples`` rows of a ``WriteRequest``, and its stale markers as ``(series, ts)``."""
    metric: list[str] = []
    labels: list[str] = []
    instance: list[str] = []
    ids: list[str] = []  # a digest of the series: the event id stays short however long its labels
    counts: list[int] = []
    ts: list[int] = []
    values: list[float] = []
    for s in req.timeseries:
        name, inst, parts = "", "", []
        for lab in s.labels:
            if lab.name == "__name__":
                name = lab.value
            else:
                parts.append((lab.name, lab.value))
                if lab.name == "instance":
                    inst = lab.value
        parts.sort()
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in parts)
        metric.append(name)
        labels.append(text)
        ids.append(hashlib.blake2b(f"{name}{{{text}}}".encode(), digest_size=12).hexdigest())
        instance.append(inst)
        counts.append(len(s.samples))
        for sample in s.samples:
            ts.append(sample.timestamp)
            values.append(sample.value)
    per_series = pl.DataFrame(
        {"metric": metric, "labels": labels, "instance": instance, "sid": ids, "n": counts},
        schema={"metric": pl.String, "labels": pl.String, "instance": pl.String, "sid": pl.String, "n": pl.Int64},
    )
    series = (
        pl.when(pl.col("labels") != "")
        .then(pl.concat_str(pl.col("metric"), pl.lit("{"), pl.col("labels"), pl.lit("}")))
        .otherwise(pl.col("metric"))
    )
    keys = ["metric", "labels", "instance", "sid", "series"]
    rows = (  # one row per sample: each series' columns repeated by its sample count
        per_series.with_columns(series.alias("series"))
        .select(pl.col(keys).repeat_by(pl.col("n")))
        .explode(keys)
        .filter(pl.col("metric").is_not_null())
    )
    value = np.asarray(values, dtype=np.float64)
    stale_mask = value.view(np.uint64) == np.uint64(STALE_NAN_BITS)
    frame = rows.with_columns(
        pl.Series("ts", ts, dtype=pl.Int64), pl.Series("value", value, dtype=pl.Float64), pl.Series("stale", stale_mask)
    )
    stale = frame.filter(pl.col("stale")).select("series", "ts").rows()
    out = frame.filter(~pl.col("stale")).select(
        pl.concat_str(pl.col("sid"), pl.lit("|"), pl.col("ts").cast(pl.String)).alias("event_id"),
        "ts",
        "instance",
        "metric",
        pl.when(pl.col("labels") != "").then(pl.col("labels")).alias("labels"),
        "series",
        "value",
        pl.lit(None, dtype=pl.Float64).alias("rate"),
    )
    return out, stale


# -- the receiver ---------------------------------------------------------------------------
@dataclass
class _Request:
    """One accepted write: its rows, and the answer its handler waits for."""

    frame: pl.DataFrame
    stale: list[tuple[str, int]]
    done: threading.Event = field(default_factory=threading.Event)
    status: int = 503


class RemoteWriteSource(Source):
    """Receive Prometheus remote-write requests on ``host:port/path`` (see the module's table).

    Parameters
    ----------
    url
        ``remote-write://127.0.0.1:9201/api/v1/write`` (port 0: any free port, see :attr:`port`).
    max_body
        Largest compressed body accepted, bytes (413 beyond).
    max_decoded
        Largest uncompressed size a body may announce, bytes (413 beyond, not decompressed).
    max_pending
        Requests queued or awaiting their checkpoint at most (503 beyond: Prometheus retries).
    max_rows
        Rows per batch at most (a batch takes whole requests, at least one).
    ack_timeout
        Longest a request waits for its checkpoint before it is answered 503.
    token_env, token_file
        Where the bearer token comes from (when set, a request without it gets 401).
    max_stale
        Series remembered as stale at most (the oldest marks are forgotten first).
    max_series
        Counter series whose last sample is kept for ``rate`` at most (the longest silent go first).
    name, clock
        As for :class:`~workbench.sources.base.Source`.
    """

    tick_s = 0.25  # an idle tick while requests await their checkpoint

    def __init__(
        self,
        url: str | ParsedUrl,
        *,
        max_body: int = 32 << 20,
        max_decoded: int = 64 << 20,
        max_pending: int = 64,
        max_rows: int = 100_000,
        ack_timeout: str | float | timedelta = "20s",
        token_env: str = "WORKBENCH_REMOTE_WRITE_TOKEN",
        token_file: str | None = None,
        max_stale: int = 100_000,
        max_series: int = 1_000_000,
        name: str = "remote_write",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock)
        u = parse_for(url, "remote-write")
        self.shown = u.url
        for key, v in (("max_body", max_body), ("max_decoded", max_decoded), ("max_pending", max_pending),
                       ("max_rows", max_rows), ("max_stale", max_stale),
                       ("max_series", max_series)):  # fmt: skip
            if v <= 0:
                raise ConfigError(f"source {u.url!r}: {key} must be > 0, not {v}")
        self.host = u.host or "127.0.0.1"
        self.port = u.port if u.port is not None else 9201
        self.path = "/" + (u.path or "api/v1/write")
        self.max_body, self.max_decoded = max_body, max_decoded
        self.max_pending, self.max_rows = max_pending, max_rows
        self.ack_timeout_s = parse_duration(ack_timeout, what="ack_timeout") / 1000
        self._token = _read_token(token_env, token_file, u.url)
        self.max_stale, self.max_series = max_stale, max_series
        self._last = pl.DataFrame(schema=_LAST)  # each counter series' newest (ts, value), for rate
        self.stale: OrderedDict[str, int] = OrderedDict()  # series → ts of its stale marker
        self.offset = 0
        self.counts = {"requests": 0, "accepted": 0, "samples": 0, "stale_markers": 0, "unauthorized": 0,
                       "too_large": 0, "bad_request": 0, "busy": 0, "timeouts": 0}  # fmt: skip
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._dead: queue.Queue[tuple[str, str, bytes]] = queue.Queue(maxsize=1000)
        self._dead_dropped = 0
        self._lock = threading.Lock()
        self._in_flight = 0  # queued + awaiting their checkpoint
        self._pending: list[tuple[int, list[_Request]]] = []  # (batch offset, its requests)
        self._server: ThreadingHTTPServer | None = None
        self.last_message_at: float | None = None

    # -- the HTTP side ------------------------------------------------------------------------
    def listen(self) -> None:
        """Bind the address and serve (``start`` and the first batch do it; idempotent)."""
        if self._server is not None:
            return
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60  # a client that stops sending mid-body frees its thread

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                log.debug("remote-write %s", format % args)  # the request line: never a header

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                try:
                    status, text = source._handle(self)
                except OSError as exc:  # the client went away or stalled: nothing to answer
                    log.debug("remote-write: connection dropped: %s", exc)
                    self.close_connection = True
                    return
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "1")
                body = text.encode()
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

        try:
            server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise SourceError(f"source {self.shown!r}: cannot listen on {self.host}:{self.port}: {exc}") from exc
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name=f"wb-{self.name}-http", daemon=True).start()
        log.info("remote-write receiver on http://%s:%d%s", self.host, self.port, self.path)

    @property
    def address(self) -> str:
        """The URL Prometheus writes to (``remote_write: - url: …``)."""
        return f"http://{self.host}:{self.port}{self.path}"

    def close(self) -> None:
        """Stop listening; requests still waiting are answered 503 (Prometheus sends them again)."""
        self.stop()
        self._shut()
        with self._lock:
            for _, reqs in self._pending:
                for req in reqs:
                    req.done.set()
            self._pending.clear()

    def _handle(self, h: BaseHTTPRequestHandler) -> tuple[int, str]:
        """Check, read, decode and queue one request; its status and a short text."""
        self.counts["requests"] += 1
        if h.path.split("?", 1)[0] != self.path:
            h.close_connection = True
            return 404, f"not found; remote write goes to {self.path}\n"
        if self._token is not None:
            got = h.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), b"Bearer " + self._token.encode()):
                self.counts["unauthorized"] += 1
                h.close_connection = True
                return 401, "unauthorized\n"
        length = h.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            h.close_connection = True
            return 411, "Content-Length required\n"
        n = int(length)
        if n > self.max_body:
            h.close_connection = True  # the body is not read: the connection cannot be reused
            self._dead_letter("too_large", f"body of {n:,} bytes; limit {self.max_body:,}", b"")
            return 413, f"body larger than {self.max_body} bytes\n"
        head = h.rfile.read(min(n, 10))
        try:
            announced = snappy_length(head)
        except ValueError:
            announced = -1
        if announced > self.max_decoded:
            h.close_connection = True  # the rest of the body is neither read nor decompressed
            self._dead_letter(
                "too_large", f"snappy header announces {announced:,} bytes; limit {self.max_decoded:,}", head
            )
            return 413, f"decompressed size over {self.max_decoded} bytes\n"
        body = head + h.rfile.read(n - len(head))
        encoding = (h.headers.get("Content-Encoding") or "snappy").lower()
        if encoding != "snappy":
            self._dead_letter("bad_encoding", f"Content-Encoding {encoding!r}; remote write 1.0 is snappy", body)
            return 415, "Content-Encoding must be snappy\n"
        try:
            frame, stale = samples_frame(decode_write_request(body, max_decoded=self.max_decoded))
        except ValueError as exc:
            code, reason = exc.args if len(exc.args) == 2 else ("bad_request", str(exc))
            self._dead_letter(code, reason, body)
            return (413 if code == "too_large" else 400), f"{reason}\n"
        req = _Request(frame, stale)
        with self._lock:
            if self._in_flight >= self.max_pending or self.stopped:
                self.counts["busy"] += 1
                return 503, "busy: retry later\n"
            self._in_flight += 1
        self._queue.put(req)
        try:
            if not req.done.wait(self.ack_timeout_s):
                self.counts["timeouts"] += 1
                return 503, "not yet stored: retry\n"
        finally:
            with self._lock:
                self._in_flight -= 1
        if req.status == 204:
            self.counts["accepted"] += 1
            return 204, ""
        return 503, "not stored: retry\n"

    def _dead_letter(self, code: str, reason: str, raw: bytes) -> None:
        if code == "too_large":
            self.counts["too_large"] += 1
        else:
            self.counts["bad_request"] += 1
        try:
            self._dead.put_nowait((code, reason, bytes(raw[:_RAW_KEPT])))
        except queue.Full:  # bounded: counted, not kept
            self._dead_dropped += 1

    # -- the pipeline side --------------------------------------------------------------------
    def start(self) -> None:
        """Listen, and allow :meth:`batches` to run."""
        super().start()
        self.listen()

    def _take_dead(self) -> list[tuple[str, str, bytes]]:
        out = []
        while True:
            try:
                out.append(self._dead.get_nowait())
            except queue.Empty:
                return out

    def _batches(self) -> Iterator[RawBatch]:
        self.listen()
        last_tick = 0.0
        try:
            while not self.stopped:
                try:
                    first = self._queue.get(timeout=0.05)
                except queue.Empty:
                    first = None
                dead = self._take_dead()
                if first is None:
                    now = self.clock.monotonic()
                    if dead:
                        yield RawBatch(frame=None, data=b"", offset=self.offset, rows=0, meta={"dead": dead})
                    elif self._pending and now - last_tick >= self.tick_s:
                        last_tick = now
                        yield RawBatch(data=b"", offset=self.offset, rows=0, meta={"tick": True})
                    continue
                reqs, rows = [first], first.frame.height
                while rows < self.max_rows:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    reqs.append(nxt)
                    rows += nxt.frame.height
                self._mark_stale(reqs)
                self.offset += 1
                with self._lock:
                    self._pending.append((self.offset, reqs))
                self.last_message_at = self.clock.monotonic()
                frame = self._with_rates(pl.concat([r.frame for r in reqs]))
                self.counts["samples"] += frame.height
                meta: dict[str, Any] = {"dead": dead} if dead else {}
                yield RawBatch(frame=frame, offset=self.offset, rows=frame.height, meta=meta)
        finally:
            if self.stopped:  # stop listening; what is queued, never taken, Prometheus sends again
                self._shut()

    def _shut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        while True:
            try:
                self._queue.get_nowait().done.set()
            except queue.Empty:
                break

    def _mark_stale(self, reqs: list[_Request]) -> None:
        for req in reqs:
            for series, ts in req.stale:
                self.counts["stale_markers"] += 1
                self.stale[series] = ts
                self.stale.move_to_end(series)
            if self.stale and req.frame.height:  # a series that reports again is no longer stale
                for series in req.frame.get_column("series").unique().to_list():
                    self.stale.pop(series, None)
        while len(self.stale) > self.max_stale:
            self.stale.popitem(last=False)

    def _with_rates(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``rate`` of counter samples: per-second increase since the series' previous sample (a reset: from 0)."""
        counters = (
            frame.filter(pl.col("metric").str.contains(_COUNTER))
            .select("series", pl.col("ts").alias("t0"), pl.col("value").alias("v0"))
            .unique(["series", "t0"], keep="last")
        )
        if counters.height == 0:
            return frame
        both = pl.concat([self._last.with_columns(pl.lit(False).alias("new")),
                          counters.with_columns(pl.lit(True).alias("new"))]).sort("series", "t0")  # fmt: skip
        pt, pv = pl.col("t0").shift(1).over("series"), pl.col("v0").shift(1).over("series")
        delta = pl.when(pl.col("v0") >= pv).then(pl.col("v0") - pv).otherwise(pl.col("v0"))
        rates = both.with_columns(
            pl.when(pl.col("t0") > pt).then(delta / ((pl.col("t0") - pt).cast(pl.Float64) / 1000)).alias("r")
        ).filter(pl.col("new"))
        last = both.group_by("series").agg(pl.all().sort_by("t0").last()).select(list(_LAST))
        if last.height > self.max_series:  # bounded: the series silent longest are forgotten
            last = last.sort("t0", descending=True).head(self.max_series)
        self._last = last
        ahead = rates.select("series", pl.col("t0").alias("ts"), "r")
        joined = frame.join(ahead, on=["series", "ts"], how="left", maintain_order="left")
        return joined.with_columns(pl.col("r").alias("rate")).drop("r")

    def snapshot(self) -> dict[str, Any]:
        """Offset plus each counter series' last sample (so the first rate after a restart is known)."""
        return {**super().snapshot(), "last": self._last.clone()}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        last = state.get("last")
        self._last = pl.DataFrame(schema=_LAST) if last is None else last.clone()

    def commit(self, offset: Any) -> None:
        """A checkpoint covers the batches up to ``offset``: their requests are answered 204."""
        if not isinstance(offset, int):
            return
        with self._lock:
            while self._pending and self._pending[0][0] <= offset:
                for req in self._pending.pop(0)[1]:
                    req.status = 204
                    req.done.set()

    def seek(self, offset: Any) -> None:
        """Prometheus re-sends what was not answered; keep numbering after ``offset``."""
        if isinstance(offset, int) and offset > self.offset:
            self.offset = offset

    def health(self) -> dict[str, Any]:
        """Listening address, request counts by outcome, samples, stale series, requests in flight."""
        now = self.clock.monotonic()
        return {
            "url": self.shown,
            "connected": self._server is not None,
            "last_message_age_s": None if self.last_message_at is None else now - self.last_message_at,
            **self.counts,
            "in_flight": self._in_flight,
            "stale_series": len(self.stale),
            "dead_dropped": self._dead_dropped,
        }


def _read_token(env: str, file: str | None, shown: str) -> str | None:
    if file:
        try:
            token = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"source {shown!r}: token_file {file!r}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"source {shown!r}: token_file {file!r} is empty")
        return token
    return os.environ.get(env) or None

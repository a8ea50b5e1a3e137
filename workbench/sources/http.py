"""HTTP polling sources: GET an endpoint every ``interval`` and turn the response into a batch.

:class:`HttpSource` reads JSON: an array of objects, one object, or NDJSON, each
object one record (its fields must follow the pipeline's schema). A scrape that
fails is retried with backoff up to the interval while :meth:`~PollingSource.health`
says ``connected: False``; the first poll failing (bad URL, refused connection,
401/403/404) is a configuration error with one message naming the URL and cause.

Polling sources are not replayable and have nothing to acknowledge: a restart
polls again from now.

Examples
--------
>>> HttpSource("http://127.0.0.1:8000/api/metrics", interval="5s").interval_s
5.0
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from abc import abstractmethod
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from workbench.clock import Clock
from workbench.config import parse_duration
from workbench.errors import ConfigError, SourceError
from workbench.sources.base import RawBatch, Source
from workbench.sources.urls import masked

__all__ = ["HttpSource", "PollingSource"]

_MAX_BODY = 64 << 20  # a response larger than this is refused (memory bound)


class PollingSource(Source):
    """Base of sources that GET a URL every ``interval``.

    Parameters
    ----------
    url
        The endpoint.
    interval
        Time between polls.
    timeout
        Seconds for one request.
    headers
        Extra request headers (e.g. ``Authorization``).
    backoff
        First wait after a failed poll, doubling up to ``interval``.
    name, clock
        As for :class:`~workbench.sources.base.Source`.
    """

    def __init__(
        self,
        url: str,
        *,
        interval: str | float | timedelta = "5s",
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        backoff: float = 0.5,
        name: str = "http",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, clock=clock)
        self.url = url  # the request needs it whole; messages use self.shown
        self.shown = masked(url)
        self.interval_s = parse_duration(interval, what="interval") / 1000
        if self.interval_s <= 0:
            raise ConfigError(f"source {url!r}: interval must be > 0, not {interval!r}")
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        self.backoff = backoff
        self.offset = 0
        self.connected = False
        self.reconnects = 0
        self.polls = 0
        self.last_error: str | None = None
        self.last_message_at: float | None = None
        self.disconnected_at: float | None = None
        self._ever = False

    def _get(self, url: str) -> tuple[bytes, str]:
        """The body and content type of a GET."""
        req = urllib.request.Request(url, headers={"User-Agent": "workbench", **self.headers})  # noqa: S310
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's URL
            body = resp.read(_MAX_BODY + 1)
            if len(body) > _MAX_BODY:
                raise SourceError(f"source {self.shown!r}: response larger than {_MAX_BODY} bytes")
            return body, resp.headers.get("Content-Type", "")

    @abstractmethod
    def _poll(self) -> RawBatch | None:
        """One poll's batch (``None`` when the response holds no records)."""

    def _batches(self) -> Iterator[RawBatch]:
        wait = self.backoff
        next_at = self.clock.monotonic()
        while not self.stopped:
            self._sleep_until(next_at)
            if self.stopped:
                return
            try:
                batch = self._poll()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                cause = _cause(exc)
                if not self._ever:
                    raise SourceError(f"source {self.shown!r}: {cause}") from exc
                if self.connected:
                    self.disconnected_at = self.clock.monotonic()
                self.connected, self.last_error = False, cause
                self.reconnects += 1
                next_at = self.clock.monotonic() + wait
                wait = min(wait * 2, self.interval_s)
                continue
            now = self.clock.monotonic()
            self._ever, self.connected, self.disconnected_at = True, True, None
            self.polls += 1
            wait = self.backoff
            next_at = max(next_at + self.interval_s, now)  # keep the cadence; never catch up in a burst
            if batch is not None and batch.rows:
                self.last_message_at = now
                self.offset += 1
                yield batch

    def _sleep_until(self, t: float) -> None:
        while not self.stopped and (left := t - self.clock.monotonic()) > 0:
            self.clock.sleep(min(left, 0.1))

    def seek(self, offset: Any) -> None:
        """A poll reads the endpoint as it is now; keep numbering after ``offset``."""
        if isinstance(offset, int) and offset > self.offset:
            self.offset = offset

    def health(self) -> dict[str, Any]:
        """Connection state, last data age (s), failed polls, last error."""
        now = self.clock.monotonic()
        return {
            "url": self.shown,
            "connected": self.connected,
            "down_s": None if self.disconnected_at is None else now - self.disconnected_at,
            "last_message_age_s": None if self.last_message_at is None else now - self.last_message_at,
            "reconnects": self.reconnects,
            "polls": self.polls,
            "error": self.last_error,
        }


def _cause(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


class HttpSource(PollingSource):
    """Poll a JSON endpoint; every object of the response becomes one record.

    Parameters
    ----------
    url
        ``http(s)://…``; its query string is sent as is.
    **kwargs
        :class:`PollingSource` options (``interval``, ``timeout``, ``headers`` …).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        kwargs.setdefault("name", "http")
        super().__init__(url, **kwargs)

    def _poll(self) -> RawBatch | None:
        body, _ = self._get(self.url)
        text = body.strip()
        if not text:
            return None
        if text[:1] == b"[":
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            if isinstance(items, list):  # re-encode each element as a line (JSON arrays are small)
                lines = [json.dumps(item, separators=(",", ":")).encode() for item in items]
                return RawBatch(data=b"\n".join(lines) + b"\n", offset=self.offset + 1, rows=len(lines))
        if text[:1] == b"{" and b"\n" in text:
            try:  # one pretty-printed object, or NDJSON
                json.loads(text)
                text = json.dumps(json.loads(text), separators=(",", ":")).encode()
            except ValueError:
                pass
        data = text + b"\n"
        return RawBatch(data=data, offset=self.offset + 1, rows=data.count(b"\n"))

"""``from_url``: one factory for every connector, by URL scheme.

======================================================  ==================================
URL                                                     source
======================================================  ==================================
``mqtt://host:1883/sensors/#?client_id=wb``             :class:`~workbench.sources.mqtt.MqttSource`
``redis://host:6379/stream?group=wb``                   :class:`~workbench.sources.redis_streams.RedisStreamSource`
``nats://host:4222/subject?stream=S&durable=wb``        :class:`~workbench.sources.nats.NatsSource`
``kafka://host:9092/topic?group=wb``                    :class:`~workbench.sources.kafka.KafkaSource`
``http://host/path`` / ``https://…`` (JSON)             :class:`~workbench.sources.http.HttpSource`
``prometheus://host:9100/metrics``                      :class:`~workbench.sources.prometheus.PrometheusSource`
``file:///path/events.jsonl`` or a plain path            :class:`~workbench.sources.files.FileSource`
======================================================  ==================================

Query parameters become keyword arguments (``max_rows``, ``max_delay`` and each
connector's own); keyword arguments passed to ``from_url`` win over the URL's.

Examples
--------
>>> u = split_url("mqtt://user:pw@127.0.0.1:1883/plant/+/temp/#?qos=1")
>>> u.scheme, u.host, u.port, u.path, u.query, u.username
('mqtt', '127.0.0.1', 1883, 'plant/+/temp/#', {'qos': '1'}, 'user')
>>> from_url("redis://h/s?group=g&colour=red")
Traceback (most recent call last):
...
workbench.errors.ConfigError: source 'redis://h/s?group=g&colour=red': unknown option 'colour'
>>> from_url("gopher://x/y")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: source 'gopher://x/y': unknown scheme 'gopher'; use one of file, http, ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from workbench.errors import ConfigError
from workbench.sources.base import Source

__all__ = ["ParsedUrl", "from_url", "masked", "parse_for", "split_url"]

_INT_PARAMS = {"max_rows", "max_unacked", "qos", "max_inflight", "session_expiry", "db", "batch", "max_ack_pending"}
_SCHEMES = ("file", "http", "https", "kafka", "mqtt", "nats", "prometheus", "redis")


@dataclass(frozen=True)
class ParsedUrl:
    """A source URL taken apart; ``path`` is everything after the first ``/`` (``#`` included)."""

    url: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: dict[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***``.

    >>> masked("redis://:s3cret@h:6379/s?group=g"), masked("mqtt://u:pw@h/t/#")
    ('redis://:***@h:6379/s?group=g', 'mqtt://u:***@h/t/#')
    """
    return re.sub(r"^([a-z+]+://[^:@/]*):[^@/]+@", r"\1:***@", url)


def split_url(url: str) -> ParsedUrl:
    """Split a source URL without treating ``#`` (an MQTT wildcard) as a fragment."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(f"source {url!r}: expected scheme://host[:port]/…, e.g. mqtt://127.0.0.1:1883/topic/#")
    rest, _, qs = rest.partition("?")
    netloc, _, path = rest.partition("/")
    user = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, _, pw = auth.partition(":")
        user, password = unquote(user), unquote(pw) if pw else None
    host, port = netloc, None
    if netloc.startswith("["):  # [::1]:port
        host, _, tail = netloc[1:].partition("]")
        netloc_port = tail.lstrip(":")
    else:
        host, _, netloc_port = netloc.partition(":")
    if netloc_port:
        if not netloc_port.isdigit():
            raise ConfigError(f"source {url!r}: port must be a number, not {netloc_port!r}")
        port = int(netloc_port)
    return ParsedUrl(masked(url), scheme.lower(), host, port, unquote(path), dict(parse_qsl(qs)), user, password)


def parse_for(url: str | ParsedUrl, kind: str) -> ParsedUrl:
    """A connector's URL; a query string given to a class directly is refused (``from_url`` reads it)."""
    if isinstance(url, ParsedUrl):
        return url
    u = split_url(url)
    if u.query:
        raise ConfigError(
            f"{kind} source {url!r}: query options are read by workbench.sources.from_url; "
            "pass them as keyword arguments to the class"
        )
    return u


def _kwargs(query: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key in _INT_PARAMS:
            try:
                out[key] = int(value)
            except ValueError:
                raise ConfigError(f"source URL: {key} must be an integer, not {value!r}") from None
        else:
            out[key] = value
    return out


def from_url(url: str, **kwargs: Any) -> Source:
    """The source for ``url``; see the module's table of schemes.

    Parameters
    ----------
    url
        The source URL. Query parameters are passed on as keyword arguments.
    **kwargs
        More keyword arguments for the source (``clock``, ``name``, ``max_rows`` …).
    """
    try:
        return _make(url, **kwargs)
    except TypeError as exc:
        m = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        if m is None:
            raise
        raise ConfigError(f"source {url!r}: unknown option {m.group(1)!r}") from None


def _make(url: str, **kwargs: Any) -> Source:
    if "://" not in url:
        from workbench.sources.files import FileSource

        return FileSource(url, **kwargs)
    parsed = split_url(url)
    options = {**_kwargs(parsed.query), **kwargs}
    scheme = parsed.scheme
    if scheme == "file":
        from workbench.sources.files import FileSource

        return FileSource("/" + parsed.path, **options)
    if scheme == "mqtt":
        from workbench.sources.mqtt import MqttSource

        return MqttSource(parsed, **options)
    if scheme == "redis":
        from workbench.sources.redis_streams import RedisStreamSource

        return RedisStreamSource(parsed, **options)
    if scheme == "nats":
        from workbench.sources.nats import NatsSource

        return NatsSource(parsed, **options)
    if scheme == "kafka":
        from workbench.sources.kafka import KafkaSource

        return KafkaSource(parsed, **options)
    if scheme in ("http", "https"):
        from workbench.sources.http import HttpSource

        return HttpSource(url, **kwargs)  # the query string belongs to the endpoint
    if scheme == "prometheus":
        from workbench.sources.prometheus import PrometheusSource

        return PrometheusSource(parsed, **options)
    raise ConfigError(f"source {url!r}: unknown scheme {scheme!r}; use one of {', '.join(_SCHEMES)}")

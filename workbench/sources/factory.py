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
``remote-write://127.0.0.1:9201/api/v1/write``          :class:`~workbench.sources.remote_write.RemoteWriteSource`
``file:///path/events.jsonl`` or a plain path            :class:`~workbench.sources.files.FileSource`
======================================================  ==================================

Query parameters become keyword arguments (``max_rows``, ``max_delay`` and each
connector's own); keyword arguments passed to ``from_url`` win over the URL's. Every
option is checked against the class's constructor (and its bases', through
``**kwargs``) before the class is built, so a misspelt option is named, never a
``TypeError``; a class with ``dotted_options`` (Kafka) also takes options with a dot in
their name (``session.timeout.ms``), which it hands to its client library. A
connector's module (and its client library) is imported only when its scheme is used.

Examples
--------
>>> from_url("redis://h/s?group=g&colour=red")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: source 'redis://h/s?group=g&colour=red': unknown option 'colour'; options: ...
>>> from_url("gopher://x/y")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: source 'gopher://x/y': unknown scheme 'gopher'; use one of file, http, ...
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from workbench.errors import ConfigError
from workbench.sources.base import Source
from workbench.sources.urls import ParsedUrl, split_url

__all__ = ["SCHEMES", "from_url", "options_of"]

#: scheme → (module, class, what the class is given: the parsed URL, the URL as written, or a file path)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "file": ("workbench.sources.files", "FileSource", "path"),
    "http": ("workbench.sources.http", "HttpSource", "url"),
    "https": ("workbench.sources.http", "HttpSource", "url"),  # the query string belongs to the endpoint
    "kafka": ("workbench.sources.kafka", "KafkaSource", "parsed"),
    "mqtt": ("workbench.sources.mqtt", "MqttSource", "parsed"),
    "nats": ("workbench.sources.nats", "NatsSource", "parsed"),
    "prometheus": ("workbench.sources.prometheus", "PrometheusSource", "parsed"),
    "redis": ("workbench.sources.redis_streams", "RedisStreamSource", "parsed"),
    "remote-write": ("workbench.sources.remote_write", "RemoteWriteSource", "parsed"),
}


def options_of(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword options a source class takes: its constructor's, and its bases' while it passes ``**kwargs`` on.

    Examples
    --------
    >>> from workbench.sources.files import FileSource
    >>> {"max_rows", "clock", "name"} <= set(options_of(FileSource))
    True
    """
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[2:]  # self, and the URL or path
        open_ended = False
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                open_ended = True
            elif p.kind is not p.VAR_POSITIONAL:
                out.setdefault(p.name, p)
        if not open_ended:
            break
    return out


def _coerce(url: str, param: inspect.Parameter, value: str) -> Any:
    """A query-string value as the type of the parameter's default: int and bool strictly, else as written.

    Durations (``max_delay=500ms``) stay strings: the source parses them.
    """
    default, annotation = param.default, str(param.annotation)
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"source {url!r}: {param.name} must be true or false, not {value!r}")
    if isinstance(default, int) or annotation in ("int", "int | None"):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"source {url!r}: {param.name} must be an integer, not {value!r}") from None
    return value


def from_url(url: str, **kwargs: Any) -> Source:
    """The source for ``url``; see the module's table of schemes.

    Parameters
    ----------
    url
        The source URL (or a plain file path). Query parameters are passed on as keyword arguments.
    **kwargs
        More keyword arguments for the source (``clock``, ``name``, ``max_rows`` …).
    """
    if "://" not in url:
        parsed: ParsedUrl | None = None
        scheme = "file"
    else:
        parsed = split_url(url)
        scheme = parsed.scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"source {url!r}: unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    module, name, given = SCHEMES[scheme]
    cls = getattr(importlib.import_module(module), name)
    known = options_of(cls)
    query = {} if parsed is None or given == "url" else parsed.query
    dotted = getattr(cls, "dotted_options", False)  # e.g. Kafka: librdkafka settings, passed on as given
    for key in [*query, *kwargs]:
        if key not in known and not (dotted and "." in key):
            raise ConfigError(f"source {url!r}: unknown option {key!r}; options: {', '.join(sorted(known))}")
    options = {**{k: _coerce(url, known[k], v) if k in known else v for k, v in query.items()}, **kwargs}
    if given == "parsed":
        return cls(parsed, **options)
    if given == "url":
        return cls(url, **options)
    return cls(url if parsed is None else "/" + parsed.path, **options)

"""Source URLs taken apart: ``scheme://user:password@host:port/path?query``, and masked for messages.

The factory that turns a URL into a source is :func:`workbench.sources.factory.from_url`.

Examples
--------
>>> u = split_url("mqtt://user:pw@127.0.0.1:1883/plant/+/temp/#?qos=1")
>>> u.scheme, u.host, u.port, u.path, u.query, u.username
('mqtt', '127.0.0.1', 1883, 'plant/+/temp/#', {'qos': '1'}, 'user')
>>> u.url
'mqtt://user:***@127.0.0.1:1883/plant/+/temp/#?qos=1'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from workbench.errors import ConfigError
from workbench.masking import mask as masked  # the one masking function, under the name sources use

__all__ = ["ParsedUrl", "masked", "parse_for", "split_url"]


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

"""Label matchers and silences, as in Alertmanager: ``name="v"``, ``!=``, ``=~``, ``!~``.

Examples
--------
>>> m = Matcher.parse('severity=~"critical|page"')
>>> m.matches({"severity": "page"}), m.matches({"severity": "info"})
(True, False)
>>> s = Silence("s1", (Matcher.parse("host=h1"),), starts_at=0, ends_at=60_000, created_by="ana")
>>> s.mutes({"host": "h1"}, at=30_000), s.mutes({"host": "h1"}, at=60_000)
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from workbench.errors import ConfigError

__all__ = ["Matcher", "Silence", "matches_all", "parse_matchers"]

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$')


@dataclass(frozen=True)
class Matcher:
    """One label condition; a missing label counts as the empty string (as in Alertmanager)."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ConfigError(f"matcher {self.name!r}: op must be one of =, !=, =~, !~, not {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ConfigError(
                    f"matcher {self.name!r}: {self.value!r} is not a valid regular expression ({exc})"
                ) from None

    @classmethod
    def parse(cls, text: str | Matcher) -> Matcher:
        """``name op value``, the value quoted or bare."""
        if isinstance(text, Matcher):
            return text
        m = _MATCHER.match(text) if isinstance(text, str) else None
        if m is None:
            raise ConfigError(f'matcher: expected name="value" (ops =, !=, =~, !~), not {text!r}')
        value = m.group(3) if m.group(3) is not None else m.group(4)
        return cls(m.group(1), m.group(2), value.replace('\\"', '"'))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher."""
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = re.fullmatch(self.value, have) is not None
        return hit if self.op == "=~" else not hit

    def expr(self) -> pl.Expr:
        """The matcher over a frame's label column, vectorised (a null label is the empty string)."""
        have = pl.col(self.name).cast(pl.String).fill_null("")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = have.str.contains(f"^(?:{self.value})$")
        return hit if self.op == "=~" else ~hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(items: Iterable[str | Matcher] | str | None, *, what: str = "matchers") -> tuple[Matcher, ...]:
    """Matchers from strings (a comma-separated string or a list)."""
    if items is None:
        return ()
    if isinstance(items, str):
        items = [part for part in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', items) if part.strip()]
    try:
        return tuple(Matcher.parse(item) for item in items)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Every matcher matches ``labels``."""
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class Silence:
    """Mute alerts whose labels match, from ``starts_at`` to ``ends_at`` (epoch ms, event time).

    Parameters
    ----------
    silence_id
        Unique id.
    matchers
        All must match for an alert to be muted.
    starts_at, ends_at
        The active interval ``[starts_at, ends_at)`` in epoch milliseconds.
    created_by, comment
        Who and why.
    """

    silence_id: str
    matchers: tuple[Matcher, ...]
    starts_at: int
    ends_at: int
    created_by: str = ""
    comment: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ConfigError(f"silence {self.silence_id!r}: needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise ConfigError(
                f"silence {self.silence_id!r}: ends_at must be after starts_at, not {self.ends_at} <= {self.starts_at}"
            )

    def active(self, at: int) -> bool:
        """Whether the silence is in force at ``at``."""
        return self.starts_at <= at < self.ends_at

    def mutes(self, labels: Mapping[str, str], *, at: int) -> bool:
        """Whether it mutes an alert with ``labels`` at ``at``."""
        return self.active(at) and matches_all(self.matchers, labels)

"""promtool's test notation: series selectors and expanding values (``1+2x3 _ stale``).

Examples
--------
>>> expand("1+2x2 _x2 7x1 stale -1")
[1.0, 3.0, 5.0, None, None, 7.0, 7.0, 'stale', -1.0]
>>> parse_series('cpu{host="a", job="x"}')
('cpu', {'host': 'a', 'job': 'x'})
>>> expand("1+x")
Traceback (most recent call last):
...
workbench.errors.ConfigError: input series values: '1+x' is not a value (a, a+bxn, a-bxn, axn, _, _xn or stale)
"""

from __future__ import annotations

import re

from workbench.errors import ConfigError

__all__ = ["STALE_VALUE", "expand", "format_labels", "go_quote", "parse_series"]

#: The marker :func:`expand` returns for ``stale``.
STALE_VALUE = "stale"
_NUM = r"(?:[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf|NaN))"
_PLAIN = re.compile(rf"^{_NUM}$")
_TIMES = re.compile(rf"^({_NUM})(?:([+-])((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|NaN))?x(\d+)$")
_BLANKS = re.compile(r"^_x(\d+)$")
_SELECTOR = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)?\s*(?:\{(.*)\})?\s*$", re.S)
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def expand(values: str) -> list[float | str | None]:
    """One entry per step: a number, ``None`` (``_``: no sample) or :data:`STALE_VALUE`."""
    out: list[float | str | None] = []
    for token in str(values).split():
        if token == "_":
            out.append(None)
        elif token == "stale":
            out.append(STALE_VALUE)
        elif m := _BLANKS.match(token):
            out += [None] * int(m.group(1))
        elif _PLAIN.match(token):
            out.append(float(token))
        elif m := _TIMES.match(token):
            start, sign, step, n = float(m.group(1)), m.group(2), m.group(3), int(m.group(4))
            delta = 0.0 if step is None else float(step) * (1 if sign == "+" else -1)
            out += [start + k * delta for k in range(n + 1)]
        else:
            raise ConfigError(f"input series values: {token!r} is not a value (a, a+bxn, a-bxn, axn, _, _xn or stale)")
    return out


def parse_matchers(text: str, *, what: str) -> list[tuple[str, str, str]]:
    """The ``{...}`` of a selector as (name, op, value) triples."""
    out, pos, body = [], 0, text.strip()
    while pos < len(body):
        m = _LABEL.match(body, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f'{what}: labels must be name="value", not {text!r}')
        out.append((m.group(1), m.group(2), bytes(m.group(3), "utf-8").decode("unicode_escape")))
        pos = m.end()
    return out


def parse_series(text: str, *, what: str = "input series") -> tuple[str, dict[str, str]]:
    """``name{l="v", ...}`` → (name, labels); the name may also be given as ``__name__``."""
    m = _SELECTOR.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f'{what}: expected name{{label="value", ...}}, not {text!r}')
    labels = {}
    for name, op, value in parse_matchers(m.group(2) or "", what=f"{what} {text!r}"):
        if op != "=":
            raise ConfigError(f"{what} {text!r}: a series has labels (=), not matchers ({op})")
        if value:  # an empty label value is no label (as in Prometheus)
            labels[name] = value
    metric = m.group(1) or labels.pop("__name__", "")
    if not metric:
        raise ConfigError(f"{what}: {text!r} has no metric name")
    return metric, labels


def go_quote(text: str) -> str:
    """A string quoted as Go's ``strconv.Quote`` does for printable text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def format_labels(labels: dict[str, str]) -> str:
    """Labels as Prometheus prints a label set: ``{a="1", b="2"}`` (sorted by name)."""
    return "{" + ", ".join(f"{k}={go_quote(v)}" for k, v in sorted(labels.items())) + "}"

"""Annotation templates as Prometheus writes them: ``{{ $labels.host }}`` and ``{{ $value }}``.

Prometheus expands alert annotations with Go's ``text/template``; Workbench supports the
part alert rules use for identity and text — a label of the series (``$labels.NAME`` or
``.Labels.NAME``) and the sample value (``$value`` or ``.Value``, printed as Go prints a
``float64``). Any other action (pipes such as ``humanize``, ``if``, ``range``, functions)
is refused when the rule is read, with the construct named, so a rule file never
renders differently here and in Prometheus without saying so.

Examples
--------
>>> t = Template("cpu on {{ $labels.host }} is {{ $value }}", what="rule 'hot': annotation 'summary'")
>>> t.render({"host": "a"}, 1e6)
'cpu on a is 1e+06'
>>> go_float(0.5), go_float(95.0), go_float(123456.0), go_float(1.5e-5)
('0.5', '95', '123456', '1.5e-05')
>>> Template("{{ $value | humanize }}", what="rule 'hot': annotation 'summary'")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: rule 'hot': annotation 'summary': template action '{{ $value | humanize }}' is not ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal

from workbench.errors import ConfigError

__all__ = ["Template", "go_float"]

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_LABEL = re.compile(r"^(?:\$labels|\.Labels)\.([A-Za-z_][A-Za-z0-9_]*)$")
_VALUE = re.compile(r"^(?:\$value|\.Value)$")
_SUPPORTED = "{{ $labels.NAME }}, {{ .Labels.NAME }}, {{ $value }}, {{ .Value }}"


def go_float(value: float) -> str:
    """``value`` as Go's ``fmt`` prints a ``float64`` with ``%v`` (shortest digits, ``e+06`` style)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(float(value))).as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # the value is 0.<text> * 10**point
    text = text.rstrip("0") or "0"
    neg = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:  # strconv 'g' with the shortest precision decides with 6
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{neg}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{text}"
    if point >= len(text):
        return neg + text + "0" * (point - len(text))
    return f"{neg}{text[:point]}.{text[point:]}"


class Template:
    """A parsed annotation template (literal text, label references and the value).

    Parameters
    ----------
    text
        The template, e.g. ``"{{ $labels.host }} at {{ $value }}"``.
    what
        Who owns it, for error messages (``"rule 'hot': annotation 'summary'"``).
    """

    def __init__(self, text: str, *, what: str) -> None:
        if not isinstance(text, str):
            raise ConfigError(f"{what}: must be a string, not {text!r}")
        self.text = text
        self.parts: list[tuple[str, str]] = []  # ("text", s) | ("label", name) | ("value", "")
        pos = 0
        for m in _ACTION.finditer(text):
            if m.start() > pos:
                self.parts.append(("text", text[pos : m.start()]))
            body = m.group(1)
            label = _LABEL.match(body)
            if label:
                self.parts.append(("label", label.group(1)))
            elif _VALUE.match(body):
                self.parts.append(("value", ""))
            else:
                raise ConfigError(f"{what}: template action {m.group(0)!r} is not supported (only {_SUPPORTED})")
            pos = m.end()
        rest = text[pos:]
        if "{{" in rest or "}}" in rest:
            raise ConfigError(f"{what}: unbalanced '{{{{' or '}}}}' in template {text!r}")
        if rest:
            self.parts.append(("text", rest))

    def render(self, labels: Mapping[str, str], value: float | None) -> str:
        """The text for a series' ``labels`` and sample ``value`` (a missing label is empty, as in Go)."""
        out = []
        for kind, arg in self.parts:
            if kind == "text":
                out.append(arg)
            elif kind == "label":
                out.append(labels.get(arg, ""))
            else:
                out.append(go_float(float("nan") if value is None else float(value)))
        return "".join(out)

"""Alert rules as frozen values: what matches, for how long, and what it says.

A rule turns a frame of window rows into one polars expression (``condition``) and
one value (``value``); the engine evaluates every rule over the whole batch in one
``select`` — vectorised over entities — and keeps the lifecycle state.

Kinds:

- :class:`Threshold` — a window metric compared with a constant (``cpu_mean > 90``).
- :class:`AnomalyScore` — the detector's decision (``is_anomaly``), or
  ``anomaly_score`` above its ``threshold`` column (or a fixed ``min_score``).
- :class:`ForecastDeviation` — a metric away from its forecast column (absolute or relative).
- :class:`RateOfChange` — a metric changing faster than ``limit`` per second between
  an entity's consecutive windows.
- :class:`Drift` — a drift event (from the models' ``drift`` output) on an entity.
- :class:`Absence` — no window from an entity (or, with ``by=None``, from the whole
  source) for ``after``: a dead man's switch, in event time.

Every rule has ``labels``, ``severity``, a ``summary`` template (``str.format`` fields:
``rule``, ``entity``, ``value``, ``severity``, ``metric`` and the labels), ``for_``
(how long it must match before it fires; ``for`` in YAML) and ``keep_firing_for``
(how long a firing alert stays firing after it stops matching: anti-flap).

Examples
--------
>>> import polars as pl
>>> rule = Threshold("cpu_high", metric="cpu_mean", op=">", value=90, for_="30s", severity="critical")
>>> frame = pl.DataFrame({"host": ["a", "b"], "cpu_mean": [95.0, 20.0]})
>>> frame.filter(rule.condition())["host"].to_list()
['a']
>>> rule.render(entity="a", value=95.0)
'cpu_high on a: 95'
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, ClassVar

import polars as pl

from workbench.alerts.matchers import parse_matchers
from workbench.alerts.templates import Template
from workbench.config import parse_duration
from workbench.errors import ConfigError

__all__ = [
    "SEVERITIES",
    "Absence",
    "AnomalyScore",
    "KINDS",
    "Drift",
    "ForecastDeviation",
    "RateOfChange",
    "Rule",
    "Threshold",
]

#: Severities, least to most severe.
SEVERITIES = ("info", "warning", "critical", "page")
_OPS: dict[str, Any] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
Duration = str | float | timedelta


@dataclass(frozen=True)
class Rule:
    """Fields every rule has (use one of the subclasses).

    Parameters
    ----------
    name
        Unique name; the ``alertname`` label.
    by
        Entity column (``None``: the engine's default entity column).
    severity
        One of :data:`SEVERITIES`.
    labels
        Extra labels on every alert of this rule (routing, inhibition, silences).
    summary
        ``str.format`` template of the alert's one-line summary.
    for_
        Pending duration before firing (``for`` in YAML).
    keep_firing_for
        How long a firing alert stays firing once it stops matching, counted from the
        first evaluation that does not match (Prometheus' ``keep_firing_for``).
    annotations
        Annotation templates (``{{ $labels.NAME }}``, ``{{ $value }}``), rendered as
        Prometheus does (:mod:`~workbench.alerts.templates`).
    severity_label
        Whether alerts carry a ``severity`` label (a rule read from a Prometheus rule
        file has one only when its ``labels`` set it).
    """

    kind: ClassVar[str] = "rule"
    name: str
    by: str | None = None
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = "{rule} on {entity}: {value:.4g}"
    for_: Duration = 0
    keep_firing_for: Duration = 0
    annotations: Mapping[str, str] = field(default_factory=dict)
    severity_label: bool = True

    def __post_init__(self) -> None:
        who = f"rule {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"rule {self.name!r}: field 'name' must be a non-empty string, not {self.name!r}")
        if self.by is not None and (not isinstance(self.by, str) or not self.by):
            raise ConfigError(f"{who}: field 'by' must be a column name, not {self.by!r}")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"{who}: field 'severity' must be one of {SEVERITIES}, not {self.severity!r}")
        for fname in ("for_", "keep_firing_for"):
            what = f"{who}: field {fname.rstrip('_')!r}"
            if parse_duration(getattr(self, fname), what=what) < 0:
                raise ConfigError(f"{what} must be >= 0, not {getattr(self, fname)!r}")
        if not isinstance(self.labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.labels.items()
        ):
            raise ConfigError(f"{who}: field 'labels' must map strings to strings, not {self.labels!r}")
        object.__setattr__(self, "labels", dict(self.labels))
        if not isinstance(self.annotations, Mapping):
            raise ConfigError(f"{who}: field 'annotations' must map names to templates, not {self.annotations!r}")
        object.__setattr__(self, "annotations", dict(self.annotations))
        for key, text in self.annotations.items():
            Template(text, what=f"{who}: annotation {key!r}")
        if not isinstance(self.summary, str):
            raise ConfigError(f"{who}: field 'summary' must be a string, not {self.summary!r}")
        try:
            self.render(entity="e", value=1.0)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{who}: field 'summary' is not a valid template ({exc!r}): {self.summary!r}") from None

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    @property
    def for_ms(self) -> int:
        """``for_`` in milliseconds."""
        return parse_duration(self.for_, what=f"rule {self.name!r}: for")

    @property
    def keep_ms(self) -> int:
        """``keep_firing_for`` in milliseconds."""
        return parse_duration(self.keep_firing_for, what=f"rule {self.name!r}: keep_firing_for")

    @property
    def column(self) -> str:
        """The column the value comes from (``""`` when none)."""
        return str(getattr(self, "metric", ""))

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns a frame needs for this rule to be evaluated on it."""
        return (self.column,) if self.column else ()

    @property
    def source(self) -> str:
        """Which input the rule reads: ``"windows"``, ``"drift"`` or ``"absence"``."""
        return "windows"

    def condition(self) -> pl.Expr:
        """Boolean expression: which rows match (never null)."""
        return pl.lit(True)

    def value_expr(self) -> pl.Expr:
        """The number shown with an alert (Float64)."""
        return pl.col(self.column).cast(pl.Float64) if self.column else pl.lit(1.0, pl.Float64)

    def render(self, *, entity: str, value: float | None, labels: Mapping[str, str] | None = None) -> str:
        """The alert's summary for ``entity`` and ``value``."""
        fields_ = {**self.labels, **(labels or {})}
        fields_.update(rule=self.name, entity=entity, severity=self.severity, metric=self.column)
        return self.summary.format(value=float("nan") if value is None else value, **fields_)

    def render_annotations(self, labels: Mapping[str, str], value: float | None) -> dict[str, str]:
        """The annotations of an alert with ``labels`` (its series' labels) and ``value``."""
        return {k: Template(t, what=f"rule {self.name!r}").render(labels, value) for k, t in self.annotations.items()}

    def to_dict(self) -> dict[str, Any]:
        """The rule as a YAML-ready dict (``kind`` first, ``for`` not ``for_``)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            out["for" if f.name == "for_" else f.name] = (
                dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v
            )
        return out

    def with_(self, **changes: Any) -> Rule:
        """A copy with ``changes`` (a changed rule, e.g. for a backtest comparison)."""
        return replace(self, **changes)


def _check_column(rule: Rule, fname: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"rule {rule.name!r}: field {fname!r} must be a column name, not {value!r}")


def _check_number(rule: Rule, fname: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"rule {rule.name!r}: field {fname!r} must be a number, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class Threshold(Rule):
    """``metric op value`` on each series, e.g. ``error_rate > 0.05``; ``matchers`` select series by label.

    As in PromQL, a NaN sample matches only ``!=``; ``matchers`` (``'job="api"'``,
    ``!=``, ``=~``, ``!~``) are the ``{...}`` of ``error_rate{job="api"} > 0.05``.
    """

    kind: ClassVar[str] = "threshold"
    metric: str
    op: str = ">"
    value: float
    matchers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_column(self, "metric", self.metric)
        if self.op not in _OPS:
            raise ConfigError(f"rule {self.name!r}: field 'op' must be one of {tuple(_OPS)}, not {self.op!r}")
        _check_number(self, "value", self.value)
        if isinstance(self.matchers, str) or not isinstance(self.matchers, tuple | list):
            raise ConfigError(f"rule {self.name!r}: field 'matchers' must be a list, not {self.matchers!r}")
        object.__setattr__(self, "matchers", tuple(str(m) for m in self.matchers))
        parse_matchers(self.matchers, what=f"rule {self.name!r}: field 'matchers'")

    @property
    def label_columns(self) -> tuple[str, ...]:
        """Labels the matchers read."""
        return tuple(m.name for m in parse_matchers(self.matchers))

    def condition(self) -> pl.Expr:  # noqa: D102
        x = pl.col(self.metric).cast(pl.Float64)
        hit = _OPS[self.op](x, self.value)
        hit = hit | x.is_nan() if self.op == "!=" else hit & ~x.is_nan()
        for m in parse_matchers(self.matchers):
            hit = hit & m.expr()
        return hit.fill_null(False)


@dataclass(frozen=True, kw_only=True)
class AnomalyScore(Rule):
    """The detector said anomalous: ``is_anomaly``; with ``min_score``, ``anomaly_score >= min_score``."""

    kind: ClassVar[str] = "anomaly"
    min_score: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_score is not None:
            _check_number(self, "min_score", self.min_score)
            if not 0 <= self.min_score <= 1:
                raise ConfigError(f"rule {self.name!r}: field 'min_score' must be in [0, 1], not {self.min_score!r}")

    @property
    def column(self) -> str:  # noqa: D102
        return "anomaly_score"

    @property
    def columns(self) -> tuple[str, ...]:  # noqa: D102
        return ("anomaly_score",) if self.min_score is not None else ("anomaly_score", "is_anomaly")

    def condition(self) -> pl.Expr:  # noqa: D102
        if self.min_score is not None:
            return (pl.col("anomaly_score") >= self.min_score).fill_null(False)
        return pl.col("is_anomaly").cast(pl.Boolean).fill_null(False)


@dataclass(frozen=True, kw_only=True)
class ForecastDeviation(Rule):
    """``|metric - forecast| > max_deviation`` (``relative``: divided by ``|forecast|``).

    ``forecast`` defaults to ``<metric>_forecast``.
    """

    kind: ClassVar[str] = "forecast"
    metric: str
    max_deviation: float
    forecast: str = ""
    relative: bool = False

    def __post_init__(self) -> None:
        _check_column(self, "metric", self.metric)
        object.__setattr__(self, "forecast", self.forecast or f"{self.metric}_forecast")
        super().__post_init__()
        _check_column(self, "forecast", self.forecast)
        _check_number(self, "max_deviation", self.max_deviation)

    @property
    def columns(self) -> tuple[str, ...]:  # noqa: D102
        return (self.metric, self.forecast)

    def value_expr(self) -> pl.Expr:  # noqa: D102
        dev = (pl.col(self.metric) - pl.col(self.forecast)).abs()
        if self.relative:
            dev = dev / pl.col(self.forecast).abs()
        return dev.cast(pl.Float64)

    def condition(self) -> pl.Expr:  # noqa: D102
        return (self.value_expr() > self.max_deviation).fill_null(False)


@dataclass(frozen=True, kw_only=True)
class RateOfChange(Rule):
    """``(metric - previous) / seconds between the entity's windows`` above ``limit`` (``absolute``: either way)."""

    kind: ClassVar[str] = "rate"
    metric: str
    limit: float
    absolute: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_column(self, "metric", self.metric)
        _check_number(self, "limit", self.limit)

    @property
    def previous(self) -> str:
        """Column the engine fills with the entity's previous value."""
        return f"__prev__{self.metric}"

    @property
    def columns(self) -> tuple[str, ...]:  # noqa: D102
        return (self.metric, self.previous, "__prev__dt_s")

    def value_expr(self) -> pl.Expr:  # noqa: D102
        rate = (pl.col(self.metric) - pl.col(self.previous)) / pl.col("__prev__dt_s")
        return (rate.abs() if self.absolute else rate).cast(pl.Float64)

    def condition(self) -> pl.Expr:  # noqa: D102
        return (self.value_expr() > self.limit).fill_null(False)


@dataclass(frozen=True, kw_only=True)
class Drift(Rule):
    """A drift event on an entity (only for ``feature`` when set); resolves ``keep_firing_for`` later."""

    kind: ClassVar[str] = "drift"
    feature: str | None = None
    keep_firing_for: Duration = "5m"
    summary: str = "{rule}: drift on {entity}"

    @property
    def source(self) -> str:  # noqa: D102
        return "drift"

    @property
    def columns(self) -> tuple[str, ...]:  # noqa: D102
        return ("feature",) if self.feature is not None else ()

    def condition(self) -> pl.Expr:  # noqa: D102
        if self.feature is None:
            return pl.lit(True)
        return (pl.col("feature") == self.feature).fill_null(False)


@dataclass(frozen=True, kw_only=True)
class Absence(Rule):
    """No window from an entity for ``after`` — or, with ``scope="source"``, from anyone.

    Evaluated in event time: at each evaluation time (reached by samples, or by the watermark the
    engine is advanced to) an entity last seen ``after`` ago or more matches. Its
    value is the silence in seconds.
    """

    kind: ClassVar[str] = "absence"
    after: Duration = "1m"
    scope: str = "entity"
    summary: str = "{rule}: no data from {entity} for {value:.0f} s"

    def __post_init__(self) -> None:
        super().__post_init__()
        if parse_duration(self.after, what=f"rule {self.name!r}: field 'after'") <= 0:
            raise ConfigError(f"rule {self.name!r}: field 'after' must be > 0, not {self.after!r}")
        if self.scope not in ("entity", "source"):
            raise ConfigError(f"rule {self.name!r}: field 'scope' must be 'entity' or 'source', not {self.scope!r}")

    @property
    def after_ms(self) -> int:
        """``after`` in milliseconds."""
        return parse_duration(self.after, what=f"rule {self.name!r}: after")

    @property
    def source(self) -> str:  # noqa: D102
        return "absence"


#: Rule classes by their YAML ``kind``.
KINDS: dict[str, type[Rule]] = {
    cls.kind: cls for cls in (Threshold, AnomalyScore, ForecastDeviation, RateOfChange, Drift, Absence)
}

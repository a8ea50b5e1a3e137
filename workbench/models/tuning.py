"""Live parameters of a detector: a ``param.Parameterized`` built from its constructor.

:func:`detector_params` reads any catalogue detector's constructor signature (names and
defaults), its ``bounds`` ClassVar (inclusive ranges of numeric arguments) and the
Parameters section of its numpydoc docstring (the docs), and builds a
``param.Parameterized`` class from them — so views get widgets for free
(``pn.Param(params)``) and an out-of-range value is refused before any model is built.
Nothing here imports Panel.

Examples
--------
>>> p = detector_params("robust_z")(window=300)
>>> p.window, p.param.window.bounds, p.param.window.doc
(300, (20, 100000), 'Values remembered per feature.')
>>> p.build()
RobustZScore(window=300, warm_up=30, refresh=10, holdoff=350, damp=0.5)
>>> p.tune(window=5)
Traceback (most recent call last):
...
workbench.errors.ConfigError: detector 'robust_z': window must be within [20, 100000], not 5
"""

from __future__ import annotations

import inspect
import re
from functools import cache
from typing import Any, cast

import param

from workbench.errors import ConfigError
from workbench.models.detectors import Detector

__all__ = ["DetectorParams", "detector_class", "detector_params", "parameter_docs"]


def detector_class(detector: str | type[Detector]) -> tuple[str, type[Detector]]:
    """``(name, class)`` of a catalogue detector given by name (or a class)."""
    from workbench.models.catalog import DETECTORS

    if isinstance(detector, str):
        if detector not in DETECTORS:
            raise ConfigError(f"detector: unknown name {detector!r}; choose one of {sorted(DETECTORS)}")
        factory = DETECTORS[detector]
        cls = factory if isinstance(factory, type) else type(factory())
        return detector, cls
    if isinstance(detector, type) and issubclass(detector, Detector):
        name = next((k for k, v in DETECTORS.items() if v is detector), detector.__name__)
        return name, detector
    raise ConfigError(f"detector: expected a catalogue name or a Detector class, not {detector!r}")


def parameter_docs(cls: type) -> dict[str, str]:
    """The Parameters section of a numpydoc docstring, as ``{name: first paragraph}``.

    A line ``a, b`` documents both names.

    >>> from workbench.models.detectors import RobustZScore
    >>> parameter_docs(RobustZScore)["damp"]
    'Rows an extreme is remembered, and the factor for rows that do not exceed it.'
    """
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if match is None:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    for line in match.group(1).splitlines():
        if line and not line[0].isspace():
            names = [n.strip().split(":")[0].strip() for n in line.split(",")]
            for n in names:
                out[n] = ""
        elif line.strip() and names:
            for n in names:
                out[n] = f"{out[n]} {line.strip()}".strip()
    return out


class DetectorParams(param.Parameterized):
    """Base of the generated classes: the tunables of one detector, with bounds and docs."""

    detector_name: str = ""
    detector_type: type[Detector]

    def values(self) -> dict[str, Any]:
        """The constructor arguments, as set now."""
        return {name: getattr(self, name) for name in self.param if name != "name"}

    def build(self) -> Detector:
        """A fresh detector with these arguments."""
        return self.detector_type(**self.values())

    def tune(self, **values: Any) -> None:
        """Set several arguments at once; refuses unknown names and out-of-range values.

        All values are checked before any is set, and watchers see one batched change.
        """
        known = set(self.values())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"detector {self.detector_name!r}: no parameters {unknown}; it has {sorted(known)}")
        for key, value in values.items():
            bounds = self.param[key].bounds if hasattr(self.param[key], "bounds") else None
            if bounds is not None and isinstance(value, int | float) and not bounds[0] <= value <= bounds[1]:
                raise ConfigError(
                    f"detector {self.detector_name!r}: {key} must be within [{bounds[0]}, {bounds[1]}], not {value}"
                )
        try:
            self.param.update(**values)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"detector {self.detector_name!r}: {exc}") from None


def _parameter(default: Any, bounds: tuple[float, float] | None, doc: str) -> param.Parameter:
    if isinstance(default, bool):
        return param.Boolean(default=default, doc=doc)
    if isinstance(default, int):
        b = None if bounds is None else (int(bounds[0]), int(bounds[1]))
        return param.Integer(default=default, bounds=b, doc=doc)
    if isinstance(default, float):
        return param.Number(default=default, bounds=bounds, doc=doc)
    if isinstance(default, str):
        return param.String(default=default, doc=doc)
    return param.Parameter(default=default, doc=doc)


@cache
def _generated(cls: type[Detector], name: str) -> type[DetectorParams]:
    from workbench.models.catalog import DETECTORS

    docs = parameter_docs(cls)
    # a catalogue entry may be a factory with its own settings: those are the defaults
    factory = DETECTORS.get(name)
    preset = {} if factory is None or isinstance(factory, type) else dict(factory()._params)
    params: dict[str, Any] = {}
    for arg in inspect.signature(cls.__init__).parameters.values():
        if arg.name == "self" or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        default = preset.get(arg.name, arg.default)
        if default is inspect.Parameter.empty:
            raise ConfigError(f"detector {name!r}: argument {arg.name!r} needs a default to be tunable")
        params[arg.name] = _parameter(default, cls.bounds.get(arg.name), docs.get(arg.name, ""))
    generated = cast(
        type[DetectorParams], param.parameterized_class(f"{cls.__name__}Params", params, bases=DetectorParams)
    )
    generated.detector_name = name
    generated.detector_type = cls
    generated.__doc__ = f"Tunable arguments of the {name!r} detector ({cls.__module__}.{cls.__name__})."
    return generated


def detector_params(detector: str | type[Detector]) -> type[DetectorParams]:
    """The ``param.Parameterized`` class of a detector's tunable arguments (cached per class)."""
    name, cls = detector_class(detector)
    return _generated(cls, name)

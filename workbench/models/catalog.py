"""The detector catalogue: every detector by name, its threshold, and Workbench's default.

One place to add a detector: put its class here with a name, and (once measured) its
threshold. ``workbench detect``, ``workbench nab``, the score node and live tuning all
read this table; a detector's tunable arguments are read from its constructor signature
(:func:`workbench.models.tuning.detector_params`).

Examples
--------
>>> DEFAULT_DETECTOR in DETECTORS, sorted(DETECTORS) == sorted(THRESHOLDS)
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable

from workbench.models.context import ContextDetector
from workbench.models.detectors import Detector, RobustZScore
from workbench.models.ensemble import Ensemble
from workbench.models.forecast import HoltWintersResidual, SnarimaxResidual
from workbench.models.hst import ScaledHalfSpaceTrees

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "THRESHOLDS"]

#: the detector catalogue, by name (each with its default configuration)
DETECTORS: dict[str, Callable[[], Detector]] = {
    "robust_z": RobustZScore,
    "snarimax": SnarimaxResidual,
    "holt_winters": HoltWintersResidual,
    "hst": ScaledHalfSpaceTrees,
    "ensemble": Ensemble,
    "context": ContextDetector,
}
#: each detector's own threshold: its standard-profile optimum over the whole NAB
#: corpus (``workbench nab --detector NAME`` prints it; docs/BENCHMARKS.md)
THRESHOLDS = {
    "robust_z": 0.75,
    "snarimax": 0.6919,
    "holt_winters": 0.7445,
    "hst": 0.5345,
    "ensemble": 0.7550,
    "context": 0.7673,
}
#: Workbench's default: the catalogue's best on NAB (docs/BENCHMARKS.md)
DEFAULT_DETECTOR = "context"

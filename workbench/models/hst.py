"""river's HalfSpaceTrees on scaled features, calibrated like the other detectors.

HalfSpaceTrees expects every feature in [0, 1] and scores 0 during its whole first
window. This wrapper squashes each feature's robust z (trailing median and MAD) into
(0, 1) with ``0.5 + 0.5·tanh(z / spread)`` — a trailing *range* would not do: after
one spike every normal value is squeezed into a corner of [0, 1] and looks new —
scores 0 until the trees have a reference window, and turns the trees' score
into a robust z against their own trailing scores: HalfSpaceTrees' raw score sits
anywhere between 0.3 and 0.9 depending on the series, so a corpus-wide threshold
needs the distance from the series' usual score, not the score itself.

Examples
--------
>>> from workbench.models.detectors import score_stream
>>> rows = [{"v": 10.0 + (i % 7) / 10} for i in range(600)] + [{"v": 25.0}]
>>> scores = score_stream(ScaledHalfSpaceTrees(seed=1), rows)
>>> scores[:250] == [0.0] * 250, scores[-1] == max(scores)
(True, True)
"""

from __future__ import annotations

import math
from typing import ClassVar

from river import anomaly

from workbench.models.detectors import Detector, calibrate
from workbench.models.robust import Holdoff, RollingRobust

__all__ = ["ScaledHalfSpaceTrees"]


class ScaledHalfSpaceTrees(Detector):
    """HalfSpaceTrees over robustly squashed features (and their first differences).

    Parameters
    ----------
    n_trees, height, window_size
        river's HalfSpaceTrees: trees, their depth, and the rows of one reference window.
    spread
        The robust z that lands at 0.88 (``tanh(1)``) of [0, 1].
    diffs
        Also give the trees each feature's first difference.
    window
        Values (of each feature, and of the tree scores) remembered for their robust scale.
    holdoff, damp
        Rows a score is remembered, and the factor for rows that do not beat it.
    seed
        Seed of the trees' random splits.
    """

    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "n_trees": (1, 100),
        "height": (1, 15),
        "window_size": (10, 10_000),
        "spread": (0.1, 100.0),
        "window": (20, 100_000),
        "holdoff": (0, 100_000),
        "damp": (0.0, 1.0),
        "seed": (0, 2**31 - 1),
    }

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        spread: float = 4.0,
        diffs: bool = True,
        window: int = 2000,
        holdoff: int = 500,
        damp: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.n_trees, self.height, self.seed = n_trees, height, seed
        self.window_size, self.window, self.spread, self.diffs = window_size, window, spread, diffs
        self.holdoff, self.damp = holdoff, damp
        self._trees = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
        self._scales: dict[str, RollingRobust] = {}  # feature (or "feature'", its difference) → its scale
        self._previous: dict[str, float] = {}
        self._learned = 0
        self._scores = RollingRobust(window)
        self._hold = Holdoff(holdoff, damp)
        # (x, raw score, scaled features, tree score) of the last score_one: learn_one reuses them
        self._last: tuple[dict[str, float], float, dict[str, float], float | None] | None = None

    def _pairs(self, x: dict[str, float]) -> list[tuple[str, float]]:
        """The features of ``x`` (NaN and None left out), each followed by its first difference."""
        out = []
        for name, value in x.items():
            if value is None or math.isnan(value):
                continue
            out.append((name, value))
            if self.diffs:
                out.append((name + "'", value - self._previous.get(name, value)))
        return out

    def _features(self, x: dict[str, float]) -> dict[str, float]:
        """Each feature (and difference) squashed into (0, 1) by its trailing robust z."""
        out = {}
        for key, v in self._pairs(x):
            scale = self._scales.get(key)
            out[key] = 0.5 if scale is None else 0.5 + 0.5 * math.tanh(scale.signed(v) / self.spread)
        return out

    def _assess(self, x: dict[str, float]) -> tuple[float, dict[str, float], float | None]:
        """The raw score of ``x``, its scaled features and the trees' own score (``None`` in warm-up)."""
        features = self._features(x)
        if not features or self._learned < self.window_size:  # nothing to score, or river's first window
            return 0.0, features, None
        tree_score = float(self._trees.score_one(features))
        if len(self._scores) < self.window_size:  # the trees' usual score is not known yet
            return 0.0, features, tree_score
        raw = calibrate(self._scores.z(tree_score)) if tree_score > self._scores.median else 0.0
        return raw, features, tree_score

    def score_one(self, x: dict[str, float]) -> float:  # noqa: D102
        raw, features, tree_score = self._assess(x)
        self._last = (dict(x), raw, features, tree_score)
        return self._hold.peek(raw)

    def learn_one(self, x: dict[str, float]) -> None:  # noqa: D102
        raw, features, tree_score = self._last[1:] if self._last is not None and self._last[0] == x else self._assess(x)
        self._last = None
        self._hold.learn(raw)
        if tree_score is not None:
            self._scores.learn(tree_score)
        if features:  # river builds its trees from the first row's features: never from an empty row
            self._trees.learn_one(features)
            self._learned += 1
        for key, v in self._pairs(x):
            self._scales.setdefault(key, RollingRobust(self.window)).learn(v)
        for name, value in x.items():
            if value is not None and not math.isnan(value):
                self._previous[name] = value

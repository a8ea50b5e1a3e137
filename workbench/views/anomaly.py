"""Anomaly overlay: marks where a score crosses its threshold, on top of any series.

The models issue gives window rows a score column and a threshold (a number, or a
column of per-row adaptive thresholds); the live monitor uses the fleet z-score.
The marks are a plain HoloViews ``Scatter`` so they overlay any ``Curve``.

Examples
--------
>>> import pandas as pd
>>> data = pd.DataFrame({"window_start": pd.to_datetime([0, 1, 2], unit="s"),
...                      "value": [1.0, 9.0, 1.2], "z": [0.1, 4.2, 0.3]})
>>> crossings(data, "z", 3.5)["value"].tolist()
[9.0]
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import pandas as pd

__all__ = ["anomaly_marks", "crossings"]

MARK_COLOR = "#d62728"


def crossings(data: pd.DataFrame, score: str, threshold: float | str) -> pd.DataFrame:
    """Rows of ``data`` whose ``score`` is at or above ``threshold`` (a number or a column)."""
    if data.empty or score not in data:
        return data.iloc[0:0]
    limit = data[threshold] if isinstance(threshold, str) else threshold
    return data[data[score].abs() >= limit]


def anomaly_marks(
    data: pd.DataFrame,
    *,
    x: str = "window_start",
    y: str = "value",
    score: str = "z",
    threshold: float | str = 3.5,
    vdims: list[str] | None = None,
    label: str = "anomaly",
) -> Any:
    """A ``Scatter`` of the points where ``score`` crosses ``threshold`` (red rings, hover shows the score)."""
    marks = crossings(data, score, threshold)
    extra = [c for c in (vdims or []) if c in data and c not in (y, score)]
    return hv.Scatter(marks, x, [y, score, *extra], label=label).opts(
        color=MARK_COLOR,
        marker="circle",
        size=9,
        fill_alpha=0.15,
        line_width=2,
        tools=["hover"],
    )

"""Score a file of numeric columns online: ``workbench detect``.

Each row is scored before it is learned (test-then-train), in time order. The output
is the input plus ``anomaly_score`` in [0, 1] and ``is_anomaly`` (the score at or
above the detector's threshold).

Examples
--------
>>> import polars as pl, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> values = [10.0 + 0.1 * (i % 5) for i in range(200)]; values[150] = 60.0
>>> pl.DataFrame({"timestamp": list(range(200)), "value": values}).write_csv(d / "in.csv")
>>> out = detect_file(d / "in.csv", d / "out.csv", time_column="timestamp", detector="robust_z")
>>> out.filter(pl.col("is_anomaly"))["timestamp"].to_list()
[150]
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.errors import ConfigError
from workbench.models.catalog import DEFAULT_DETECTOR, DETECTORS, THRESHOLDS

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "THRESHOLDS", "detect_file"]


def detect_file(
    path: str | Path, out: str | Path, *, time_column: str = "timestamp", detector: str = DEFAULT_DETECTOR
) -> pl.DataFrame:
    """Score every row of the CSV ``path`` in time order and write ``out``; returns the scored frame."""
    if detector not in DETECTORS:
        raise ConfigError(f"detect: unknown detector {detector!r}; choose one of {sorted(DETECTORS)}")
    frame = pl.read_csv(path, try_parse_dates=True)
    if time_column not in frame.columns:
        raise ConfigError(f"detect {str(path)!r}: no time column {time_column!r}; columns: {frame.columns}")
    features = [c for c, t in frame.schema.items() if c != time_column and t.is_numeric()]
    if not features:
        raise ConfigError(f"detect {str(path)!r}: no numeric column besides {time_column!r}")
    frame = frame.sort(time_column, maintain_order=True)
    model = DETECTORS[detector]()
    scores = []
    for row in frame.select(features).iter_rows():
        x = {name: float(v) for name, v in zip(features, row, strict=True) if v is not None}
        scores.append(model.score_one(x))
        model.learn_one(x)
    result = frame.with_columns(
        pl.Series("anomaly_score", scores, dtype=pl.Float64),
        (pl.Series(scores, dtype=pl.Float64) >= THRESHOLDS[detector]).alias("is_anomaly"),
    )
    result.write_csv(out)
    return result

"""Score a file of numeric columns online: ``workbench detect``.

Each row is scored before it is learned (test-then-train), in time order. The input
is JSONL, CSV or Parquet (by its extension), and so is the output. The output is the
input plus ``anomaly_score`` in [0, 1] and ``is_anomaly`` (the score at or above the
detector's threshold).

Without ``by`` one model scores every row on all the numeric columns (or ``columns``)
together. With ``by`` (long format: one row per entity and time) each entity gets one
model per column; a row's ``anomaly_score`` is the highest of its columns' scores and
``anomaly_metric`` names that column.

Examples
--------
>>> import polars as pl, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> values = [10.0 + 0.1 * (i % 5) for i in range(200)]; values[150] = 60.0
>>> pl.DataFrame({"timestamp": list(range(200)), "value": values}).write_csv(d / "in.csv")
>>> out = detect_file(d / "in.csv", d / "out.csv", time_column="timestamp", detector="robust_z")
>>> out.filter(pl.col("is_anomaly"))["timestamp"].to_list()
[150]

Per entity, from Parquet: the spike of host ``b`` is not hidden by host ``a``'s level.

>>> two = pl.DataFrame({"timestamp": [i // 2 for i in range(400)], "host": ["a", "b"] * 200,
...                     "cpu": [80.0 + (i % 3) if i % 2 == 0 else 10.0 + (i % 3) for i in range(400)]})
>>> two = two.with_columns(pl.when(pl.int_range(400) == 301).then(50.0).otherwise(pl.col("cpu")).alias("cpu"))
>>> two.write_parquet(d / "long.parquet")
>>> out = detect_file(d / "long.parquet", d / "out.parquet", detector="robust_z", by="host")
>>> out.filter(pl.col("is_anomaly")).select("timestamp", "host", "anomaly_metric").rows()
[(150, 'b', 'cpu')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from workbench.errors import ConfigError
from workbench.models.catalog import DEFAULT_DETECTOR, DETECTORS, THRESHOLDS

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "THRESHOLDS", "detect_file", "read_table", "write_table"]

_JSONL = (".jsonl", ".ndjson", ".json")
_CSV = (".csv", ".tsv", ".txt")
#: rows scored between two progress calls
_CHUNK = 2_048


def _kind(path: Path, what: str) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _JSONL:
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix in _CSV:
        return "csv"
    raise ConfigError(f"{what} {str(path)!r}: unknown file type {suffix or '(none)'!r}; use .jsonl, .csv or .parquet")


def read_table(path: str | Path) -> pl.DataFrame:
    """A JSONL, CSV or Parquet file (by extension) as a frame; ISO-8601 text times become datetimes in CSV."""
    path = Path(path)
    kind = _kind(path, "detect: input")
    if kind == "jsonl":
        return pl.read_ndjson(path)
    if kind == "parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, try_parse_dates=True, separator="\t" if path.suffix.lower() == ".tsv" else ",")


def write_table(frame: pl.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as JSONL, CSV or Parquet, by the extension of ``path`` (folders created)."""
    path = Path(path)
    kind = _kind(path, "detect: --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        frame.write_ndjson(path)
    elif kind == "parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",")


def _features(frame: pl.DataFrame, path: Path, skip: list[str], columns: Sequence[str] | None) -> list[str]:
    numeric = [c for c, t in frame.schema.items() if c not in skip and t.is_numeric()]
    if columns is None:
        if not numeric:
            raise ConfigError(f"detect {str(path)!r}: no numeric column besides {', '.join(skip)}")
        return numeric
    for c in columns:
        if c not in numeric:
            why = "not numeric" if c in frame.columns else "no such column"
            raise ConfigError(f"detect {str(path)!r}: --columns {c!r}: {why}; numeric columns: {', '.join(numeric)}")
    return list(columns)


def detect_file(
    path: str | Path,
    out: str | Path,
    *,
    time_column: str = "timestamp",
    detector: str = DEFAULT_DETECTOR,
    columns: Sequence[str] | None = None,
    by: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Score every row of ``path`` in time order and write ``out``; returns the scored frame.

    Parameters
    ----------
    path, out
        JSONL, CSV or Parquet files (by extension).
    time_column
        Rows are scored in its order.
    detector
        A name of :data:`DETECTORS`.
    columns
        The numeric columns scored (default: every numeric column but the time and ``by``).
    by
        Entity column: one model per entity and column (long format).
    progress
        Called with the rows scored so far and the rows in all, every few thousand rows.
    """
    if detector not in DETECTORS:
        raise ConfigError(f"detect: unknown detector {detector!r}; choose one of {sorted(DETECTORS)}")
    path = Path(path)
    _kind(Path(out), "detect: --out")  # a wrong output type fails before the scoring, not after
    frame = read_table(path)
    for what, name in (("time column", time_column), ("--by column", by)):
        if name is not None and name not in frame.columns:
            raise ConfigError(f"detect {str(path)!r}: no {what} {name!r}; columns: {', '.join(frame.columns)}")
    features = _features(frame, path, [time_column, *([by] if by else [])], columns)
    if frame.schema[time_column] == pl.String:  # ISO-8601 text (JSONL): order by the instant, not the text
        try:
            frame = frame.with_columns(pl.col(time_column).str.to_datetime(time_zone="UTC").alias("__t"))
        except pl.exceptions.PolarsError as exc:
            raise ConfigError(f"detect {str(path)!r}: time column {time_column!r}: not ISO-8601 ({exc})") from None
        frame = frame.sort("__t", maintain_order=True).drop("__t")
    else:
        frame = frame.sort(time_column, maintain_order=True)
    if by is None:
        result = frame.with_columns(_score_rows(frame, features, detector, progress))
    else:
        result = _score_per_entity(frame, features, by, detector, progress)
    result = result.with_columns((pl.col("anomaly_score") >= THRESHOLDS[detector]).alias("is_anomaly"))
    write_table(result, out)
    return result


def _score_rows(
    frame: pl.DataFrame, features: list[str], detector: str, progress: Callable[[int, int], None] | None
) -> pl.Series:
    """One model over all ``features`` together, test-then-train row by row."""
    model = DETECTORS[detector]()
    scores = []
    for n, row in enumerate(frame.select(features).iter_rows(), 1):
        x = {name: float(v) for name, v in zip(features, row, strict=True) if v is not None}
        scores.append(model.score_one(x))
        model.learn_one(x)
        if progress is not None and n % _CHUNK == 0:
            progress(n, frame.height)
    if progress is not None:
        progress(frame.height, frame.height)
    return pl.Series("anomaly_score", scores, dtype=pl.Float64)


def _score_per_entity(
    frame: pl.DataFrame, features: list[str], by: str, detector: str, progress: Callable[[int, int], None] | None
) -> pl.DataFrame:
    """One model per entity and feature; a row's score is its highest, ``anomaly_metric`` the feature."""
    indexed = frame.with_row_index("__row")
    parts = []
    done = 0
    for part in indexed.partition_by(by, maintain_order=True):
        scored = {}
        for feature in features:
            model = DETECTORS[detector]()
            values: list[float | None] = []
            for v in part[feature]:
                if v is None:
                    values.append(None)
                    continue
                x = {feature: float(v)}
                values.append(model.score_one(x))
                model.learn_one(x)
            scored[feature] = pl.Series(feature, values, dtype=pl.Float64)
        parts.append(pl.DataFrame({"__row": part["__row"], **scored}))
        done += part.height
        if progress is not None:
            progress(done, frame.height)
    scores = pl.concat(parts).sort("__row")
    best = pl.concat_list(features).list.arg_max()
    metric = pl.lit(None, pl.String)
    for i, feature in enumerate(features):
        metric = pl.when(best == i).then(pl.lit(feature)).otherwise(metric)
    scores = scores.select(
        pl.max_horizontal(features).fill_null(0.0).alias("anomaly_score"), metric.alias("anomaly_metric")
    )
    return frame.with_columns(scores)

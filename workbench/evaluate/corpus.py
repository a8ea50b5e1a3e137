"""Labelled series for evaluation: the Numenta Anomaly Benchmark corpus as values.

``load_nab(root)`` reads a NAB checkout (``data/<category>/<file>.csv`` and
``labels/combined_windows.json``) into :class:`LabelledSeries` with the anomaly
windows as row ranges; ``tests/test_nab.py`` runs it on a small corpus it writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import ConfigError
from workbench.evaluate.nab import probation_rows

__all__ = ["LabelledSeries", "load_nab"]


@dataclass(frozen=True)
class LabelledSeries:
    """One series with its anomaly windows as inclusive row ranges."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]

    @property
    def category(self) -> str:
        """The folder of the file (``realKnownCause``…)."""
        return self.name.split("/")[0]

    @property
    def probation(self) -> int:
        """Rows not scored at the start (NAB's probationary period)."""
        return probation_rows(len(self.values))


def load_nab(root: str | Path) -> list[LabelledSeries]:
    """Every data file of a NAB checkout (``data/`` and ``labels/combined_windows.json``), sorted by name."""
    root = Path(root)
    labels = root / "labels" / "combined_windows.json"
    if not labels.exists():
        raise ConfigError(f"NAB corpus {str(root)!r}: no labels/combined_windows.json")
    windows = json.loads(labels.read_text())
    out = []
    for name in sorted(windows):
        frame = pl.read_csv(root / "data" / name, try_parse_dates=True)
        ts = frame["timestamp"].cast(pl.Datetime("us")).to_numpy()
        rows = []
        for start, end in windows[name]:
            a, b = np.datetime64(start.replace(" ", "T")), np.datetime64(end.replace(" ", "T"))
            inside = np.flatnonzero((ts >= a) & (ts <= b))
            if len(inside):
                rows.append((int(inside[0]), int(inside[-1])))
        out.append(LabelledSeries(name, ts, frame["value"].cast(pl.Float64).to_numpy(), rows))
    return out

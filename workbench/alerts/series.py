"""The newest sample of every series, as a rule evaluation sees it: lookback and staleness.

A *series* is one value column (a metric) of one label set (the values of the label
columns, e.g. ``host`` and ``job``). :class:`SeriesStore` keeps, per label set, the
newest sample of each value column and its time; :meth:`SeriesStore.instant` is
PromQL's instant vector at an evaluation time ``t``: a series shows its newest sample
with a time in ``[t - lookback, t]`` (Prometheus 2.x includes both ends), and nothing
when that sample is older or is a *stale marker*.

A null in a value column means "no sample" (the older one stays visible); a stale
marker is a row whose :data:`STALE` column names the value column (``"*"``: every
column of the row's label set), as Prometheus writes one when a series disappears.
Everything is vectorised over series: one ``group_by`` and one join per batch.

Examples
--------
>>> import polars as pl
>>> store = SeriesStore(("host",), lookback_ms=300_000)
>>> store.absorb(pl.DataFrame({"host": ["a", "b"], "__t": [0, 0], "cpu": [95.0, 5.0]}), ["cpu"])
>>> store.instant(240_000)["cpu"].to_list()
[95.0, 5.0]
>>> store.absorb(pl.DataFrame({"host": ["a"], "__t": [60_000], "cpu": [None], STALE: ["cpu"]}), ["cpu"])
>>> store.instant(240_000).sort("host")["cpu"].to_list()
[None, 5.0]
>>> store.instant(361_000).height  # both samples older than the 5 m lookback: forgotten
0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

__all__ = ["STALE", "SeriesStore"]

#: Column of a stale-marker row: the value column that went stale, or ``"*"`` for all.
STALE = "__stale__"


def _tcol(column: str) -> str:
    return f"__t:{column}"


class SeriesStore:
    """Newest sample per (label set, value column), with lookback and stale markers.

    Parameters
    ----------
    labels
        The label columns that identify a series (with the value column).
    lookback_ms
        How far back an evaluation looks for a series' newest sample.
    """

    def __init__(self, labels: Sequence[str], *, lookback_ms: int) -> None:
        self.labels = tuple(labels)
        self.lookback_ms = lookback_ms
        self.latest = pl.DataFrame(schema={c: pl.String for c in self.labels})
        self.columns: list[str] = []
        self.newest: int | None = None

    def absorb(self, rows: pl.DataFrame, columns: Sequence[str]) -> None:
        """Take rows (label columns, ``__t`` in epoch ms, value columns, maybe :data:`STALE`)."""
        cols = [c for c in dict.fromkeys(columns) if c in rows.columns]
        if rows.height == 0 or not cols:
            return
        rows = rows.with_columns(
            [pl.col(c).cast(pl.String) if c in rows.columns else pl.lit(None, pl.String).alias(c) for c in self.labels]
        )
        stale = STALE in rows.columns
        t_max = rows["__t"].max()
        assert isinstance(t_max, int)
        self.newest = t_max if self.newest is None else max(self.newest, t_max)
        single = not stale and rows["__t"].n_unique() == 1 and not rows.select(self.labels).is_duplicated().any()
        if single:  # the common case (one window end per batch): no aggregation needed
            new = rows.select(
                *self.labels,
                *[pl.col(c) for c in cols],
                *[pl.when(pl.col(c).is_not_null()).then(pl.col("__t")).alias(_tcol(c)) for c in cols],
            )
        else:
            aggs = []
            for c in cols:
                marker = ((pl.col(STALE) == c) | (pl.col(STALE) == "*")).fill_null(False) if stale else pl.lit(False)
                present = pl.col(c).is_not_null() | marker
                value = pl.when(marker).then(None).otherwise(pl.col(c))
                aggs += [value.filter(present).last().alias(c), pl.col("__t").filter(present).last().alias(_tcol(c))]
            new = rows.sort("__t", maintain_order=True).group_by(self.labels, maintain_order=True).agg(aggs)
        self._merge(new, cols)

    def _merge(self, new: pl.DataFrame, cols: list[str]) -> None:
        for c in cols:
            if c not in self.columns:
                self.columns.append(c)
                self.latest = self.latest.with_columns(
                    pl.lit(None, new.schema[c]).alias(c), pl.lit(None, pl.Int64).alias(_tcol(c))
                )
        if self.latest.height == 0:
            self.latest = pl.concat([self.latest, new], how="diagonal_relaxed")
            return
        joined = self.latest.join(new, on=list(self.labels), how="full", coalesce=True, nulls_equal=True, suffix="~")
        updates = []
        for c in cols:
            t_old, t_new = pl.col(_tcol(c)), pl.col(_tcol(c) + "~")
            fresh = t_new.is_not_null() & (t_old.is_null() | (t_new >= t_old))  # a late sample never hides a newer one
            updates += [
                pl.when(fresh).then(pl.col(c + "~")).otherwise(pl.col(c)).alias(c),
                pl.when(fresh).then(pl.col(_tcol(c) + "~")).otherwise(pl.col(_tcol(c))).alias(_tcol(c)),
            ]
        self.latest = joined.with_columns(updates).drop([f"{c}~" for c in cols] + [_tcol(c) + "~" for c in cols])

    def instant(self, t: int) -> pl.DataFrame:
        """Label columns and every value column as seen at ``t`` (null: no sample in the lookback, or stale).

        Series with no sample left in the lookback are forgotten.
        """
        if not self.columns or self.latest.height == 0:
            return self.latest.select(self.labels)
        lo = t - self.lookback_ms
        fresh = [pl.col(_tcol(c)).is_between(lo, t) for c in self.columns]
        self.latest = self.latest.filter(pl.max_horizontal([pl.col(_tcol(c)) for c in self.columns]) >= lo)
        return self.latest.filter(pl.any_horizontal(fresh)).select(
            *self.labels, *[pl.when(f).then(pl.col(c)).alias(c) for c, f in zip(self.columns, fresh, strict=True)]
        )

    def snapshot(self) -> dict[str, Any]:
        """The newest samples (a frame: immutable, no aliasing)."""
        return {"latest": self.latest.clone(), "columns": list(self.columns), "newest": self.newest}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        self.latest = state["latest"].clone()
        self.columns = list(state["columns"])
        self.newest = state["newest"]

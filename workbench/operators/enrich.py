"""Enrichment: join a reference table onto events by key.

Columns the events already have are kept where present and filled from the
reference where null; new columns are added. Unmatched keys keep nulls and are
counted, never dropped.

Examples
--------
>>> import polars as pl
>>> table = pl.DataFrame({"host": ["a"], "service": ["web"], "owner": ["sre"]})
>>> e = Enricher(table, on="host")
>>> out = e.process(pl.DataFrame({"host": ["a", "b"], "service": [None, "db"]}))
>>> out.rows(), e.unmatched
([('a', 'web', 'sre'), ('b', 'db', None)], 1)
"""

from __future__ import annotations

import polars as pl

from workbench.errors import ConfigError

__all__ = ["Enricher"]


class Enricher:
    """Left-join a reference table on ``on``.

    Parameters
    ----------
    table
        Reference rows, one per key value.
    on
        The join key, present in events and in the table.
    """

    def __init__(self, table: pl.DataFrame, *, on: str) -> None:
        self.on = on
        self.unmatched = 0
        self.set_table(table)

    def set_table(self, table: pl.DataFrame) -> None:
        """Replace the reference table (takes effect with the next batch)."""
        if self.on not in table.columns:
            raise ConfigError(f"enrich: reference table has no key column {self.on!r}; columns: {table.columns}")
        dupes = table.height - table[self.on].n_unique()
        if dupes:
            raise ConfigError(f"enrich: key {self.on!r} must be unique in the reference table; {dupes} repeats")
        self.table = table

    def process(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Join the reference columns onto ``frame``."""
        ref = self.table.rename({c: f"__ref_{c}" for c in self.table.columns if c != self.on})
        ref = ref.with_columns(pl.lit(True).alias("__matched"))
        if ref.schema[self.on] != frame.schema[self.on]:
            ref = ref.with_columns(pl.col(self.on).cast(frame.schema[self.on]))
        joined = frame.join(ref, on=self.on, how="left", maintain_order="left")
        self.unmatched += int(joined["__matched"].null_count())
        cols = []
        for c in self.table.columns:
            if c == self.on:
                continue
            if c in frame.columns:
                cols.append(pl.coalesce(pl.col(c), pl.col(f"__ref_{c}").cast(frame.schema[c])).alias(c))
            else:
                cols.append(pl.col(f"__ref_{c}").alias(c))
        return joined.with_columns(cols).select(
            *frame.columns, *[c for c in self.table.columns if c not in frame.columns]
        )

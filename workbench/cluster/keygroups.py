"""Key groups: the fixed unit of keyed state, and their assignment to workers.

An entity (a host, a sensor …) belongs to key group ``xxh3_64(key bytes) % G``.
``G`` (default 128) is fixed for the life of a checkpoint: it is recorded in every
manifest, and a pipeline resumed with another ``G`` is refused, because an entity's
state lives in the file of its key group. The hash is xxHash's XXH3 (64 bit, seed 0):
the same in every process, machine and version — unlike Python's ``hash()`` (salted
per process) or polars' hash (stable only within one polars version).

The key bytes are the UTF-8 text of the key columns joined by ``\\x1f`` (a null is
``\\x00``). Key groups are assigned to workers in contiguous ranges over the workers
sorted by address: worker ``i`` of ``N`` holds ``[i·G/N, (i+1)·G/N)``.

Examples
--------
>>> import polars as pl
>>> kg = key_groups(pl.DataFrame({"host": ["web-1", "web-2", "web-1"]}), ["host"], 128)
>>> kg.to_list()[0] == kg.to_list()[2], kg.to_list()[0] == key_group(b"web-1", 128)
(True, True)
>>> assign(8, ["tcp://b:1", "tcp://a:1"])
{'tcp://a:1': [0, 1, 2, 3], 'tcp://b:1': [4, 5, 6, 7]}
"""

from __future__ import annotations

import polars as pl
import xxhash

from workbench.errors import ConfigError

__all__ = ["DEFAULT_KEY_GROUPS", "RULE", "assign", "key_group", "key_groups"]

#: Key groups when none is given: enough for 128 workers, few enough that per-group costs stay small.
DEFAULT_KEY_GROUPS = 128

#: The name of the assignment rule, recorded in every manifest.
RULE = "contiguous ranges over workers sorted by address"


def key_group(key: bytes, groups: int) -> int:
    """The key group of one entity key."""
    return xxhash.xxh3_64_intdigest(key) % groups


def key_groups(frame: pl.DataFrame, by: list[str], groups: int) -> pl.Series:
    """The key group of every row (``UInt32``); all rows are group 0 without key columns.

    Hashes each distinct key once, so the cost is per entity, not per row.
    """
    if groups < 1:
        raise ConfigError(f"key groups: must be >= 1, not {groups}")
    if not by or frame.height == 0:
        return pl.Series("__kg", [0] * frame.height, dtype=pl.UInt32)
    text = [pl.col(c).cast(pl.String).fill_null("\x00") for c in by]
    keys = frame.select(pl.concat_str(text, separator="\x1f").alias("__key")).to_series()
    distinct = keys.unique()
    groups_of = pl.Series([key_group(k.encode(), groups) for k in distinct.to_list()], dtype=pl.UInt32)
    return keys.replace_strict(distinct, groups_of, return_dtype=pl.UInt32).rename("__kg")


def assign(groups: int, workers: list[str]) -> dict[str, list[int]]:
    """Key groups of each worker: contiguous ranges over the workers sorted by address."""
    if not workers:
        raise ConfigError("key groups: no live worker to assign them to")
    ordered = sorted(workers)
    n = len(ordered)
    return {w: list(range(i * groups // n, (i + 1) * groups // n)) for i, w in enumerate(ordered)}

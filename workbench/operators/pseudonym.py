"""Pseudonymisation: chosen fields (user ids, IP addresses, host names) replaced by a keyed HMAC.

A pseudonym is the first ``length`` hex digits of HMAC-SHA256 under the pseudonym key
(``WORKBENCH_PSEUDONYM_KEY`` or ``WORKBENCH_PSEUDONYM_KEY_FILE``, see
:mod:`workbench.storage.keys`) of the value's text. The same value and key give the
same pseudonym in every field, batch, run and process, so counts, joins and windows by
entity still work; without the key nobody can tell which value it stands for, or test
a guess. Nulls stay null. Put it right after ``validate`` so nothing downstream — the
dedupe, the windows, the lake, the views — ever holds the clear value.

Examples
--------
>>> import polars as pl
>>> p = Pseudonymizer(["user", "ip"], key=bytes(32))
>>> out = p.process(pl.DataFrame({"user": ["ana", "bob", "ana", None], "ip": ["10.0.0.1"] * 4, "n": [1, 2, 3, 4]}))
>>> out["user"].to_list()
['aa50888b6abcd3a0', '8ac86c0627fad0e0', 'aa50888b6abcd3a0', None]
>>> out["n"].to_list(), p.pseudonym("ana") == out["user"][0]
([1, 2, 3, 4], True)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Sequence

import polars as pl

from workbench.errors import ConfigError

__all__ = ["WITHHELD", "Pseudonymizer"]

#: What a dead letter's raw record becomes when it cannot be read to pseudonymise it
WITHHELD = b"<withheld: a record with pseudonymised fields that could not be read as a JSON object>"


class Pseudonymizer:
    """Replace ``fields`` by keyed pseudonyms (stateless: nothing to checkpoint).

    Parameters
    ----------
    fields
        Column names; a field a batch lacks is left alone (a schema may make it optional).
    key
        32+ secret bytes (default: the pseudonym key of the environment or its key file).
    length
        Hex digits kept (8–64; 16 = 64 bits: collisions negligible below billions of values).
    """

    def __init__(self, fields: Sequence[str], *, key: bytes | None = None, length: int = 16) -> None:
        if isinstance(fields, str) or not fields:
            raise ConfigError(f"pseudonymize: expected a list of field names, not {fields!r}")
        if not 8 <= length <= 64:
            raise ConfigError(f"pseudonymize: length must be within [8, 64], not {length}")
        if key is None:
            from workbench.storage.keys import load_key

            key = load_key("pseudonym").derive("pseudonym/hmac")
        if len(key) < 32:
            raise ConfigError(f"pseudonymize: the key must have at least 32 bytes, not {len(key)}")
        self.fields, self.length = list(fields), length
        self._key = key

    def pseudonym(self, value: object) -> str:
        """The pseudonym of one value (of its text)."""
        return hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()[: self.length]

    def process(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with each of the fields replaced (one HMAC per distinct value of the batch)."""
        cols = []
        for name in self.fields:
            if name not in frame.columns:
                continue
            text = frame[name].cast(pl.String)
            values = text.drop_nulls().unique().to_list()
            mapping = {v: self.pseudonym(v) for v in values}
            cols.append(text.replace_strict(mapping, default=None, return_dtype=pl.String).alias(name))
        return frame.with_columns(cols) if cols else frame

    def scrub(self, dead: pl.DataFrame, nodes: Collection[str] = ("decode", "validate")) -> pl.DataFrame:
        """Dead letters of ``nodes`` (before this one) with the fields pseudonymised in their raw record and reason.

        A raw record that is not a JSON object (a CSV line, garbage) is :data:`WITHHELD`: it
        may hold the clear values, and nothing stored may.

        Examples
        --------
        >>> p = Pseudonymizer(["user"], key=bytes(32))
        >>> dead = pl.DataFrame({"node": ["validate", "decode"], "field": ["user", None],
        ...                      "reason": ["field 'user' = 'ana' is too long", "not JSON"],
        ...                      "raw": [b'{"user": "ana", "n": 1}', b"ana,1"]})
        >>> out = p.scrub(dead)
        >>> out["raw"].to_list()[0], out["reason"][0]
        (b'{"user": "aa50888b6abcd3a0", "n": 1}', "field 'user' = 'aa50888b6abcd3a0' is too long")
        >>> out["raw"][1] == WITHHELD
        True
        """
        if dead.height == 0 or not {"node", "raw", "reason"} <= set(dead.columns):
            return dead
        fields = dead["field"].to_list() if "field" in dead.columns else [None] * dead.height
        raws, reasons = dead["raw"].to_list(), dead["reason"].to_list()
        for i, node in enumerate(dead["node"].to_list()):
            if node in nodes:
                raws[i], reasons[i] = self._scrub_one(raws[i], reasons[i], fields[i])
        return dead.with_columns(pl.Series("raw", raws, dtype=pl.Binary), pl.Series("reason", reasons, dtype=pl.String))

    def _scrub_one(self, raw: bytes | None, reason: str | None, field: str | None) -> tuple[bytes | None, str | None]:
        try:
            record = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):
            return (WITHHELD if raw else raw), reason
        for name in self.fields:
            value = record.get(name)
            if value is None:
                continue
            record[name] = self.pseudonym(value)
            if reason and field == name:
                reason = reason.replace(str(value), record[name])
        return json.dumps(record, ensure_ascii=False).encode(), reason

    def __repr__(self) -> str:
        return f"Pseudonymizer({self.fields!r}, length={self.length})"

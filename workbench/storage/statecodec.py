"""State trees as JSON plus binary sections: frames as Arrow IPC, opaque objects as pickle.

Every node's ``snapshot()`` is a tree of dicts, lists and scalars with polars frames
inside, and a few opaque objects (river models, detectors). :func:`encode` turns such
a tree into a JSON-able tree and a list of sections; :func:`decode` reverses it.
JSON and Arrow IPC cannot run code when read. Pickle can, so :func:`decode` unpickles
only when told the bytes are authenticated (``trusted=True``); the checkpoint
container sets it after its HMAC check, and nothing else does.

Tagged values (a dict whose only keys are ``"$"`` and a payload):

========== ==================================================
``frame``  a polars DataFrame (section: Arrow IPC)
``series`` a polars Series (section: a one-column frame)
``tuple``, ``set``, ``frozenset``, ``dict``, ``odict`` containers (``dict``: keys that are not strings)
``float``  ``nan``, ``inf``, ``-inf``
``bytes``, ``datetime``, ``date``, ``timedelta``, ``ndarray`` (section: ``.npy``, no pickle)
``record`` a dataclass of ``workbench`` (its fields, encoded)
``pickle`` anything else (an index into the one last section: a pickle of a list)
========== ==================================================

Examples
--------
>>> import polars as pl
>>> tree = {"n": 3, "frame": pl.DataFrame({"k": ["a"]}), "pair": (1, 2.5), "by_id": {7: None}}
>>> doc, sections = encode(tree)
>>> doc["n"], doc["frame"], doc["by_id"], [kind for kind, _ in sections]
(3, {'$': 'frame', 'i': 0}, {'$': 'dict', 'v': [[7, None]]}, ['arrow'])
>>> back = decode(doc, sections, trusted=False)
>>> back["pair"], back["by_id"], back["frame"].equals(tree["frame"])
((1, 2.5), {7: None}, True)
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import io
import math
import pickle
from collections import OrderedDict
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import CheckpointError

__all__ = ["decode", "encode", "pack", "unpack"]

Sections = list[tuple[str, bytes]]

_SCALARS = (str, int, bool, type(None))


def _frame_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc(buf, compression="lz4")
    return buf.getvalue()


class _Encoder:
    def __init__(self) -> None:
        self.sections: Sections = []
        self.opaque: list[Any] = []  # pickled together, once: one memo, as fast as one pickle of the tree

    def section(self, kind: str, data: bytes) -> int:
        self.sections.append((kind, data))
        return len(self.sections) - 1

    def enc(self, x: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value
        if isinstance(x, _SCALARS) and not isinstance(x, np.generic):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {"$": "float", "v": repr(x)}
        if isinstance(x, np.generic):
            return self.enc(x.item())
        if isinstance(x, pl.DataFrame):
            return {"$": "frame", "i": self.section("arrow", _frame_bytes(x))}
        if isinstance(x, pl.Series):
            return {"$": "series", "i": self.section("arrow", _frame_bytes(x.to_frame()))}
        if type(x) is dict:
            if all(isinstance(k, str) for k in x) and "$" not in x:
                return {k: self.enc(v) for k, v in x.items()}
            return {"$": "dict", "v": [[self.enc(k), self.enc(v)] for k, v in x.items()]}
        if type(x) is OrderedDict:
            return {"$": "odict", "v": [[self.enc(k), self.enc(v)] for k, v in x.items()]}
        if type(x) is list:
            return [self.enc(v) for v in x]
        if type(x) in (tuple, set, frozenset):
            return {"$": type(x).__name__, "v": [self.enc(v) for v in x]}
        if isinstance(x, bytes):
            return {"$": "bytes", "v": base64.b64encode(x).decode()}
        if type(x) in (datetime, date, timedelta):
            value = x.total_seconds() if isinstance(x, timedelta) else x.isoformat()
            return {"$": type(x).__name__, "v": value}
        if isinstance(x, np.ndarray) and x.dtype != object:
            buf = io.BytesIO()
            np.save(buf, x, allow_pickle=False)
            return {"$": "ndarray", "i": self.section("npy", buf.getvalue())}
        if dataclasses.is_dataclass(x) and type(x).__module__.startswith("workbench.") and hasattr(x, "__dict__"):
            cls = type(x)
            return {"$": "record", "type": f"{cls.__module__}:{cls.__qualname__}", "v": self.enc(dict(vars(x)))}
        self.opaque.append(x)
        return {"$": "pickle", "i": len(self.opaque) - 1}


def encode(tree: Any) -> tuple[Any, Sections]:
    """A JSON-able document and its binary sections ``[(kind, bytes), …]`` for ``tree``.

    Opaque objects go, together, into one last section of kind ``"pickle"``.
    """
    encoder = _Encoder()
    doc = encoder.enc(tree)
    if encoder.opaque:
        encoder.section("pickle", pickle.dumps(encoder.opaque, protocol=pickle.HIGHEST_PROTOCOL))
    return doc, encoder.sections


def _record_type(name: str) -> Any:
    module, _, qualname = name.partition(":")
    if not module.startswith("workbench.") or "." in qualname:
        raise CheckpointError(f"checkpoint state: record type {name!r} is not a workbench dataclass")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise CheckpointError(f"checkpoint state: record type {name!r} is not a workbench dataclass")
    return cls


class _Decoder:
    def __init__(self, sections: Sections, trusted: bool) -> None:
        self.sections = sections
        self.trusted = trusted
        self._opaque: list[Any] | None = None

    def opaque(self, i: Any) -> Any:
        if not self.trusted:
            raise CheckpointError("checkpoint state: refusing to unpickle bytes that were not authenticated")
        if self._opaque is None:
            kinds = [k for k, _ in self.sections]
            if kinds.count("pickle") != 1 or kinds[-1] != "pickle":
                raise CheckpointError("checkpoint state: expected one pickle section, last")
            self._opaque = pickle.loads(self.sections[-1][1])  # noqa: S301 - authenticated by the caller
        if not (isinstance(i, int) and 0 <= i < len(self._opaque)):
            raise CheckpointError(f"checkpoint state: no pickled object {i!r}")
        return self._opaque[i]

    def section(self, i: int, kind: str) -> bytes:
        if not (isinstance(i, int) and 0 <= i < len(self.sections)) or self.sections[i][0] != kind:
            raise CheckpointError(f"checkpoint state: no {kind} section {i!r}")
        return self.sections[i][1]

    def dec(self, x: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per tag
        if isinstance(x, list):
            return [self.dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        tag = x.get("$")
        if tag is None:
            return {k: self.dec(v) for k, v in x.items()}
        if tag in ("frame", "series"):
            frame = pl.read_ipc(io.BytesIO(self.section(x["i"], "arrow")))
            return frame if tag == "frame" else frame.to_series()
        if tag in ("dict", "odict"):
            pairs = [(_hashable(self.dec(k)), self.dec(v)) for k, v in x["v"]]
            return dict(pairs) if tag == "dict" else OrderedDict(pairs)
        if tag in ("tuple", "set", "frozenset"):
            items = [self.dec(v) for v in x["v"]]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](
                items if tag == "tuple" else map(_hashable, items)
            )
        if tag == "float":
            return float(x["v"])
        if tag == "bytes":
            return base64.b64decode(x["v"])
        if tag == "datetime":
            return datetime.fromisoformat(x["v"])
        if tag == "date":
            return date.fromisoformat(x["v"])
        if tag == "timedelta":
            return timedelta(seconds=x["v"])
        if tag == "ndarray":
            return np.load(io.BytesIO(self.section(x["i"], "npy")), allow_pickle=False)
        if tag == "record":
            cls = _record_type(x["type"])
            obj = cls.__new__(cls)
            vars(obj).update(self.dec(x["v"]))
            return obj
        if tag == "pickle":
            return self.opaque(x["i"])
        raise CheckpointError(f"checkpoint state: unknown tag {tag!r}")


def _hashable(x: Any) -> Any:
    return tuple(_hashable(v) for v in x) if isinstance(x, list) else x


def decode(doc: Any, sections: Sections, *, trusted: bool) -> Any:
    """The tree :func:`encode` made; pickle sections only when ``trusted`` (authenticated)."""
    return _Decoder(sections, trusted).dec(doc)


def pack(tree: Any) -> bytes:
    """One byte string of a state tree: a JSON index, then the sections (see :func:`unpack`).

    Examples
    --------
    >>> unpack(pack({"n": 1, "f": pl.DataFrame({"k": [1]})}), trusted=False)["f"]["k"].to_list()
    [1]
    """
    import json
    import struct

    doc, sections = encode(tree)
    index = json.dumps({"state": doc, "sections": [[kind, len(data)] for kind, data in sections]}).encode()
    return b"".join([struct.pack(">Q", len(index)), index, *(data for _, data in sections)])


def unpack(data: bytes, *, trusted: bool) -> Any:
    """The tree :func:`pack` made; ``trusted`` only for bytes checked against an authenticated checksum."""
    import json
    import struct

    try:
        (n,) = struct.unpack(">Q", data[:8])
        index = json.loads(data[8 : 8 + n])
    except (struct.error, ValueError) as exc:
        raise CheckpointError(f"state bytes: not a packed state tree ({exc})") from exc
    pos, sections = 8 + n, []
    for kind, size in index["sections"]:
        sections.append((kind, data[pos : pos + size]))
        pos += size
    if pos != len(data):
        raise CheckpointError(f"state bytes: length {len(data)} does not match the index ({pos})")
    return decode(index["state"], sections, trusted=trusted)

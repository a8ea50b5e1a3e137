"""Byte-level helpers and native kernels, in one home: the NDJSON decoder, line scans, string-view facts.

- this module: the native NDJSON fast path, compiled from C source on first use and
  loaded with :mod:`ctypes` (:mod:`workbench.native.build` builds and loads every C
  source of this package);
- :mod:`workbench.native.context`: the context detector's memory in C (``context.c``);
- :mod:`workbench.native.lines`: line boundaries, high bytes and token occurrences in
  NDJSON bytes, found in bulk with numpy (the fallback of the C scans);
- :mod:`workbench.native.strings`: first bytes and byte lengths of polars string
  columns, read from their Arrow views without a copy.

The NDJSON fast path (``ndjson.c``, see :func:`parse_ndjson`)
takes the common, simple record — a flat object of schema fields with plain ASCII
strings and numbers of the right type — straight into Arrow columns, and flags every
other line for the general decoder, which finds the exact reason. It decides what is
certainly accepted, never what is rejected.

Each library is compiled with the system C compiler (``$CC``, else ``cc``) the first
time it is needed, into this package's folder or, when that is read-only, into
``$XDG_CACHE_HOME/workbench``; its file name carries a hash of the source and the
platform, so an edited source or another Python builds afresh. Without a compiler
the decoder falls back on polars alone (correct, slower); ``WORKBENCH_NATIVE=0``
chooses that on purpose. :func:`status` says which one runs.

Examples
--------
>>> import numpy as np
>>> from workbench.schema import SERVER_METRICS
>>> data = b'{"event_id":"a","ts":1700000000000,"host":"h1","cpu":1.5}\\n{"event_id":"b","cpu":"1.5"}'
>>> cut = data.index(b"\\n")
>>> taken, frame = parse_ndjson(data, np.array([0, cut + 1]), np.array([cut, len(data)]), SERVER_METRICS)
>>> taken.tolist()  # the second line has a string for a number: left to the general decoder
[True, False]
>>> frame.select("event_id", "ts", "cpu", "status").rows()
[('a', '1700000000000', 1.5, None)]
"""

from __future__ import annotations

import contextlib
import ctypes
import weakref
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from workbench.native.build import NativeLibrary
from workbench.schema import Schema

__all__ = ["available", "disabled", "newlines", "parse_ndjson", "status"]

_SOURCE = Path(__file__).with_name("ndjson.c")
_KINDS = {"str": 0, "float": 1, "int": 2, "ts": 3}


def _setup(lib: ctypes.CDLL) -> str | None:
    lib.wb_init.restype = ctypes.c_int64
    if lib.wb_init() != 1:
        return "the native library could not create a C locale"
    lib.wb_parse_ndjson.restype = ctypes.c_int64
    vp, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    # buf, starts, ends, n, nfields, names, name_lens, kinds, max_record, status, values, valid, data, used
    lib.wb_parse_ndjson.argtypes = [vp, vp, vp, i64, i32, vp, vp, vp, i64, vp, vp, vp, vp, vp]
    lib.wb_newlines.restype = ctypes.c_int64
    lib.wb_newlines.argtypes = [vp, i64, vp, i64]
    return None


_NDJSON = NativeLibrary(_SOURCE, "_wbndjson", "native NDJSON decoder", "decoding with polars alone", "polars", _setup)


def _load() -> ctypes.CDLL | None:
    return _NDJSON.usable()


def available() -> bool:
    """Whether the native NDJSON decoder is in use (building it if need be)."""
    return _NDJSON.available()


def status() -> str:
    """``"native"``, or ``"polars (…why…)"`` when the fast path is not in use."""
    return _NDJSON.status()


def disabled() -> contextlib.AbstractContextManager[None]:
    """Decode with polars alone inside this block (the reference the fast path is checked against).

    Process-wide, for tests and benchmarks: batches decoding on other threads meanwhile
    take the polars path too.
    """
    return _NDJSON.disabled()


class _Spec:
    """A schema's fields in the form the C code reads, built once per schema."""

    def __init__(self, schema: Schema) -> None:
        self.fields = [f for f in schema.fields]
        self.names = [f.name.encode() for f in self.fields]
        self.c_names = (ctypes.c_char_p * len(self.names))(*self.names)
        self.lens = np.array([len(n) for n in self.names], dtype=np.int32)
        self.kinds = np.array([_KINDS[f.kind] for f in self.fields], dtype=np.int32)
        self.max_record = schema.max_record_bytes
        self.wire = schema.wire_schema


_specs: dict[int, tuple[Schema, _Spec]] = {}


def _spec(schema: Schema) -> _Spec | None:
    hit = _specs.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if not 0 < len(schema.fields) <= 64 or any(f.kind not in _KINDS for f in schema.fields):
        return None
    spec = _Spec(schema)
    if len(_specs) > 64:  # bounded: schemas are few, but ids may be reused
        _specs.clear()
    _specs[id(schema)] = (schema, spec)
    return spec


class _Pool:
    """Output memory reused from batch to batch.

    Fresh memory costs a page fault per 4 kB on first touch — on a virtual machine
    as much as the decoding itself — so the decoder's output buffers come from blocks
    that earlier batches used. A block lent to a column comes back when the last
    reference to that column's memory goes; at most ``keep`` free blocks of each size
    are kept, the rest are freed. Blocks are sized to what they hold (the next power of
    two), so the memory kept is bounded by ``keep`` times the batches' own needs.
    """

    def __init__(self, keep: int = 16) -> None:
        self._free: dict[int, list[np.ndarray]] = {}
        self._keep = keep

    def take(self, nbytes: int) -> np.ndarray:
        """A block of at least ``nbytes`` bytes (sizes are powers of two, at least 64 kB)."""
        size = max(1 << 16, 1 << max(nbytes - 1, 0).bit_length())
        free = self._free.get(size)
        if free:
            with contextlib.suppress(IndexError):  # another thread took the last one
                return free.pop()
        return np.empty(size, dtype=np.uint8)

    def give(self, block: np.ndarray) -> None:
        """Return a block nothing refers to any more."""
        free = self._free.setdefault(len(block), [])
        if len(free) < self._keep:
            free.append(block)

    def lend(self, block: np.ndarray, nbytes: int) -> np.ndarray:
        """``block[:nbytes]``; the block comes back when that view is gone.

        The view handed out must be the object that its users hold on to (numpy
        slices of it refer to ``block``, not to the view).
        """
        view = block[:nbytes]
        weakref.finalize(view, self.give, block).atexit = False
        return view

    def free_bytes(self) -> int:
        """Bytes held in free blocks."""
        return sum(len(b) for blocks in list(self._free.values()) for b in list(blocks))


_POOL = _Pool()


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def newlines(data: bytes | bytearray) -> np.ndarray | None:
    """Positions (int64, ascending) of every ``\\n`` in ``data`` by ``memchr``; ``None`` without the library."""
    lib = _load()
    if lib is None:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    if not len(buf):
        return np.empty(0, dtype=np.int64)
    cap = len(buf) // 64 + 1024  # lines are rarely shorter; if they are, ask again
    out = np.empty(cap, dtype=np.int64)
    count = lib.wb_newlines(_ptr(buf), len(buf), _ptr(out), cap)
    if count > cap:
        out = np.empty(count, dtype=np.int64)
        lib.wb_newlines(_ptr(buf), len(buf), _ptr(out), count)
    return out[:count]


def parse_ndjson(
    data: bytes | bytearray, starts: np.ndarray, ends: np.ndarray, schema: Schema
) -> tuple[np.ndarray, pl.DataFrame] | None:
    """Decode the simple lines of a batch; ``None`` when the fast path is unavailable.

    Parameters
    ----------
    data
        The batch's bytes.
    starts, ends
        Each line's span in ``data`` (int64; a trailing CR already excluded).
    schema
        The event schema; the frame has its wire types.

    Returns
    -------
    (taken, frame)
        ``taken``: for each line, whether it was decoded here; ``frame``: one row per
        taken line, in line order, equal to what ``pl.read_ndjson`` gives for it.
        The other lines are left to the general decoder.
    """
    lib = _load()
    spec = _spec(schema) if lib is not None else None
    if lib is None or spec is None or len(data) >= 1 << 31:  # string views hold 32-bit offsets
        return None
    n = len(starts)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    ends = np.ascontiguousarray(ends, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    nf = len(spec.fields)
    status = _POOL.take(n)
    valid = [_POOL.take(n) for _ in spec.fields]
    values = [_POOL.take(n * (16 if f.kind in ("str", "ts") else 8)) for f in spec.fields]
    strdata = [_POOL.take(len(buf) + 1) if f.kind in ("str", "ts") else None for f in spec.fields]
    used = np.zeros(nf, dtype=np.int64)
    ptrs = ctypes.c_void_p * nf
    rows = lib.wb_parse_ndjson(
        _ptr(buf) if len(buf) else None,
        _ptr(starts),
        _ptr(ends),
        n,
        nf,
        spec.c_names,
        _ptr(spec.lens),
        _ptr(spec.kinds),
        spec.max_record,
        _ptr(status),
        ptrs(*[_ptr(v) for v in values]),
        ptrs(*[_ptr(v) for v in valid]),
        ptrs(*[None if d is None else _ptr(d) for d in strdata]),
        _ptr(used),
    )
    if rows < 0:
        raise RuntimeError("native NDJSON decoder refused the call")
    taken = status[:n] == 0
    _POOL.give(status)
    columns = {}
    for k, f in enumerate(spec.fields):
        ok = valid[k][:rows].view(bool)
        nulls = rows - int(np.count_nonzero(ok))
        bitmap = pa.py_buffer(np.packbits(ok, bitorder="little")) if nulls else None
        _POOL.give(valid[k])
        block = strdata[k]
        if block is not None:
            size = int(used[k])
            if size:  # copied out of the batch-sized scratch block, so a column holds what it uses
                own = _POOL.take(size)
                own[:size] = block[:size]
                body = pa.py_buffer(_POOL.lend(own, size))
            else:  # every value inline in its view
                body = pa.py_buffer(b"")
            _POOL.give(block)
            views = pa.py_buffer(_POOL.lend(values[k], rows * 16))
            arr = pa.Array.from_buffers(pa.string_view(), rows, [bitmap, views, body], null_count=nulls)
        else:
            typ = pa.float64() if f.kind == "float" else pa.int64()
            body = pa.py_buffer(_POOL.lend(values[k], rows * 8))
            arr = pa.Array.from_buffers(typ, rows, [bitmap, body], null_count=nulls)
        columns[f.name] = pl.from_arrow(arr)
    frame = pl.DataFrame(columns).cast(spec.wire)  # type: ignore[arg-type]
    return taken, frame

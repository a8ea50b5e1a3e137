"""The context detector's memory in C (``context.c``): one stream's quantiser, context memory and prediction.

:class:`ContextKernel` is what :class:`workbench.models.context.ContextDetector` steps
per value when the library can be built; the pure-Python ``ContextMemory`` stays the
reference and the fallback (no compiler, ``WORKBENCH_NATIVE=0``, or inside
:func:`disabled`), and both give bit-identical scores. A kernel's state comes out as
bytes (:meth:`ContextKernel.dump`) and goes back in (:meth:`ContextKernel.load`): the
layout is described at the top of ``context.c``; ``workbench.models.context_state``
reads and writes the same layout for the Python memory.

Examples
--------
>>> import numpy as np
>>> kernel = ContextKernel.build(bits=3, max_left=7, max_active=15, max_contexts=1000, bin_low=0.0, step=1.0,
...                              recent=np.arange(24.0) % 8) if available() else None
>>> kernel is None or [kernel.advance(float(v)) for v in (0, 1, 2)] == [0.0, 0.0, 0.0]
True
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path

import numpy as np

from workbench.native.build import NativeLibrary

__all__ = ["ContextKernel", "available", "disabled", "status"]


def _setup(lib: ctypes.CDLL) -> str | None:
    vp, i64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    lib.wb_cad_build.restype = vp
    lib.wb_cad_build.argtypes = [i64, i64, i64, i64, f64, f64, vp, i64]
    lib.wb_cad_advance.restype = f64
    lib.wb_cad_advance.argtypes = [vp, f64]
    lib.wb_cad_size.restype = i64
    lib.wb_cad_size.argtypes = [vp]
    lib.wb_cad_free.restype = None
    lib.wb_cad_free.argtypes = [vp]
    lib.wb_cad_dump.restype = i64
    lib.wb_cad_dump.argtypes = [vp, vp, i64]
    lib.wb_cad_load.restype = vp
    lib.wb_cad_load.argtypes = [vp, i64]
    return None


_LIBRARY = NativeLibrary(
    Path(__file__).with_name("context.c"),
    "_wbcontext",
    "native context kernel",
    "detecting in pure Python",
    "python",
    _setup,
)


def available() -> bool:
    """Whether new context memories are native (building the library if need be)."""
    return _LIBRARY.available()


def status() -> str:
    """``"native"``, or ``"python (…why…)"`` when context memories are pure Python."""
    return _LIBRARY.status()


def disabled() -> contextlib.AbstractContextManager[None]:
    """Build pure-Python context memories inside this block (the reference the kernel is checked against).

    Process-wide, for tests and benchmarks; memories built before keep their kind.
    """
    return _LIBRARY.disabled()


class ContextKernel:
    """One stream's context memory in C: the bins, the memory and its last prediction.

    Build it with :meth:`build` (a rebuild: a fresh memory taught the recent values) or
    :meth:`load` (from :meth:`dump`'s bytes); ``len()`` is its number of contexts.
    """

    __slots__ = ("_free", "_handle", "_lib")

    def __init__(self, lib: ctypes.CDLL, handle: int) -> None:
        self._lib, self._free = lib, lib.wb_cad_free
        self._handle: int | None = handle

    @classmethod
    def build(
        cls,
        *,
        bits: int,
        max_left: int,
        max_active: int,
        max_contexts: int,
        bin_low: float,
        step: float,
        recent: np.ndarray,
    ) -> ContextKernel:
        """A fresh memory over bins of ``step`` from ``bin_low``, taught ``recent`` (oldest first, not scored)."""
        lib = _LIBRARY.load()
        if lib is None:
            raise RuntimeError(f"native context kernel unavailable: {_LIBRARY.why}")
        values = np.ascontiguousarray(recent, dtype=np.float64)
        ptr = values.ctypes.data if len(values) else None
        handle = lib.wb_cad_build(bits, max_left, max_active, max_contexts, bin_low, step, ptr, len(values))
        if not handle:
            raise ValueError(
                f"native context kernel: bits must be 1..8, max_left >= 0, max_active >= 1, max_contexts >= 0; "
                f"not {bits}, {max_left}, {max_active}, {max_contexts}"
            )
        return cls(lib, handle)

    @classmethod
    def load(cls, state: bytes) -> ContextKernel:
        """The kernel whose :meth:`dump` gave ``state``."""
        lib = _LIBRARY.load()
        if lib is None:
            raise RuntimeError(f"native context kernel unavailable: {_LIBRARY.why}")
        words = np.frombuffer(state, dtype="<i8") if len(state) % 8 == 0 else np.empty(0, dtype="<i8")
        handle = lib.wb_cad_load(words.ctypes.data if len(words) else None, len(words))
        if not handle:
            raise ValueError(f"native context kernel: {len(state)} bytes are not a context memory's state")
        return cls(lib, handle)

    def advance(self, value: float) -> float:
        """The raw score of ``value``, learned; -1.0 (nothing learned) when the memory is full."""
        return float(self._lib.wb_cad_advance(self._handle, value))

    def dump(self) -> bytes:
        """The state as bytes (little-endian int64 words)."""
        size = self._lib.wb_cad_dump(self._handle, None, 0)
        words = np.empty(size, dtype="<i8")
        self._lib.wb_cad_dump(self._handle, words.ctypes.data, size)
        return words.tobytes()

    def __len__(self) -> int:
        return int(self._lib.wb_cad_size(self._handle))

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._free(handle)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (ContextKernel.load, (self.dump(),))

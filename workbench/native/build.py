"""A C source of this package, compiled with the system compiler on first use and loaded with :mod:`ctypes`.

Every native library of :mod:`workbench.native` is one :class:`NativeLibrary`: its file
name carries a hash of the source and the platform (an edited source or another Python
builds afresh, and the build replaces the builds of earlier sources); it is built into
the package's folder or, when that is read-only, into ``$XDG_CACHE_HOME/workbench``; a
failed build, or ``WORKBENCH_NATIVE=0``, leaves ``lib`` ``None`` and says why in ``why``,
so the caller takes its pure-Python path; so does a :meth:`NativeLibrary.disabled` block.

Examples
--------
>>> from pathlib import Path
>>> lib = NativeLibrary(Path(__file__).with_name("ndjson.c"), "_wbndjson", "NDJSON decoder", "polars alone", "polars")
>>> lib.target().startswith("_wbndjson-") and lib.target().endswith(".so")
True
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import subprocess
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["NativeLibrary"]

log = logging.getLogger("workbench.native")


class NativeLibrary:
    """One C source and the shared library built from it, loaded once per process.

    Parameters
    ----------
    source
        The C file.
    stem
        The library's file name before ``-<hash>.so``.
    what
        What it is, for the warning when it cannot be built (``"native NDJSON decoder"``).
    fallback
        What runs instead, for the same warning (``"decoding with polars alone"``).
    label
        The fallback's name in :meth:`status` (``"polars"``).
    setup
        Declares the functions' argument and result types on the loaded library; returns
        why the library cannot be used (``None``: it can).
    """

    def __init__(
        self,
        source: Path,
        stem: str,
        what: str,
        fallback: str,
        label: str = "python",
        setup: Callable[[ctypes.CDLL], str | None] | None = None,
    ) -> None:
        self.source, self.stem, self.what, self.fallback, self.setup = source, stem, what, fallback, setup
        self.label = label
        self.lib: ctypes.CDLL | None = None
        self.why: str | None = None  # why there is no library, once that is known
        self._lock = threading.Lock()
        self._off = 0  # depth of active ``disabled()`` blocks

    def usable(self) -> ctypes.CDLL | None:
        """The library, unless inside a :meth:`disabled` block or it cannot be had."""
        return None if self._off else self.load()

    def available(self) -> bool:
        """Whether the library is in use (building it if need be)."""
        return self.usable() is not None

    def status(self) -> str:
        """``"native"``, or ``"<label> (…why…)"`` when the fallback runs."""
        if self._off:
            return f"{self.label} ({self.what} disabled in this block)"
        return "native" if self.available() else f"{self.label} ({self.why})"

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The fallback inside this block (the reference the library is checked against).

        Process-wide, for tests and benchmarks: work on other threads meanwhile takes the
        fallback too.
        """
        with self._lock:
            self._off += 1
        try:
            yield
        finally:
            with self._lock:
                self._off -= 1

    def target(self) -> str:
        """The library's file name: the stem and a hash of the source and platform."""
        digest = hashlib.sha256(self.source.read_bytes() + sysconfig.get_platform().encode()).hexdigest()[:12]
        return f"{self.stem}-{digest}.so"

    def build(self, dest: Path) -> None:
        """Compile the source into ``dest`` (atomically), removing the builds of earlier sources beside it."""
        cc = os.environ.get("CC") or "cc"
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=dest.parent)
        os.close(fd)
        try:
            cmd = [*cc.split(), "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-std=c11", "-o", tmp]
            cmd += [str(self.source), "-lm"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise OSError(f"{' '.join(cmd)} failed: {result.stderr.strip()[:500]}")
            os.replace(tmp, dest)  # atomic: a concurrent build leaves one complete file
            for old in dest.parent.glob(f"{self.stem}-*.so"):  # builds of earlier sources
                if old != dest:
                    with contextlib.suppress(OSError):
                        old.unlink()
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def candidates(self) -> list[Path]:
        """Where the library may live: beside the source, else in the user's cache."""
        name = self.target()
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench"
        return [self.source.parent / name, cache / name]

    def load(self) -> ctypes.CDLL | None:
        """The loaded library (built first if need be); ``None`` when it cannot be had (see ``why``)."""
        if self.lib is not None or self.why is not None:
            return self.lib
        with self._lock:
            if self.lib is not None or self.why is not None:
                return self.lib
            if os.environ.get("WORKBENCH_NATIVE", "1") == "0":
                self.why = "disabled by WORKBENCH_NATIVE=0"
                return None
            errors = []
            for path in self.candidates():
                try:
                    if not path.exists():
                        self.build(path)
                    lib = ctypes.CDLL(str(path))  # CDLL: the GIL is released during calls
                    break
                except (OSError, subprocess.SubprocessError) as exc:
                    errors.append(f"{path}: {exc}")
            else:
                self.why = "no C compiler could build it: " + "; ".join(errors)
                log.warning("%s unavailable, %s (%s)", self.what, self.fallback, self.why)
                return None
            why = self.setup(lib) if self.setup is not None else None
            if why is not None:
                self.why = why
                log.warning("%s unavailable, %s (%s)", self.what, self.fallback, self.why)
                return None
            self.lib = lib
            return lib

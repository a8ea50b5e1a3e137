"""The pipeline name registry: one live pipeline per name in a process.

Creating a pipeline with the name of a live one stops and detaches the old one, so
re-running a notebook cell replaces the pipeline instead of adding a second (streamz
holds sinks in a process-global set: adding would multiply the output).

Examples
--------
>>> class P:
...     closed = False
...     def close(self):
...         self.closed = True
>>> names = NameRegistry()
>>> a, b = P(), P()
>>> names.claim("x", a) is None
True
>>> names.claim("x", b) is a, names.live("x") is b
(True, True)
>>> names.release("x", b); names.live("x") is None
True
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["NameRegistry"]


class NameRegistry:
    """Weak references to the live pipeline of each name, and to every pipeline."""

    def __init__(self) -> None:
        self._live: dict[str, weakref.ref[Any]] = {}
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def claim(self, name: str, pipeline: Any) -> Any:
        """Make ``pipeline`` the live one called ``name``; return the one it replaces, if any."""
        with self._lock:
            self._all.add(pipeline)
            old_ref = self._live.get(name)
            old = old_ref() if old_ref else None
            self._live[name] = weakref.ref(pipeline)
        return old if old is not pipeline else None

    def release(self, name: str, pipeline: Any) -> None:
        """Forget ``name`` when ``pipeline`` is still the live one."""
        with self._lock:
            ref = self._live.get(name)
            if ref is not None and ref() is pipeline:
                del self._live[name]

    def live(self, name: str) -> Any:
        """The live pipeline called ``name``, or ``None``."""
        ref = self._live.get(name)
        return ref() if ref else None

    def __len__(self) -> int:
        """Pipeline objects alive in this process."""
        return len(self._all)

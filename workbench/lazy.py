"""Lazy re-exports for package ``__init__`` files: a name is imported on first use.

A package's ``__init__`` lists where each public name lives (a submodule of the
package is named by its own path); importing the package then imports none of them,
so ``workbench --help`` (which imports every wing's ``cli``) starts without polars,
river or panel.

Examples
--------
>>> getattr_, dir_ = exports("pkg", {"sqrt": "math"})
>>> getattr_("sqrt")(9.0), "sqrt" in dir_()
(3.0, True)
>>> getattr_("nope")
Traceback (most recent call last):
...
AttributeError: module 'pkg' has no attribute 'nope'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["defer_streamz_dask", "exports"]


def exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public names live in the modules ``where`` names."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = importlib.import_module(where[name])
        # a submodule of the package is exported as the module itself
        value = target if where[name] == f"{package}.{name}" else getattr(target, name)
        module = sys.modules.get(package)
        if module is not None:
            setattr(module, name, value)  # later look-ups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        module = sys.modules.get(package)
        return sorted({*(vars(module) if module is not None else ()), *where})

    return __getattr__, __dir__


class _StreamzDaskOnDemand:
    """An import finder that keeps streamz's import from importing Dask.

    streamz imports its Dask integration (``streamz.dask``, and ``distributed`` for its
    default client: about a second, and dozens of megabytes) whenever ``distributed``
    is installed. Workbench runs on Dask only with a cluster (:mod:`workbench.cluster`,
    which uses neither), so while streamz itself is being imported those two imports
    are refused (streamz catches both). ``import streamz.dask`` or ``distributed``
    afterwards works as usual; a process that imported ``distributed`` first is unaffected.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in ("streamz.dask", "distributed"):
            parent = sys.modules.get("streamz")
            spec = getattr(parent, "__spec__", None)
            if spec is not None and getattr(spec, "_initializing", False):
                raise ImportError(f"{name} is imported on demand, not by streamz's import")
        return None


def defer_streamz_dask() -> None:
    """Install :class:`_StreamzDaskOnDemand` once (``import workbench`` does it)."""
    if not any(isinstance(f, _StreamzDaskOnDemand) for f in sys.meta_path):
        sys.meta_path.insert(0, _StreamzDaskOnDemand())

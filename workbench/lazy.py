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

__all__ = ["exports"]


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

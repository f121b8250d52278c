"""Packages whose exports are imported on first use (PEP 562), for the Raspberry Pi's start-up.

A package lists where each exported name lives and sets `__getattr__ = lazy_exports(__name__,
homes)`; importing the package then costs nothing until a name is used. (Its `TYPE_CHECKING`
imports of the same names are what type checkers see.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports each name in `homes` (name -> module)
    from its module when first asked for."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(home), name)

    return __getattr__

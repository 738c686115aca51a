"""Lazy re-exports for the stage packages' ``__init__`` (PEP 562).

``from smallmines.mapping import map_scene`` works, yet ``import smallmines.data.layout`` does not
pull in torch, Lightning or GDAL through a package ``__init__``: a name is imported from its module
the first time it is asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def attach(package: str, exports: Mapping[str, Sequence[str]]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for a package that re-exports names of its modules.

    Args:
        package: the package's ``__name__``.
        exports: module -> the names it exports; a submodule by its relative name (``"mapper"``), any
            other module by its full name (``"smallmines.legend"``).

    """
    where = {name: module if module.startswith("smallmines.") else f"{package}.{module}"
             for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:  # noqa: N807
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(where) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, sorted(where)

"""Old import paths of the flat layout (0.1), kept working after the regrouping by pipeline stage.

``import smallmines.evaluation`` or ``from smallmines.change import compare_maps`` still work: the
old name is bound to the module or package that holds the code now, with a DeprecationWarning
naming the new path. Nothing in smallmines imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {
    "smallmines.config": "smallmines.training.config",
    "smallmines.datamodule": "smallmines.training.datamodule",
    "smallmines.task": "smallmines.training.task",
    "smallmines.losses": "smallmines.training.losses",
    "smallmines.metrics": "smallmines.training.metrics",
    "smallmines.baseline": "smallmines.training.baseline",
    "smallmines.evaluation": "smallmines.training.evaluation",
    "smallmines.benchmark": "smallmines.training.benchmarking",
    "smallmines.export": "smallmines.models.export",
    "smallmines.windows": "smallmines.data.windows",
    "smallmines.scene": "smallmines.data.scene",
    "smallmines.vector": "smallmines.mapping.vector",
    "smallmines.change": "smallmines.analysis",
    "smallmines.figures": "smallmines.report.figures",
    "smallmines.synth": "smallmines.data.synth",
}
"""Old module -> where its public names live now."""


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self._specs[new] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the new one; give it back its own spec."""
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())

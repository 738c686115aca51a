"""smallmines: map artisanal and small-scale gold mining from satellite imagery.

One subpackage per pipeline stage, in the direction data flows (see ARCHITECTURE.md): ``data``,
``acquire``, ``models``, ``training``, ``mapping``, ``analysis``, ``report``, with ``errors``,
``bands`` and ``legend`` below all of them and ``cli`` on top.
"""

from smallmines import (
    _compat,  # noqa: F401  (makes torchvision importable on CPU torch)
    _moved,
)

__version__ = "0.1.0"

_moved.install()

"""smallmines: map artisanal and small-scale gold mining from satellite imagery."""

from smallmines import _compat  # noqa: F401  (makes torchvision importable on CPU torch)

__version__ = "0.1.0"

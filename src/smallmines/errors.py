"""One error hierarchy for the whole package.

Every error a user can cause derives from :class:`SmallminesError` and names the file or value at
fault, what was found, what was expected and, where there is one, the fix. This module imports no
CLI library: the CLI turns these errors into a short message and a non-zero exit code.
"""

from __future__ import annotations

from pathlib import Path


class SmallminesError(Exception):
    """Root of every error smallmines raises on purpose."""


class DatasetNotFoundError(SmallminesError, FileNotFoundError):
    """No SmallMinesDS layout was found where one was expected."""


class DataFormatError(SmallminesError, ValueError):
    """A file exists but its content is not what the format requires (bands, shape, dtype, values)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CorruptFileError(DataFormatError):
    """A file cannot be opened or decoded (truncated TIFF, not a raster, bad zip member)."""


class SplitError(SmallminesError, ValueError):
    """A split file is missing, malformed or names patches that do not exist."""


class BandError(SmallminesError, ValueError):
    """An unknown band or index name, or a scene that lacks a band a model needs."""


class ConfigError(SmallminesError, ValueError):
    """A configuration value or combination of options is invalid."""


class CheckpointError(SmallminesError, ValueError):
    """A checkpoint is missing, corrupt or lacks the metadata smallmines needs."""


class SceneMismatchError(SmallminesError, ValueError):
    """A scene's values do not match what the model was trained on (scale, band order, CRS)."""


class OptionalDependencyError(SmallminesError, ImportError):
    """An optional extra (for example ``smallmines[foundation]``) is needed but not installed."""


class ChangeError(SmallminesError, ValueError):
    """Two maps cannot be compared (no overlap, bad years, bad zones)."""


class MapNotFoundError(SmallminesError, FileNotFoundError):
    """A mine map (a ``mines.tif`` or a map folder holding one) does not exist."""


class CatalogError(SmallminesError, RuntimeError):
    """A STAC catalogue cannot be opened or searched, lacks what a fetch needs, or gives no usable pixel."""

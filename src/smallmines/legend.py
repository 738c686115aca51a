"""The classes that maps show and the one colour scheme they are shown in, defined once.

Change rasters, their GeoTIFF colour tables, static figures, web maps and reports all read the
codes, names and colours here: new mining is red, persistent mining gold, ceased mining blue,
everywhere. This module imports nothing else from smallmines and no plotting library, so every
stage can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path


class ChangeClass(IntEnum):
    """Codes of the change raster."""

    NO_MINING = 0
    NEW = 1
    PERSISTENT = 2
    CEASED = 3

    @property
    def label(self) -> str:
        """Human-readable name: ``"new mining"``."""
        return CLASS_LABELS[self]


CLASS_LABELS: dict[ChangeClass, str] = {
    ChangeClass.NO_MINING: "no mining",
    ChangeClass.NEW: "new mining",
    ChangeClass.PERSISTENT: "persistent mining",
    ChangeClass.CEASED: "ceased mining",
}
CLASS_KEYS: dict[ChangeClass, str] = {
    ChangeClass.NO_MINING: "no_mining",
    ChangeClass.NEW: "new",
    ChangeClass.PERSISTENT: "persistent",
    ChangeClass.CEASED: "ceased",
}
"""Short column-friendly names (``new_ha``, ``ceased_pct``)."""
CHANGE_NODATA = 255

TILE_STATUS = ("no mining", "appeared", "grew", "unchanged", "shrank", "vanished")
"""How the labelled mining of a tile changed: none in either year, from none to some, more, equal,
less, from some to none."""

CHANGE_COLOURS: dict[ChangeClass, str] = {
    ChangeClass.NO_MINING: "#e6e6e6",
    ChangeClass.NEW: "#e41a1c",
    ChangeClass.PERSISTENT: "#ffc20a",
    ChangeClass.CEASED: "#377eb8",
}
"""Change classes: no mining light grey (transparent on web maps), new red, persistent gold, ceased blue."""
MINING_COLOUR = "#ffc20a"
"""Mining in a single-date map or mask (the same gold as persistent mining)."""
YEAR_COLOURS: tuple[str, str] = ("#9e4fa8", "#ff7f00")
"""Mines of the first year (purple) and the second year (orange) when shown side by side."""
ERROR_COLOURS: dict[str, str] = {"tp": "#ffffff", "fp": "#ff2bd6", "fn": "#00d5ff"}
"""Prediction errors over a dimmed image: true positive white, false positive magenta, false negative cyan."""
NODATA_COLOUR = "#8c8c8c"
PROBABILITY_CMAP = "magma"


def hex_to_rgba(colour: str, alpha: float = 1.0) -> tuple[int, int, int, int]:
    """``"#e41a1c"`` -> ``(228, 26, 28, 255)``."""
    digits = colour.lstrip("#")
    if len(digits) != 6:
        raise ValueError(f"colour {colour!r} is not of the form #rrggbb")
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    return r, g, b, round(alpha * 255)


def change_colormap() -> dict[int, tuple[int, int, int, int]]:
    """Colour table of the change raster (GDAL form: code -> RGBA), nodata transparent."""
    table = {int(c): hex_to_rgba(CHANGE_COLOURS[c]) for c in ChangeClass}
    table[CHANGE_NODATA] = (0, 0, 0, 0)
    return table


MINES_CATEGORIES = ("not mining", "mining")
"""Category names of ``mines.tif`` values 0 and 1 (255 is nodata)."""


def change_categories() -> tuple[str, ...]:
    """Category names of ``change.tif`` values 0-3, in code order."""
    return tuple(c.label for c in ChangeClass)


def change_tags(year_a: int | None, year_b: int | None) -> dict[str, str]:
    """GeoTIFF tags of a change raster: the class codes and the two years (empty where unknown)."""
    classes = ", ".join(f"{int(c)}={c.label}" for c in ChangeClass) + f", {CHANGE_NODATA}=nodata"
    return {"classes": classes, "year_a": "" if year_a is None else str(year_a),
            "year_b": "" if year_b is None else str(year_b)}


def write_category_names(raster: str | Path, names: Sequence[str]) -> Path:
    """Write GDAL category names of band 1 (value i is ``names[i]``) as the raster's PAM sidecar.

    GeoTIFF holds no category names itself; GDAL, QGIS and ArcGIS read them from ``RASTER.aux.xml``
    (written atomically here, replacing an older one).

    Args:
        raster: the raster file.
        names: one name per value from 0.

    Returns:
        The sidecar's path.
    """
    import os
    from xml.sax.saxutils import escape

    sidecar = Path(f"{raster}.aux.xml")
    categories = "".join(f"      <Category>{escape(name)}</Category>\n" for name in names)
    text = (f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n{categories}    </CategoryNames>\n'
            "  </PAMRasterBand>\n</PAMDataset>\n")
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, sidecar)
    return sidecar

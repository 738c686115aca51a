"""The tile grid of a built dataset: where every patch lies and which id it carries.

A :class:`TileGrid` is a lattice of ``tile`` x ``tile`` pixel windows, ``stride`` pixels apart, on a
10 m pixel grid (CRS, origin, pixel size). Cell ``(row, col)`` has the tile number
``row * columns + col + 1``, so an id depends only on where a tile lies, never on which tiles were
kept: the same scene and options give the same ids on every run, and a second year built on the
same grid (``like=``) gives the same tile the same id, so tiles pair up for change detection.

The grid is recorded in the dataset's ``build.json`` (:meth:`TileGrid.to_dict`) and read back by
later builds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from affine import Affine
from rasterio.crs import CRS

from smallmines.data.scene import Grid
from smallmines.data.windows import Span
from smallmines.errors import ConfigError

TILE = 128
"""SmallMinesDS patch side in pixels."""


@dataclass(frozen=True)
class Cell:
    """One tile of the grid: its number, position and pixel window on the grid."""

    number: int
    row: int
    col: int
    rows: Span
    cols: Span


@dataclass(frozen=True)
class TileGrid:
    """A lattice of tiles on a pixel grid.

    Attributes:
        crs: CRS as WKT.
        x0: left edge of tile (0, 0), CRS units.
        y0: top edge of tile (0, 0), CRS units.
        res: pixel size, CRS units.
        tile: tile side, pixels.
        stride: distance between neighbouring tiles, pixels (``tile`` for no overlap).
        rows: tile rows of the grid.
        columns: tile columns of the grid (fixes the numbering).

    """

    crs: str
    x0: float
    y0: float
    res: float
    tile: int = TILE
    stride: int = TILE
    rows: int = 0
    columns: int = 0

    @classmethod
    def covering(cls, grid: Grid, tile: int = TILE, stride: int | None = None) -> TileGrid:
        """Lay out the tiles that fit whole inside a scene grid, anchored at its top-left pixel.

        Raises:
            ConfigError: a tile or stride that is not positive, or a scene smaller than one tile.

        """
        stride = tile if stride is None else stride
        if tile <= 0 or stride <= 0:
            raise ConfigError(f"tile size {tile} and stride {stride} must be positive pixel counts (default 128)")
        if grid.width < tile or grid.height < tile:
            raise ConfigError(f"the scene is {grid.width} x {grid.height} pixels, smaller than one {tile} x {tile} "
                              "tile; give a larger scene or a smaller --tile-size")
        t = grid.transform
        if t.e >= 0:
            raise ConfigError("the scene grid is not north-up (positive pixel height); warp it to a north-up grid")
        return cls(grid.crs, t.c, t.f, abs(t.a), tile, stride,
                   (grid.height - tile) // stride + 1, (grid.width - tile) // stride + 1)

    @property
    def grid(self) -> Grid:
        """The pixel grid spanned by all tiles (what the scene is read onto)."""
        width = (self.columns - 1) * self.stride + self.tile
        height = (self.rows - 1) * self.stride + self.tile
        return Grid(self.crs, Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y0), width, height)

    def cells(self) -> Iterator[Cell]:
        """Every tile, row by row."""
        for row in range(self.rows):
            for col in range(self.columns):
                yield self.cell(row * self.columns + col + 1)

    def cell(self, number: int) -> Cell:
        """Return the tile with this number.

        Raises:
            ConfigError: a number outside the grid.

        """
        if not 1 <= number <= self.rows * self.columns:
            raise ConfigError(f"tile {number} is not on this grid (tiles 1 to {self.rows * self.columns})")
        row, col = divmod(number - 1, self.columns)
        r0, c0 = row * self.stride, col * self.stride
        return Cell(number, row, col, Span(r0, r0 + self.tile), Span(c0, c0 + self.tile))

    def transform(self, cell: Cell) -> Affine:
        """Affine transform of a tile's file."""
        return Affine(self.res, 0.0, self.x0 + cell.cols.start * self.res, 0.0, -self.res,
                      self.y0 - cell.rows.start * self.res)

    def bounds(self, cell: Cell) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of a tile, CRS units."""
        left = self.x0 + cell.cols.start * self.res
        top = self.y0 - cell.rows.start * self.res
        return left, top - self.tile * self.res, left + self.tile * self.res, top

    def digits(self) -> int:
        """Digits of the tile numbers in file names: 4 as published, more for grids above 9999 tiles."""
        return max(4, len(str(self.rows * self.columns)))

    def name(self, number: int) -> str:
        """Tile number as written in file names, ``0007``."""
        return f"{number:0{self.digits()}d}"

    def same_lattice(self, other: TileGrid) -> bool:
        """Whether two grids put the same tiles at the same places (CRS, origin, size, stride, numbering)."""
        return (CRS.from_wkt(self.crs) == CRS.from_wkt(other.crs) and self.tile == other.tile
                and self.stride == other.stride and self.columns == other.columns and self.rows == other.rows
                and math.isclose(self.res, other.res, rel_tol=1e-9)
                and math.isclose(self.x0, other.x0, abs_tol=1e-6 * self.res)
                and math.isclose(self.y0, other.y0, abs_tol=1e-6 * self.res))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (``build.json["grid"]``); the CRS also as a short string when it has one."""
        crs = CRS.from_wkt(self.crs)
        return {"crs": crs.to_string(), "crs_wkt": self.crs, "x0": self.x0, "y0": self.y0, "res": self.res,
                "tile": self.tile, "stride": self.stride, "rows": self.rows, "columns": self.columns}

    @classmethod
    def from_dict(cls, record: dict[str, Any], source: str = "build.json") -> TileGrid:
        """Read :meth:`to_dict` back.

        Raises:
            ConfigError: a record that lacks a field (names ``source`` and the field).

        """
        try:
            return cls(str(record["crs_wkt"]), float(record["x0"]), float(record["y0"]), float(record["res"]),
                       int(record["tile"]), int(record["stride"]), int(record["rows"]), int(record["columns"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: the tile grid record lacks or garbles {exc}; rebuild the first year "
                              "with `smallmines build` to write a complete record") from exc

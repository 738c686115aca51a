"""Writing fetched rasters: block by block from Dask, staged under temporary names, then COGs in place.

A :class:`Staging` area is a hidden folder inside the output folder. Each product is computed one
Dask chunk at a time into a tiled GeoTIFF there (so the scene is never whole in memory), converted
to a Cloud Optimized GeoTIFF (deflate, internal overviews, band descriptions) and only renamed to
its final name by :meth:`Staging.commit`; an interrupted fetch leaves no file under a final name.
A final file carries a ``SMALLMINES_FETCH_KEY`` tag (a hash of its inputs), so a rerun with the same
inputs reuses it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from smallmines.acquire.grid import Grid

Progress = Callable[[int, int], None]

KEY_TAG = "SMALLMINES_FETCH_KEY"
CREATION = {"tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "zlevel": 1,
            "bigtiff": "IF_SAFER"}
COG_OPTIONS = {"compress": "deflate", "blocksize": 512, "overview_resampling": "nearest", "bigtiff": "IF_SAFER"}


def existing_key(path: Path) -> str | None:
    """Return the fetch key a final file was written with (None when absent or unreadable)."""
    if not path.exists():
        return None
    try:
        with rasterio.open(path) as src:
            return src.tags().get(KEY_TAG)
    except rasterio.errors.RasterioError:
        return None


def chunk_windows(chunks: tuple[tuple[int, ...], tuple[int, ...]]) -> list[tuple[int, int, int, int]]:
    """``(row, col, height, width)`` of every chunk of a Dask ``(y, x)`` chunking."""
    rows = np.cumsum((0, *chunks[0]))
    cols = np.cumsum((0, *chunks[1]))
    return [(int(r), int(c), int(h), int(w)) for r, h in zip(rows[:-1], chunks[0], strict=True)
            for c, w in zip(cols[:-1], chunks[1], strict=True)]


@dataclass
class Product:
    """One output raster: a lazy ``(bands, y, x)`` array, its data type, nodata, band names and tags."""

    array: Any
    dtype: str
    nodata: float
    bands: Sequence[str]
    tags: dict[str, str] = field(default_factory=dict)


class Staging:
    """Files written under temporary names in ``out_dir`` and renamed into place together."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.folder = Path(tempfile.mkdtemp(prefix=".fetch-", dir=out_dir))
        self.staged: dict[Path, Path] = {}

    def write(self, products: dict[str, Product], grid: Grid, progress: Callable[[], None] | None = None) -> None:
        """Compute products that share inputs chunk by chunk (one Dask pass) into staged COGs.

        Args:
            products: final file name (``s2.tif``) -> what to write; all arrays with the same
                ``(y, x)`` chunks.
            grid: the grid the arrays lie on.
            progress: called after each chunk.

        """
        import dask

        with ExitStack() as stack:
            files = {}
            for name, product in products.items():
                dst = stack.enter_context(rasterio.open(
                    self.folder / f"raw-{name}", "w", driver="GTiff", width=grid.width, height=grid.height,
                    count=product.array.shape[0], dtype=product.dtype, crs=grid.crs, transform=grid.transform,
                    nodata=product.nodata, **CREATION))
                dst.descriptions = tuple(product.bands)
                dst.update_tags(**product.tags, bands=",".join(product.bands))
                files[name] = dst
            first = next(iter(products.values())).array
            for row, col, height, width in chunk_windows(first.chunks[1:]):
                pieces = [p.array[:, row:row + height, col:col + width] for p in products.values()]
                for (name, product), block in zip(products.items(), dask.compute(*pieces), strict=True):
                    files[name].write(np.asarray(block).astype(product.dtype), window=Window(col, row, width, height))
                if progress:
                    progress()
        for name in products:
            self.to_cog(self.folder / f"raw-{name}", name)

    def to_cog(self, raw: Path, name: str) -> Path:
        """Convert a staged tiled GeoTIFF into a staged COG named for ``name``."""
        staged = self.folder / name
        with rasterio.open(raw) as src:
            predictor = 3 if src.dtypes[0].startswith("float") else 2
        rasterio.shutil.copy(raw, staged, driver="COG", predictor=predictor, **COG_OPTIONS)
        raw.unlink()
        self.staged[self.out_dir / name] = staged
        return staged

    def commit(self) -> None:
        """Rename every file staged so far to its final name."""
        for final, staged in self.staged.items():
            os.chmod(staged, 0o644)
            os.replace(staged, final)
        self.staged.clear()

    def close(self) -> None:
        """Remove the staging folder and whatever is left in it."""
        shutil.rmtree(self.folder, ignore_errors=True)

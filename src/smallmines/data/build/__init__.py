"""Building SmallMinesDS-format datasets from scenes and mine polygons (``smallmines build``).

:mod:`~smallmines.data.build.tiles` (the tile grid and ids), :mod:`~smallmines.data.build.labels`
(reading, repairing and rasterising polygons), :mod:`~smallmines.data.build.writer` (atomic files,
split rows, footprints), :mod:`~smallmines.data.build.card` (the dataset card) and
:mod:`~smallmines.data.build.build` (:func:`build_dataset`, the entry point) and
:mod:`~smallmines.data.build.merge` (:func:`merge_datasets`).
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "build": ["BuildResult", "build_dataset"],
    "merge": ["MergeResult", "merge_datasets"],
    "tiles": ["TileGrid"],
})

"""Stage 5, rasters -> statistics: change between two maps, area tables, zonal statistics, dataset growth.

:mod:`~smallmines.analysis.areas` (change classes and growth, pure), :mod:`~smallmines.analysis.maps`
(reading and aligning binary maps), :mod:`~smallmines.analysis.zones` (polygons and zonal statistics),
:mod:`~smallmines.analysis.change` (:func:`compare_maps`), :mod:`~smallmines.analysis.history`
(:func:`map_history`, many dated maps), :mod:`~smallmines.analysis.accuracy` and
:mod:`~smallmines.analysis.sampling` (:func:`draw_sample`, :func:`assess_change`: area estimates with
confidence intervals from a labelled sample), :mod:`~smallmines.analysis.tiles` (labelled growth tile
by tile), :mod:`~smallmines.analysis.figures` and :mod:`~smallmines.analysis.writers`.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "areas": ["area_table", "change_classes", "class_pixels", "growth"],
    "maps": ["BinaryMap", "align", "common_grid", "map_year", "read_binary_map"],
    "zones": ["change_polygons", "read_zones", "zonal_stats"],
    "change": ["ChangeResult", "compare_maps"],
    "accuracy": ["AreaEstimate", "allocate_sample", "error_matrix", "estimate_areas"],
    "sampling": ["AccuracyResult", "SampleResult", "assess_change", "draw_sample", "read_reference"],
    "history": ["HistoryResult", "confirm_runs", "map_history"],
    "tiles": ["DatasetChangeResult", "dataset_change", "tile_growth", "tiles_frame"],
    "writers": ["write_cog"],
    "smallmines.legend": ["CHANGE_NODATA", "CLASS_KEYS", "CLASS_LABELS", "TILE_STATUS", "ChangeClass",
                          "change_colormap"],
    "smallmines.errors": ["ChangeError", "MapNotFoundError"],
})

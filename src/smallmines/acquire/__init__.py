"""Stage 0, catalogues -> scenes: Sentinel-2 L2A, Sentinel-1 RTC and the Copernicus DEM from STAC catalogues.

:mod:`~smallmines.acquire.grid` (the area and its 10 m UTM grid), :mod:`~smallmines.acquire.catalog`
(opening and searching catalogues, finding assets by ``eo:bands``), :mod:`~smallmines.acquire.sentinel2`
(SCL masking, baseline offset, composite), :mod:`~smallmines.acquire.sentinel1` (Lee filter, dB,
median), :mod:`~smallmines.acquire.dem` (mosaic), :mod:`~smallmines.acquire.raster` (staged COG
writes) and :mod:`~smallmines.acquire.fetcher` (:func:`fetch`, the entry point). It writes the
analysis-ready scenes ``smallmines map`` reads and imports nothing but the base modules.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "fetcher": ["FetchResult", "fetch", "season", "parse_months"],
    "catalog": ["Catalogue", "open_catalogue"],
    "grid": ["Area", "Grid", "grid_for", "read_area"],
})

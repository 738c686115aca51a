"""Stage 4, model -> rasters and polygons: whole scenes of any size mapped window by window.

:mod:`~smallmines.mapping.windows` (pure window arithmetic), :mod:`~smallmines.mapping.scene` (inputs
aligned on the 10 m grid), :mod:`~smallmines.mapping.guards` (scene against training statistics),
:mod:`~smallmines.mapping.predictors` (PyTorch or ONNX Runtime), :mod:`~smallmines.mapping.engine`
(streaming, blending, Dask), :mod:`~smallmines.mapping.work` (resumable work folder, COGs),
:mod:`~smallmines.mapping.vector` (polygons in hectares) and :mod:`~smallmines.mapping.mapper`
(:func:`map_scene`, the entry point).
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "mapper": ["MapResult", "map_scene"],
    "scene": ["Scene", "SceneReader", "load_aoi", "open_scene", "parse_scale"],
    "guards": ["SceneCheck", "compare_to_training", "enforce"],
    "predictors": ["ModelRef"],
    "windows": ["Plan", "make_plan"],
    "vector": ["areas_ha", "polygonize", "write_polygons"],
})

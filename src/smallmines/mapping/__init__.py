"""Stage 4, model -> rasters and polygons: whole scenes of any size mapped window by window.

Scenes and window arithmetic live in :mod:`smallmines.data.scene` and :mod:`smallmines.data.windows`;
:mod:`~smallmines.mapping.guards` (scene against training statistics),
:mod:`~smallmines.mapping.predictors` (PyTorch or ONNX Runtime), :mod:`~smallmines.mapping.engine`
(streaming, blending, Dask), :mod:`~smallmines.mapping.work` (resumable work folder, COGs),
:mod:`~smallmines.mapping.vector` (polygons in hectares) and :mod:`~smallmines.mapping.mapper`
(:func:`map_scene`, the entry point).
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "mapper": ["MapResult", "map_scene"],
    "smallmines.data.scene": ["Scene", "SceneReader", "load_aoi", "open_scene", "parse_scale"],
    "guards": ["SceneCheck", "compare_to_training", "enforce"],
    "predictors": ["ModelRef"],
    "smallmines.data.windows": ["Plan", "make_plan"],
    "vector": ["areas_ha", "polygonize", "write_polygons"],
})

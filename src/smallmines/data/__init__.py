"""Stage 1, files -> samples: the SmallMinesDS layout, patch I/O, splits, statistics, the pack, checks.

Also the synthetic twin (:mod:`smallmines.data.synth`), which writes data in exactly the published
formats. Nothing here imports a model, a training loop or a map.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "layout": ["DatasetLayout", "discover"],
    "io": ["read_patch"],
    "splits": ["official_split", "random_split", "spatial_split", "year_split"],
    "stats": ["BandStats", "compute_stats"],
    "pack": ["PackedSource", "pack_dataset"],
    "dataset": ["PatchSource", "SmallMinesDS", "export_split", "resolve_split"],
    "pairs": ["Pair", "change_labels", "date_channels", "find_pairs"],
    "check": ["CheckReport", "check_dataset"],
    "preview": ["preview_grid"],
    "synth": ["synthesize_dataset", "synthesize_scene"],
    "scene": ["Scene", "SceneReader", "open_scene"],
    "build.build": ["BuildResult", "build_dataset"],
    "build.merge": ["MergeResult", "merge_datasets"],
})

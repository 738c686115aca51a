"""The synthetic twin of SmallMinesDS: one procedural world, rendered as patches or whole scenes.

:mod:`~smallmines.data.synth.world` is the world model (a pure function of seed and position),
:mod:`~smallmines.data.synth.patches` cuts the dataset from it in the published layout and
:mod:`~smallmines.data.synth.scenes` renders whole scenes, stacked and per sensor.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "world": ["CRS", "PIXEL_SIZE", "WORLD_ORIGIN", "render", "region_transform"],
    "patches": ["synthesize_dataset"],
    "scenes": ["synthesize_scene"],
})

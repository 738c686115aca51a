"""Stage 2, the model: the registry of networks, model cards and self-describing model files, ONNX export.

:mod:`~smallmines.models.networks` defines the networks, :mod:`~smallmines.models.pixel` the
per-pixel LightGBM baseline, :mod:`~smallmines.models.registry` builds them by name and saves or loads
them with their card, :mod:`~smallmines.models.export` writes ONNX with the card inside.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "networks": ["NUM_CLASSES", "LiteUNet", "PrithviSegmenter", "TwoStreamUNet", "load_encoder_weights",
                 "mining_probability"],
    "pixel": ["PixelGBM"],
    "change": ["CHANGE_MODELS", "ChangeLiteUNet", "SiameseLiteUNet", "is_change_model"],
    "registry": ["CARD_KEY", "MODELS", "ModelCard", "build_model", "count_parameters", "freeze_encoder",
                 "is_neural", "load_model", "register_model", "save_model"],
    "export": ["ExportResult", "export_onnx"],
})

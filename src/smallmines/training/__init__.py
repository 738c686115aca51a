"""Stage 3, training and evaluation.

Configuration and presets, the Lightning data module and task, losses and metrics, ``fit``, the pixel
baseline's fit, ``evaluate`` and ``benchmark``.
"""

from smallmines._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "config": ["Config", "list_presets", "load_config", "parse_overrides"],
    "datamodule": ["SmallMinesDataModule"],
    "change": ["ChangeDataModule", "ChangeEvalResult", "ChangeMetrics", "evaluate_change"],
    "task": ["SegmentationTask"],
    "losses": ["CombinedLoss"],
    "metrics": ["SegmentationMetrics"],
    "trainer": ["RunResult", "fit"],
    "baseline": ["fit_pixel_baseline"],
    "evaluation": ["EvalResult", "evaluate", "select_threshold"],
    "benchmarking": ["BenchmarkResult", "benchmark"],
})

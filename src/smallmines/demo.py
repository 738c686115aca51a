"""The whole story on the synthetic twin, as one function (``smallmines demo`` / ``make demo``).

Each step calls the same public API a user would, writes into one folder, and is skipped when its
output already exists, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallmines.bands import parse_bands
from smallmines.data.check import check_dataset
from smallmines.data.dataset import SmallMinesDS
from smallmines.data.preview import preview_grid
from smallmines.synth import synthesize_dataset, synthesize_scene

logger = logging.getLogger(__name__)

DEMO_TILES = 192
DEMO_SCENE = 1024
DEMO_BANDS = "all"


@dataclass
class DemoResult:
    """Paths and headline numbers of a demo run."""

    out: Path
    dataset: Path
    scenes: dict[int, dict[str, Path]] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    stats: Path | None = None
    preview: Path | None = None
    headline: dict[str, Any] = field(default_factory=dict)


def run_demo(
    out: str | Path = "demo",
    tiles: int = DEMO_TILES,
    scene_size: int = DEMO_SCENE,
    seed: int = 0,
    step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Synthesise a dataset and scenes, check them, compute statistics and draw a preview.

    Args:
        out: folder for everything the demo writes.
        tiles: patches per year of the synthetic dataset.
        scene_size: pixels per side of the synthetic whole scenes.
        seed: seed of every random choice.
        step: called with a short description as each step starts (the CLI prints it).
    """
    say = step or (lambda text: logger.info(text))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    if not (data_dir / "SmallMinesDS").is_dir():
        say(f"synthesising {tiles} patches per year into {data_dir}")
        synthesize_dataset(data_dir, tiles=tiles, seed=seed)
    result = DemoResult(out, data_dir)
    scene_dir = out / "scenes"
    say(f"synthesising {scene_size} x {scene_size} scenes for 2016 and 2022 into {scene_dir}")
    result.scenes = synthesize_scene(scene_dir, size=scene_size, seed=seed)

    say("checking the dataset")
    report = check_dataset(data_dir)
    result.check = report.to_dict()
    (out / "check.json").write_text(json.dumps(result.check, indent=2, default=str))

    say("computing band statistics on the training split")
    train = SmallMinesDS(data_dir, split="train", bands=parse_bands(DEMO_BANDS), seed=seed)
    result.stats = train.compute_stats().save(out / "stats.json")

    say("drawing the preview grid")
    figure = preview_grid(data_dir, n=6, seed=seed)
    result.preview = out / "preview.png"
    figure.savefig(result.preview, dpi=110, bbox_inches="tight")
    result.headline = {"patches": report.patches, "mining_share_pct": dict(report.shares)}
    return result

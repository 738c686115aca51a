"""The whole story on the synthetic twin, as one function (``smallmines demo`` / ``make demo``).

synthesise -> check -> statistics -> preview -> train a small model -> evaluate -> map the 2016 and
2022 scenes -> change -> report. Each step calls the same public API a user would and writes into one
folder; a step whose output already exists is skipped, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEMO_TILES = 128
DEMO_SCENE = 1024
DEMO_PRESET = "tiny"


@dataclass
class DemoResult:
    """Paths and headline numbers of a demo run."""

    out: Path
    dataset: Path
    run_dir: Path
    report: Path | None = None
    preview: Path | None = None
    headline: dict[str, Any] = field(default_factory=dict)


def run_demo(
    out: str | Path = "demo",
    tiles: int = DEMO_TILES,
    scene_size: int = DEMO_SCENE,
    seed: int = 0,
    preset: str = DEMO_PRESET,
    overrides: list[str] | None = None,
    step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole story on a freshly synthesised twin of SmallMinesDS.

    Args:
        out: folder for everything the demo writes.
        tiles: patches per year of the synthetic dataset.
        scene_size: pixels per side of the synthetic whole scenes.
        seed: seed of every random choice.
        preset: training preset (see ``smallmines train --list-presets``).
        overrides: extra ``section.key=value`` training overrides.
        step: called with a short description as each step starts (the CLI prints it).

    Returns:
        Paths (dataset, run folder, report) and the headline numbers.
    """
    from smallmines.analysis.change import compare_maps
    from smallmines.data.check import check_dataset
    from smallmines.data.preview import preview_grid
    from smallmines.data.synth.patches import synthesize_dataset
    from smallmines.data.synth.scenes import synthesize_scene
    from smallmines.mapping.mapper import map_scene
    from smallmines.report.build import build_report
    from smallmines.training.evaluation import evaluate
    from smallmines.training.trainer import fit

    say = step or logger.info
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir, scene_dir, run_dir = out / "data", out / "scenes", out / "run"
    result = DemoResult(out, data_dir, run_dir)

    if not (data_dir / "SmallMinesDS").is_dir():
        say(f"synthesising {tiles} patches per year into {data_dir}")
        synthesize_dataset(data_dir, tiles=tiles, seed=seed)
    say(f"synthesising {scene_size} x {scene_size} px scenes of 2016 and 2022 into {scene_dir}")
    scenes = synthesize_scene(scene_dir, size=scene_size, seed=seed + 1)

    say("checking the dataset")
    check = check_dataset(data_dir)
    (out / "check.json").write_text(json.dumps(check.to_dict(), indent=2, default=str))
    if not check.ok:
        logger.warning("the dataset check found %d errors (see %s)", len(check.errors), out / "check.json")

    say("drawing the preview grid")
    result.preview = out / "preview.png"
    preview_grid(data_dir, n=6, seed=seed).savefig(result.preview, dpi=110, bbox_inches="tight")

    if not (run_dir / "model.pt").is_file():
        say(f"training the {preset!r} preset (statistics from the training split only)")
        fit(preset, [f"data.root={data_dir}", f"train.seed={seed}", *(overrides or [])], out=run_dir,
            resume=(run_dir / "checkpoints" / "last.ckpt").is_file())
    say("evaluating on the test split (threshold chosen on validation)")
    scores = evaluate(run_dir / "model.pt", data_dir, split="test", out=run_dir / "evaluation" / "test")

    maps = {}
    for year, files in sorted(scenes.items()):
        say(f"mapping the {year} scene")
        maps[year] = map_scene(run_dir / "model.pt", run_dir / "maps" / str(year), stacked=files["stacked"])
    first, last = min(maps), max(maps)
    say(f"comparing the {first} and {last} maps")
    change = compare_maps(maps[first].out_dir, maps[last].out_dir, run_dir / "change", year_a=first, year_b=last)

    say("writing the report")
    result.report = build_report(run_dir, out / "report.html", data=data_dir)
    result.headline = {
        "mining IoU (test)": round(scores.overall["iou_mining"], 3),
        "mean IoU (test)": round(scores.overall["miou"], 3),
        **{f"mined ha {year}": round(m.mined_area_ha, 1) for year, m in maps.items()},
        f"net growth ha {first}-{last}": round(change.summary["net_growth_ha"], 1),
        "annual growth rate %": _round(change.summary.get("annual_growth_rate_pct")),
    }
    (out / "headline.json").write_text(json.dumps(result.headline, indent=2))
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

"""From a district boundary to a briefing in one call (``smallmines monitor``).

For each year: fetch the scene from a STAC catalogue (:mod:`smallmines.acquire`), map mining with a
model (:mod:`smallmines.mapping`); then the change between the first and the last year, with zonal
statistics over ``context`` polygons when given (:mod:`smallmines.analysis`), and one HTML report of
the folder (:mod:`smallmines.report`). Every step writes into one folder and reuses what an earlier
run finished, so an interrupted monitor resumes::

    OUT/scenes/YYYY/   fetched scene (scene.tif, per-sensor files, fetch.json)
    OUT/maps/YYYY/     probability.tif, mines.tif, mines.gpkg, summary.json
    OUT/change/        change.tif, change.gpkg, areas.csv, summary.json (zones.csv with context)
    OUT/report.html    the briefing
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallmines.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class MonitorResult:
    """What a monitor run wrote: the scenes and maps per year, the change, the report."""

    out: Path
    scenes: dict[int, Any] = field(default_factory=dict)
    maps: dict[int, Any] = field(default_factory=dict)
    change: Any = None
    report: Path | None = None


def parse_years(years: str | Sequence[int]) -> list[int]:
    """``"2016,2022"`` or a sequence -> sorted distinct years (at least two).

    Raises:
        ConfigError: fewer than two years, or something that is not a year.

    """
    try:
        values = sorted({int(y) for y in (years.split(",") if isinstance(years, str) else years)})
    except ValueError:
        values = []
    if len(values) < 2 or not all(1900 < y < 2200 for y in values):
        raise ConfigError(f"--years {years!r}: give at least two years, e.g. 2016,2022 (the change is measured "
                          "between the first and the last)")
    return values


def run_monitor(aoi: str | Path | tuple[float, float, float, float], years: str | Sequence[int],
                model: str | Path, out: str | Path, *, stac: str | Path = "planetary-computer",
                months: str | int = "1", statistic: str = "median", context: str | Path | None = None,
                context_field: str | None = None, chunk: int = 512, map_options: dict[str, Any] | None = None,
                step: Callable[[str], None] | None = None) -> MonitorResult:
    """Fetch, map, compare and report an area over several years.

    Args:
        aoi: a vector file, or a bbox ``(W, S, E, N)`` / ``"W,S,E,N"`` in degrees.
        years: two or more years (``"2016,2022"``); change is measured between the first and the last.
        model: the model file ``smallmines map`` takes (``model.pt``, ``.ckpt`` or ``.onnx``).
        out: output folder (see the module docstring).
        stac: the catalogue (see :func:`smallmines.acquire.fetcher.fetch`).
        months: months of each year's window (``"1"``, ``"1-3"``, ``"12-2"``).
        statistic: Sentinel-2 composite statistic.
        context: polygons (districts, forest reserves...) whose zonal statistics the change and the
            report tabulate.
        context_field: attribute naming the context polygons.
        chunk: Dask chunk side of the fetch.
        map_options: extra keyword arguments of :func:`smallmines.mapping.mapper.map_scene`.
        step: called with a short description as each step starts.

    Raises:
        SmallminesError: from any step (no item, no clear pixel, a scene the model refuses...).

    """
    from smallmines.acquire.fetcher import fetch
    from smallmines.analysis.change import compare_maps
    from smallmines.mapping.mapper import map_scene
    from smallmines.report.build import build_report

    say = step or logger.info
    chosen = parse_years(years)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = MonitorResult(out)
    model_path = Path(model)
    onnx = model_path if model_path.suffix == ".onnx" else None
    vector_aoi = aoi if not isinstance(aoi, tuple) and Path(aoi).is_file() else None
    for year in chosen:
        say(f"fetching {year} from {stac}")
        result.scenes[year] = fetch(aoi, year, out / "scenes" / str(year), stac=stac, months=months,
                                    statistic=statistic, chunk=chunk)
        say(f"mapping {year}")
        result.maps[year] = map_scene(None if onnx else model_path, out / "maps" / str(year),
                                      stacked=result.scenes[year].scene, aoi=vector_aoi, onnx=onnx,
                                      **(map_options or {}))
    first, last = chosen[0], chosen[-1]
    say(f"comparing {first} and {last}")
    result.change = compare_maps(result.maps[first].out_dir, result.maps[last].out_dir, out / "change",
                                 year_a=first, year_b=last, zones=context, zone_field=context_field)
    say("writing the report")
    result.report = build_report(out, out / "report.html", title=f"Mining {first}-{last}")
    return result

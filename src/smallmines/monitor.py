"""From a district boundary to a briefing in one call (``smallmines monitor``).

For each year: fetch the scene from a STAC catalogue (:mod:`smallmines.acquire`), map mining with a
model (:mod:`smallmines.mapping`); then the change between the first and the last year, with zonal
statistics over ``context`` polygons when given (:mod:`smallmines.analysis`), and one HTML report of
the folder (:mod:`smallmines.report`). With three or more years the change is the multi-year
history (:func:`smallmines.analysis.history.map_history`: year each pixel was first and last
mapped, mined and new area per year, one-year flickers dropped with ``confirm``), as
``smallmines change Y1 Y2 Y3 ...`` writes it. Every step writes into one folder and reuses what an
earlier run finished, so an interrupted monitor resumes::

    OUT/scenes/YYYY/   fetched scene (scene.tif, per-sensor files, fetch.json)
    OUT/maps/YYYY/     probability.tif, mines.tif, mines.gpkg, summary.json
    OUT/change/        change.tif, change.gpkg, areas.csv, summary.json (zones.csv with context);
                       with three or more years also history.csv, first_year.tif, last_year.tif
    OUT/report.html    the briefing (the country outlines and the context polygons on its map)
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
    history: Any = None
    """The :class:`~smallmines.analysis.history.HistoryResult` with three or more years, else None."""
    report: Path | None = None


def parse_years(years: str | Sequence[int | str]) -> list[int]:
    """``"2016,2022"``, ``"2016 2019 2022"`` or a sequence of either -> sorted distinct years (at least two).

    Raises:
        ConfigError: fewer than two years, or something that is not a year.

    """
    parts = [years] if isinstance(years, str) else [str(y) for y in years]
    words = [w for part in parts for w in part.replace(",", " ").split()]
    try:
        values = sorted({int(w) for w in words})
    except ValueError:
        values = []
    if len(values) < 2 or not all(1900 < y < 2200 for y in values):
        shown = " ".join(words) or repr(years)
        raise ConfigError(f"--years {shown}: give at least two years, e.g. --years 2016,2022 or --years "
                          "2016,2019,2022 (the change is measured between the first and the last)")
    return values


def run_monitor(aoi: str | Path | tuple[float, float, float, float], years: str | Sequence[int],
                model: str | Path, out: str | Path, *, stac: str | Path = "planetary-computer",
                months: str | int = "1", statistic: str = "median", context: str | Path | None = None,
                context_field: str | None = None, confirm: int = 2, chunk: int = 512,
                s1_stac: str | Path | None = None,
                map_options: dict[str, Any] | None = None,
                step: Callable[[str], None] | None = None) -> MonitorResult:
    """Fetch, map, compare and report an area over several years.

    Args:
        aoi: a vector file, or a bbox ``(W, S, E, N)`` / ``"W,S,E,N"`` in degrees.
        years: two or more years (``"2016,2022"``, ``"2016 2019 2022"``); change is measured between
            the first and the last; three or more also give the history.
        model: the model file ``smallmines map`` takes (``model.pt``, ``.ckpt`` or ``.onnx``).
        out: output folder (see the module docstring).
        stac: the catalogue (see :func:`smallmines.acquire.fetcher.fetch`).
        months: months of each year's window (``"1"``, ``"1-3"``, ``"12-2"``).
        statistic: Sentinel-2 composite statistic.
        context: polygons (districts, forest reserves...) whose zonal statistics the change and the
            report tabulate; the report map draws them over the country outlines.
        context_field: attribute naming the context polygons.
        confirm: with three or more years, consecutive maps a run of mining needs to count
            (see :mod:`smallmines.analysis.history`; 1 keeps every map as mapped).
        chunk: Dask chunk side of the fetch.
        s1_stac: another catalogue for Sentinel-1 RTC (``"planetary-computer"`` with ``stac="earth-search"``).
        map_options: extra keyword arguments of :func:`smallmines.mapping.mapper.map_scene`.
        step: called with a short description as each step starts.

    Raises:
        SmallminesError: from any step (no item, no clear pixel, a scene the model refuses...).
        ConfigError: fewer than two years, ``confirm`` below 1, or a context file that does not exist.

    """
    from smallmines.acquire.fetcher import fetch
    from smallmines.analysis.change import compare_maps
    from smallmines.analysis.history import map_history
    from smallmines.mapping.mapper import map_scene
    from smallmines.report.build import build_report

    say = step or logger.info
    chosen = parse_years(years)
    if confirm < 1:
        raise ConfigError(f"--confirm {confirm}: give 1 or more (1 keeps every map as it is, 2 drops one-year "
                          "flickers)")
    if context is not None and not Path(context).is_file():
        raise ConfigError(f"--context {context}: no such file; give a vector file of polygons (GeoPackage, "
                          "GeoJSON, shapefile)")
    if context is not None:  # a bad context file fails now, not after an hour of fetching
        from smallmines.analysis.zones import read_zones

        read_zones(context, context_field)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = MonitorResult(out)
    model_path = Path(model)
    onnx = model_path if model_path.suffix == ".onnx" else None
    vector_aoi = aoi if not isinstance(aoi, tuple) and Path(aoi).is_file() else None
    for year in chosen:
        say(f"fetching {year} from {stac}")
        result.scenes[year] = fetch(aoi, year, out / "scenes" / str(year), stac=stac, months=months,
                                    statistic=statistic, chunk=chunk, s1_stac=s1_stac)
        say(f"mapping {year}")
        result.maps[year] = map_scene(None if onnx else model_path, out / "maps" / str(year),
                                      stacked=result.scenes[year].scene, aoi=vector_aoi, onnx=onnx,
                                      **(map_options or {}))
    first, last = chosen[0], chosen[-1]
    if len(chosen) == 2:
        _drop_stale_history(out / "change")
        say(f"comparing {first} and {last}")
        result.change = compare_maps(result.maps[first].out_dir, result.maps[last].out_dir, out / "change",
                                     year_a=first, year_b=last, zones=context, zone_field=context_field)
    else:
        say(f"tracing the history {', '.join(map(str, chosen))}")
        result.history = map_history([result.maps[y].out_dir for y in chosen], out / "change", years=chosen,
                                     confirm=confirm, zones=context, zone_field=context_field)
        result.change = result.history.change
    say("writing the report")
    result.report = build_report(out, out / "report.html", title=f"Mining {first}-{last}", context=context,
                                 context_field=context_field)
    return result


def _drop_stale_history(folder: Path) -> None:
    """Remove the history files an earlier run with more years left, so the report shows no stale history."""
    for name in ("history.csv", "first_year.tif", "last_year.tif", "figures/history.png", "figures/history.pdf",
                 "figures/history_maps.png", "figures/history_maps.pdf"):
        if (folder / name).is_file():
            logger.info("removing %s of an earlier run with more years", folder / name)
            (folder / name).unlink()

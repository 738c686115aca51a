"""One self-contained HTML report of whatever a folder holds: dataset, training run, maps, change.

:func:`build_report` looks into ``run_dir`` for the outputs named in ``docs/run-layout.md`` and shows
those it finds; a missing piece is named in the report, never an error:

- a **training run**: ``config.yaml`` (``data.root`` names the dataset), ``train_summary.json``,
  ``logs/metrics.csv`` (training curves), ``evaluation/{split}/metrics.json`` (metrics table and
  confusion matrix), ``evaluation/{split}/per_patch.csv`` and ``model.pt`` (sample predictions);
- **maps**: ``maps/*/`` (or ``run_dir`` itself) holding ``probability.tif``, ``mines.tif`` and a
  ``summary.json`` whose ``year`` and ``inputs.stacked`` (the scene, for the true-colour background)
  are read when present;
- **change**: ``change/`` (or ``change/*/``, or ``run_dir`` itself) from ``smallmines change``, two
  maps compared (``change.tif``, ``areas.csv``, ``zones.csv``) or a dataset compared tile by tile
  (``tiles.csv``). With two maps of different years and no change folder, the change is computed
  on the fly;
- a **dataset** (``--data``, ``config.yaml`` ``data.root``, or ``run_dir`` itself): counts, mining
  share per year, labelled growth per tile and a preview of the same tiles in both years.

Everything is inside the one HTML file: figures are base64 PNG, the interactive map is Leaflet
(vendored under ``smallmines/report/assets/leaflet``, BSD-2-Clause) with its script, styles and icons
inlined, and raster layers are reprojected to Web Mercator and reduced to at most
``max_overlay_px`` pixels a side. It opens offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import rasterio
from markupsafe import Markup
from rasterio.errors import RasterioError

from smallmines import __version__
from smallmines.analysis.writers import _atomic
from smallmines.errors import SmallminesError
from smallmines.legend import CHANGE_COLOURS, CHANGE_NODATA, CLASS_KEYS, ChangeClass
from smallmines.report.inputs import ChangeFolder, ReportInputs, _change_folder, find_inputs
from smallmines.report.sections import (
    Card,
    DatasetView,
    Section,
    _area_table,
    _dataset_section,
    _estimates_table,
    _evaluation_section,
    _Figures,
    _ha,
    _note,
    _num,
    _samples_section,
    _scan_dataset,
    _table,
    _training_section,
)
from smallmines.report.webmap import _map_section

logger = logging.getLogger(__name__)


LEAFLET_VERSION = "1.9.4"
# --------------------------------------------------------------------------------------------
# maps and change


def _maps_section(inputs: ReportInputs) -> Section | None:
    if not inputs.maps:
        return None
    rows = []
    for m in inputs.maps:
        area = _mined_area(m.mines) if m.mines else None
        rows.append([str(m.year or "–"), str(m.path.relative_to(inputs.run_dir) if m.path.is_relative_to(inputs.run_dir)
                                             else m.path),
                     _ha(area[0]) if area else "–", _num(area[1], 2, " %") if area else "–",
                     m.scene.name if m.scene else "–"])
    return Section("maps", "Maps", _table(["year", "folder", "mined area", "of valid area", "scene"], rows),
                   "Whole-scene maps found under maps/.")


def _mined_area(path: Path) -> tuple[float, float] | None:
    try:
        with rasterio.open(path) as src:
            data = src.read(1)
            if src.crs is None or src.crs.is_geographic:
                return None
            px = abs(src.transform.a * src.transform.e) / 10_000
            nodata = src.nodata if src.nodata is not None else CHANGE_NODATA
    except RasterioError:
        return None
    valid = data != nodata
    mined = int((data[valid] == 1).sum())
    return mined * px, 100.0 * mined / max(int(valid.sum()), 1)


def _change_section(change: ChangeFolder, figs: _Figures, cards: list[Card], computed: bool,
                    context: tuple[Any, str] | None = None) -> Section:
    from smallmines.report.figures import growth_figure, zones_figure

    s = change.summary
    ya, yb = s["year_a"], s["year_b"]
    parts = []
    if computed:
        parts.append(_note("Computed for this report from the two maps (no change folder was found); run "
                           "`smallmines change` to keep the change raster, polygons and tables."))
    parts.append(Markup('<div class="grid2">') + _area_table(s) +
                 figs.img(growth_figure(s), "change_areas", "mined area in both years",
                          f"Bars split into the change classes: {ya} = persistent + ceased, {yb} = persistent + new.")
                 + Markup("</div>"))
    if s.get("area_estimates"):
        parts.append(Markup("<h3>Area estimates from a labelled sample</h3>") + _estimates_table(s))
    history_csv = change.path / "history.csv"
    if history_csv.is_file():
        import pandas as pd

        from smallmines.analysis.figures import history_figure

        h = s.get("history", {})
        parts.append(Markup("<h3>History</h3>") + figs.img(
            history_figure(pd.read_csv(history_csv), h.get("confirm")), "history", "mined area per year",
            f"Mined area in each of {len(h.get('years', []))} maps; first_year.tif and last_year.tif hold the year "
            "each pixel was first and last mined."))
        small = change.path / "figures" / "history_maps.png"
        if small.is_file():  # the small multiples need every map's mining, so they come from the change folder
            data = base64.b64encode(small.read_bytes()).decode("ascii")
            parts.append(Markup(f'<figure><img alt="mining in every map" src="data:image/png;base64,{data}">'
                                "<figcaption>Each map's mining as change from the map before.</figcaption></figure>"))
    if figs.folder is not None and change.raster is not None:  # the static map, for papers (the page has the web map)
        from smallmines.report.context import add_context_to_static_map
        from smallmines.report.figures import change_map_figure

        with rasterio.open(change.raster) as src:
            fig = change_map_figure(src.read(1), src.transform, ya, yb, summary=s)
            if src.crs is not None:
                add_context_to_static_map(fig, fig.axes[0], src.crs, tuple(src.bounds),
                                          context[0] if context is not None else None)
            figs.save_only(fig, "change_map")
    overlap = [s.get("overlap_fraction_a"), s.get("overlap_fraction_b")]
    if all(isinstance(v, (int, float)) for v in overlap) and min(overlap) < 0.99:
        parts.append(_note(f"The maps only partly overlap: {100 * overlap[0]:.0f} % of the {ya} map and "
                           f"{100 * overlap[1]:.0f} % of the {yb} map lie where both have data. All numbers describe "
                           "the overlap.", warn=True))
    if change.zones is not None and len(change.zones):
        z = change.zones
        rows, classes = [], []
        for _, r in z.sort_values(f"mining_{yb}_ha", ascending=False, na_position="last").iterrows():
            rows.append([r["zone"], _ha(r["zone_area_ha"]), _num(100 * float(r["covered_fraction"]), 0, " %"),
                         _ha(r.get(f"mining_{ya}_ha")), _ha(r.get(f"mining_{yb}_ha")), _ha(r.get("new_ha")),
                         _ha(r.get("ceased_ha")), _ha(r.get("net_growth_ha"), True),
                         _num(r.get("annual_growth_rate_pct"), 1, " %", True)])
            classes.append("" if r["coverage"] == "full" else "warn")
        parts.append(Markup("<h3>Per zone</h3>"))
        if change.zones_source:
            parts.append(_note(f"Zonal statistics computed for this report over {change.zones_source} (--context)."))
        partial = int((z["coverage"] != "full").sum())
        if partial:
            parts.append(_note(f"{partial} of {len(z)} zones are only partly covered by valid pixels of both maps "
                               "(highlighted); their areas describe the covered part only.", warn=True))
        parts.append(_table(["zone", "zone area", "covered", f"mining {ya}", f"mining {yb}", "new", "ceased",
                             "net growth", "annual rate"], rows, classes))
        if (z["coverage"] != "outside").any():
            parts.append(figs.img(zones_figure(z, ya, yb), "zones", "mined area per zone"))
    cards.append(Card(f"mined area {yb}", _ha(s["mining_b_ha"]), f"{_ha(s['mining_a_ha'])} in {ya}", "persistent"))
    cards.append(Card(f"net growth {ya}\u2013{yb}", _ha(s["net_growth_ha"], True),
                      f"{_num(s.get('net_growth_pct'), 0, ' %', True)} overall", "new"))
    rate = s.get("annual_growth_rate_pct")
    cards.append(Card("annual growth rate", _num(rate, 1, " %", True) if rate is not None else "–",
                      "compound, per year", "new"))
    source = "the two maps" if computed else str(change.path)
    lead = f"{ya} compared with {yb} ({source}) on {_ha(s.get('valid_ha'))} valid in both maps."
    return Section("change", f"Change {ya}\u2013{yb}", Markup("").join(parts), lead)


def _auto_change(inputs: ReportInputs, tmp: Path, context: tuple[Any, str] | None = None) -> ChangeFolder | None:
    """Compare the earliest and latest map when no change folder exists (per ``context`` zone when given)."""
    from smallmines.analysis.change import compare_maps

    dated = [m for m in inputs.maps if m.year is not None and m.mines is not None]
    if len(dated) < 2 or dated[0].year == dated[-1].year:
        return None
    try:
        result = compare_maps(dated[0].mines, dated[-1].mines, tmp, dated[0].year, dated[-1].year, figures=False,
                              zones=context[0] if context else None, zone_field=context[1] if context else None)
    except SmallminesError as exc:
        inputs.notes.append(f"The maps of {dated[0].year} and {dated[-1].year} could not be compared: {exc}")
        return None
    return _change_folder(result.out_dir, inputs.notes)


def _zones_on_the_fly(change: ChangeFolder, context: tuple[Any, str], source: str, notes: list[str]) -> None:
    """Zonal statistics of ``change.tif`` over the ``--context`` polygons, when the change folder has none."""
    from smallmines.analysis.maps import Grid
    from smallmines.analysis.zones import zonal_stats

    if change.raster is None or change.zones is not None or not change.summary:
        return
    try:
        with rasterio.open(change.raster) as src:
            codes, grid = src.read(1), Grid(src.crs, src.transform, src.width, src.height)
        frame = zonal_stats(codes, grid, context[0], context[1], change.summary["year_a"], change.summary["year_b"])
    except (RasterioError, SmallminesError, KeyError, ValueError) as exc:
        notes.append(f"Zonal statistics over {source} could not be computed: {exc}")
        return
    change.zones, change.zones_frame, change.zones_source = frame.drop(columns="geometry"), frame, source


# --------------------------------------------------------------------------------------------
# assembling


def _leaflet_assets() -> tuple[str, str]:
    """Leaflet's script and its stylesheet with the layer-control icons inlined as data URIs."""
    folder = resources.files("smallmines.report") / "assets" / "leaflet"
    script = (folder / "leaflet.js").read_text(encoding="utf-8")
    script = re.sub(r"//# sourceMappingURL=\S+\s*$", "", script)
    css = (folder / "leaflet.css").read_text(encoding="utf-8")
    for name in ("layers.png", "layers-2x.png"):
        data = base64.b64encode((folder / "images" / name).read_bytes()).decode("ascii")
        css = css.replace(f"url(images/{name})", f"url(data:image/png;base64,{data})")
    css = re.sub(r"url\(images/[^)]*\)", "none", css)  # marker icons: the report draws no markers
    return script, css


def _template() -> Any:
    from jinja2 import Environment

    env = Environment(autoescape=True, trim_blocks=False, lstrip_blocks=False)
    text = (resources.files("smallmines.report") / "assets" / "report.html.j2").read_text(encoding="utf-8")
    return env.from_string(text)


def _safe_json(data: Any) -> Markup:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return Markup(text.replace("</", "<\\/").replace("<!--", "<\\!--"))


def build_report(
    run_dir: str | Path,
    out_html: str | Path,
    data: str | Path | None = None,
    figures_dir: str | Path | None = None,
    title: str | None = None,
    max_overlay_px: int = 1600,
    samples: int = 4,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    context: str | Path | None = None,
    context_field: str | None = None,
    maps: Sequence[str | Path] | None = None,
) -> Path:
    """Write one self-contained HTML report of what ``run_dir`` holds.

    Args:
        run_dir: a training run, a map or change folder, a dataset, or a folder holding ``maps/``
            and ``change/`` (see the module docstring for what is read).
        out_html: the HTML file to write (atomically).
        data: the dataset (default: ``config.yaml`` ``data.root``, or ``run_dir`` when it is one).
        figures_dir: also save every figure there as PNG and PDF, for papers.
        title: report title (default from what was found).
        max_overlay_px: largest side, in pixels, of a raster layer on the web map.
        samples: number of sample predictions.
        seed: seed of the random choices (preview tiles, samples without evaluation).
        progress: called as ``progress(done, total)`` while the dataset is read.
        context: polygons (districts, forest reserves) drawn on the maps; the zonal table uses them
            when the change folder has none (computed for the report, the folder is not changed).
            The maps always carry the Natural Earth country outlines (:mod:`smallmines.report.context`).
        context_field: attribute naming the context polygons (default ``name``).
        maps: map folders (or their ``mines.tif``) to show besides those under ``run_dir``.

    Returns:
        The path of the HTML file (local absolute paths in it are written relative to its folder, so
        a report can be shared or moved with its inputs).

    Raises:
        SmallminesError: ``run_dir`` does not exist or holds nothing the report can show, or the
            context file cannot be read as polygons.

    .. versionadded:: 0.1
    """
    inputs = find_inputs(run_dir, data, maps)
    zones = None
    if context is not None:
        from smallmines.report.context import read_context

        zones = read_context(context, context_field)
    figs = _Figures(Path(figures_dir) if figures_dir else None)
    cards: list[Card] = []
    sections: list[Section] = []
    view = None
    if inputs.data is not None:
        try:
            view = _scan_dataset(inputs.data, seed=seed, progress=progress)
        except SmallminesError as exc:
            inputs.notes.append(f"The dataset {inputs.data} could not be read: {exc}")
    if view is None and not inputs.is_training_run and not inputs.maps and not inputs.changes:
        raise SmallminesError(f"{inputs.run_dir}: nothing to report: no training run (config.yaml, logs/, "
                              "evaluation/), no maps/*/mines.tif, no change/ and no dataset; pass --data PATH for a "
                              "dataset report")
    with tempfile.TemporaryDirectory(prefix="smallmines-report-") as tmp:
        change = next((c for c in inputs.changes if c.kind == "maps" and c.summary), None)
        computed = False
        if change is None:
            change = _auto_change(inputs, Path(tmp), zones)
            computed = change is not None
        elif zones is not None:
            _zones_on_the_fly(change, zones, Path(str(context)).name, inputs.notes)
        map_section, map_payload = _map_section(inputs, change, view, max_overlay_px, zones)
        change_section = _change_section(change, figs, cards, computed, zones) if change is not None else None
    # the story first (where mining is and how it spread), then how the model got there
    sections += [s for s in (map_section, change_section) if s]
    if view is not None:
        sections.append(_dataset_section(view, figs, cards))
    for section in (_training_section(inputs, figs), _evaluation_section(inputs, figs, cards),
                    _samples_section(inputs, figs, samples, seed), _maps_section(inputs)):
        if section:
            sections.append(section)

    chips = [{"label": "dataset", "on": view is not None, "title": str(inputs.data or "no dataset")},
             {"label": "training run", "on": inputs.is_training_run, "title": str(inputs.run_dir)},
             {"label": "evaluation", "on": bool(inputs.evaluations), "title": ", ".join(inputs.evaluations)},
             {"label": f"{len(inputs.maps)} maps" if inputs.maps else "maps", "on": bool(inputs.maps),
              "title": "maps/*/"},
             {"label": "change", "on": change_section is not None or any(c.kind == "dataset" for c in inputs.changes),
              "title": "change/"}]
    leaflet_js, leaflet_css = _leaflet_assets() if map_payload else ("", "")
    page = _template().render(
        title=title or _default_title(inputs, view),
        subtitle=inputs.run_dir.resolve().name,
        chips=chips, cards=cards, sections=sections, notes=inputs.notes,
        colours={CLASS_KEYS[c]: CHANGE_COLOURS[c] for c in ChangeClass},
        leaflet_js=Markup(leaflet_js), leaflet_css=Markup(leaflet_css), leaflet_version=LEAFLET_VERSION,
        map_data=_safe_json(map_payload) if map_payload else None,
        version=__version__, generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        run_dir=inputs.run_dir.resolve().name,
    )
    out = Path(out_html)
    page = _without_local_paths(page, out, inputs)
    with _atomic(out) as tmp_html:
        tmp_html.write_text(page, encoding="utf-8")
    logger.info("report written to %s (%.1f MB, %d sections%s)", out, out.stat().st_size / 1e6, len(sections),
                f", {len(figs.written)} figure files" if figs.written else "")
    return out


def _without_local_paths(page: str, out: Path, inputs: ReportInputs) -> str:
    """Write the absolute local paths in ``page`` relative to the report's folder (the home folder as ``~``)."""
    import os

    folder = out.parent.resolve()
    places = {Path.cwd().resolve(), inputs.run_dir.resolve(), folder, *(m.path.resolve() for m in inputs.maps),
              *(c.path.resolve() for c in inputs.changes)}
    if inputs.data is not None:
        places.add(Path(inputs.data).resolve().parent)
    places = {p for p in places if len(p.parts) > 2}  # never a bare /home or /tmp
    home = str(Path.home())

    def rewrite(text: str) -> str:
        for place in sorted(places, key=lambda p: len(str(p)), reverse=True):
            text = text.replace(str(place) + os.sep, os.path.relpath(place, folder) + "/").replace(
                str(place), os.path.relpath(place, folder))
        return text.replace(home + os.sep, "~/") if len(Path(home).parts) > 1 else text

    # embedded images and data (base64 may spell a path by chance) are left as they are
    parts = re.split(r"(base64,[A-Za-z0-9+/=]+)", page)
    return "".join(part if i % 2 else rewrite(part) for i, part in enumerate(parts))


def _default_title(inputs: ReportInputs, view: DatasetView | None) -> str:
    if inputs.is_training_run:
        return f"smallmines run: {inputs.run_dir.name}"
    if inputs.maps or inputs.changes:
        return "Mining maps and change"
    return f"SmallMinesDS overview: {view.path.name if view else inputs.run_dir.name}"

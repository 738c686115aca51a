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
(vendored under ``smallmines/assets/leaflet``, BSD-2-Clause) with its script, styles and icons
inlined, and raster layers are reprojected to Web Mercator and reduced to at most
``max_overlay_px`` pixels a side. It opens offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rasterio
from markupsafe import Markup
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgba
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from smallmines import __version__
from smallmines.change import (
    CHANGE_NODATA,
    CLASS_KEYS,
    ChangeClass,
    _atomic,
    map_year,
)
from smallmines.errors import SmallminesError
from smallmines.figures import (
    CHANGE_COLOURS,
    GROWTH_CMAP,
    MINING_COLOUR,
    PROBABILITY_CMAP,
    YEAR_COLOURS,
    rgb_stretch,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["ReportInputs", "build_report", "find_inputs"]

LEAFLET_VERSION = "1.9.4"
WEB_MERCATOR = "EPSG:3857"
PROBABILITY_FLOOR = 0.1
"""Probabilities below this are transparent on the web map, so the image shows through."""


# --------------------------------------------------------------------------------------------
# what a folder holds


@dataclass
class MapFolder:
    """A ``smallmines map`` output folder."""

    path: Path
    year: int | None
    summary: dict[str, Any]
    probability: Path | None
    mines: Path | None
    scene: Path | None
    rgb_bands: tuple[int, int, int] | None = None
    """1-based red, green, blue band indexes of ``scene`` when the summary names them."""


@dataclass
class ChangeFolder:
    """A ``smallmines change`` output folder (two maps, or a dataset tile by tile)."""

    path: Path
    summary: dict[str, Any]
    kind: str
    areas: pd.DataFrame | None = None
    zones: pd.DataFrame | None = None
    tiles: pd.DataFrame | None = None

    @property
    def raster(self) -> Path | None:
        """``change.tif`` when the folder compares maps."""
        path = self.path / "change.tif"
        return path if path.is_file() else None


@dataclass
class ReportInputs:
    """Everything :func:`find_inputs` found (None or empty where absent) and notes on what was not."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    data: Path | None = None
    data_origin: str = ""
    train_summary: dict[str, Any] = field(default_factory=dict)
    metrics_csv: Path | None = None
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_patch: dict[str, Path] = field(default_factory=dict)
    model: Path | None = None
    maps: list[MapFolder] = field(default_factory=list)
    changes: list[ChangeFolder] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_training_run(self) -> bool:
        """Whether any training or evaluation output was found."""
        return bool(self.config or self.train_summary or self.metrics_csv or self.evaluations or self.model)


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path} could not be read ({exc}); it is left out.")
        return {}
    return data if isinstance(data, dict) else {}


def _dig(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _resolve(path_text: str, bases: Sequence[Path]) -> Path | None:
    path = Path(path_text).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for base in bases:
        if (base / path).exists():
            return (base / path).resolve()
    return None


def _looks_like_dataset(path: Path) -> bool:
    from smallmines.data.layout import discover

    try:
        discover(path)
    except SmallminesError:
        return False
    return True


def _scene_of(summary: Mapping[str, Any], folder: Path) -> tuple[Path | None, tuple[int, int, int] | None]:
    """The image for the true-colour background, and its RGB band indexes when known.

    Read, in order: ``inputs.stacked`` (the agreed field), ``inputs.scene``, ``scene`` as a path,
    then the ``scene.sources`` list ``smallmines map`` writes (``path`` and ``bands`` names): the
    first source holding red, green and blue.
    """
    from smallmines.bands import RGB_BANDS

    bases = [folder, folder.parent, Path.cwd()]
    for keys in (("inputs", "stacked"), ("inputs", "scene"), ("scene",), ("input",)):
        value = _dig(summary, *keys)
        if isinstance(value, str) and value:
            found = _resolve(value, bases)
            if found is not None and found.is_file():
                return found, None
    sources = _dig(summary, "scene", "sources")
    for source in sources if isinstance(sources, list) else []:
        bands = [str(b).lower() if b else "" for b in source.get("bands") or []]
        if isinstance(source.get("path"), str) and all(b in bands for b in RGB_BANDS):
            found = _resolve(source["path"], bases)
            if found is not None and found.is_file():
                return found, tuple(bands.index(b) + 1 for b in RGB_BANDS)
    return None, None


def _map_folder(path: Path, notes: list[str]) -> MapFolder:
    summary = _read_json(path / "summary.json", notes) if (path / "summary.json").is_file() else {}
    probability = path / "probability.tif"
    mines = path / "mines.tif"
    scene, rgb = _scene_of(summary, path)
    if summary and scene is None:
        notes.append(f"{path}/summary.json names no readable scene (inputs.stacked); the map has no true-colour "
                     "background.")
    year = map_year(path) or (map_year(scene) if scene is not None else None)
    return MapFolder(path, year, summary, probability if probability.is_file() else None,
                     mines if mines.is_file() else None, scene, rgb)


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _change_folder(path: Path, notes: list[str]) -> ChangeFolder:
    summary = _read_json(path / "summary.json", notes) if (path / "summary.json").is_file() else {}
    kind = "dataset" if (path / "tiles.csv").is_file() else "maps"
    return ChangeFolder(path, summary, kind, _read_csv(path / "areas.csv"), _read_csv(path / "zones.csv"),
                        _read_csv(path / "tiles.csv"))


def find_inputs(run_dir: str | Path, data: str | Path | None = None) -> ReportInputs:
    """Look into ``run_dir`` for a training run, maps, change folders and a dataset.

    Args:
        run_dir: any folder (a training run, a map folder, a change folder, a dataset, or a folder
            holding ``maps/`` and ``change/``).
        data: the dataset; overrides ``config.yaml`` ``data.root``.

    Returns:
        The inputs found, with notes on what is missing or unreadable.

    Raises:
        SmallminesError: ``run_dir`` does not exist.
    """
    from smallmines.errors import DatasetNotFoundError

    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise DatasetNotFoundError(f"{run}: no such folder; give a training run, map, change or dataset folder")
    found = ReportInputs(run)
    notes = found.notes
    if (run / "config.yaml").is_file():
        import yaml

        try:
            found.config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            notes.append(f"{run}/config.yaml is not valid YAML ({exc}).")
    if (run / "train_summary.json").is_file():
        found.train_summary = _read_json(run / "train_summary.json", notes)
    if (run / "logs" / "metrics.csv").is_file():
        found.metrics_csv = run / "logs" / "metrics.csv"
    for metrics in sorted((run / "evaluation").glob("*/metrics.json")):
        split = metrics.parent.name
        found.evaluations[split] = _read_json(metrics, notes)
        if (metrics.parent / "per_patch.csv").is_file():
            found.per_patch[split] = metrics.parent / "per_patch.csv"
    for candidate in (run / "model.pt", run / "checkpoints" / "best.ckpt"):
        if candidate.is_file():
            found.model = candidate
            break

    map_dirs = [run] if (run / "mines.tif").is_file() else []
    map_dirs += sorted(p for p in (run / "maps").glob("*") if (p / "mines.tif").is_file() or
                       (p / "probability.tif").is_file())
    found.maps = [_map_folder(p, notes) for p in map_dirs]
    found.maps.sort(key=lambda m: (m.year is None, m.year or 0, str(m.path)))

    change_dirs = [run] if (run / "change.tif").is_file() or (run / "tiles.csv").is_file() else []
    for root in (run / "change", *sorted((run / "change").glob("*"))):
        if (root / "change.tif").is_file() or (root / "tiles.csv").is_file():
            change_dirs.append(root)
    found.changes = [_change_folder(p, notes) for p in change_dirs]

    if data is not None:
        found.data, found.data_origin = Path(data).expanduser(), "--data"
    else:
        root = _dig(found.config, "data", "root")
        if isinstance(root, str) and root:
            found.data = _resolve(root, [Path.cwd(), run, run.parent])
            found.data_origin = "config.yaml data.root"
            if found.data is None:
                notes.append(f"config.yaml names the dataset {root!r}, which is not here; pass --data PATH to "
                             "show the dataset and sample predictions.")
        if found.data is None:
            dataset_change = next((c for c in found.changes if c.kind == "dataset"), None)
            recorded = _dig(dataset_change.summary, "dataset") if dataset_change else None
            if isinstance(recorded, str) and Path(recorded).exists():
                found.data, found.data_origin = Path(recorded), "change/summary.json"
        if found.data is None and not found.is_training_run and not found.maps and not found.changes:
            if _looks_like_dataset(run):
                found.data, found.data_origin = run, "the folder itself"
    return found


# --------------------------------------------------------------------------------------------
# HTML pieces


@dataclass
class Section:
    """One block of the report."""

    id: str
    title: str
    html: Markup
    lead: str = ""


@dataclass
class Card:
    """A headline number at the top of the report."""

    key: str
    value: str
    detail: str = ""
    kind: str = ""


class _Figures:
    """Turns figures into inline images and, when asked, PNG/PDF files for papers."""

    def __init__(self, folder: Path | None, dpi: int = 110) -> None:
        self.folder = folder
        self.dpi = dpi
        self.written: list[Path] = []

    def save_only(self, fig: Figure, name: str) -> None:
        """Save a figure for papers without putting it in the page (when a folder was given)."""
        if self.folder is not None:
            from smallmines.figures import save_figure

            self.written += save_figure(fig, self.folder / name)

    def img(self, fig: Figure, name: str, alt: str, caption: str = "") -> Markup:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight", facecolor="white")
        if self.folder is not None:
            from smallmines.figures import save_figure

            self.written += save_figure(fig, self.folder / name)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return Markup(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>')


def _num(value: Any, digits: int = 1, unit: str = "", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (int, np.integer)) and not signed:
        return f"{int(value):,}{unit}"
    sign = "+" if signed else ""
    return f"{float(value):{sign},.{digits}f}{unit}"


def _ha(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return _num(value, 0 if abs(float(value)) >= 100 else 1, " ha", signed)


def _swatch(colour: str) -> str:
    return f'<span class="sw" style="background:{colour}"></span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> Markup:
    """An HTML table; cells are escaped unless they are Markup."""

    def cell(value: Any) -> str:
        return str(value) if isinstance(value, Markup) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    return Markup(f'<div class="scroll"><table class="t"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(body)}</tbody></table></div>')


def _note(text: str, warn: bool = False) -> Markup:
    return Markup(f'<div class="note{" warn" if warn else ""}">{html.escape(text)}</div>')


# --------------------------------------------------------------------------------------------
# the dataset


@dataclass
class DatasetView:
    """What the report knows about a dataset after one pass over its patches."""

    path: Path
    patches: pd.DataFrame
    tiles: pd.DataFrame | None
    growth: dict[str, Any] | None
    pairs: list[dict[str, Any]]
    problem: str = ""


def _scan_dataset(path: Path, pairs: int = 6, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> DatasetView:
    """Read every mask once: per-patch shares, labelled growth per tile, a preview of tile pairs."""
    from smallmines.change import tile_growth
    from smallmines.errors import ChangeError
    from smallmines.data.dataset import PatchSource

    source = PatchSource(path)
    rows, masks = [], {}
    for i, key in enumerate(source.keys):
        _, mask = source.read(i)
        masks[i] = mask
        valid = int((mask != CHANGE_NODATA).sum())
        mining = int((mask == 1).sum())
        rows.append({"id": key.id, "site": key.site, "year": key.year, "valid_px": valid, "mining_px": mining,
                     "share": 100.0 * mining / valid if valid else 0.0})
        if progress is not None:
            progress(i + 1, len(source))
    patches = pd.DataFrame(rows)
    tiles, summary, problem = None, None, ""
    try:
        tiles, summary = tile_growth(source, masks=masks)
    except ChangeError as exc:
        problem = str(exc)
    view = DatasetView(path, patches, tiles, summary, [], problem)
    if tiles is not None and len(tiles):
        view.pairs = _tile_pairs(source, tiles, masks, summary, pairs, seed)
    return view


def _rgb_of(image: np.ndarray) -> np.ndarray:
    from smallmines.bands import RGB_BANDS, band_index

    return rgb_stretch(image[[band_index(b) for b in RGB_BANDS]])


def _tile_pairs(source: Any, tiles: pd.DataFrame, masks: Mapping[int, np.ndarray], summary: Mapping[str, Any],
                n: int, seed: int) -> list[dict[str, Any]]:
    """The tiles whose mining grew most, plus a few others with mining, in both years."""
    index = {pid: i for i, pid in enumerate(source.ids)}
    mined = tiles[(tiles["mining_a_ha"] > 0) | (tiles["mining_b_ha"] > 0)]
    top = mined.nlargest(max(1, n - n // 3), "net_growth_ha")
    rest = mined.drop(top.index)
    extra = rest.sample(min(len(rest), n - len(top)), random_state=seed) if len(rest) else rest
    chosen = pd.concat([top, extra])
    if len(chosen) < n:
        others = tiles.drop(chosen.index)
        chosen = pd.concat([chosen, others.head(n - len(chosen))])
    out = []
    for row in chosen.itertuples():
        ia, ib = index[row.id_a], index[row.id_b]
        out.append({
            "title": row.site, "rgb_a": _rgb_of(source.read(ia)[0]), "rgb_b": _rgb_of(source.read(ib)[0]),
            "mask_a": masks[ia], "mask_b": masks[ib],
            "caption": f"{row.mining_a_pct:.1f}% \u2192 {row.mining_b_pct:.1f}%",
        })
    return out


def _dataset_section(view: DatasetView, figs: _Figures, cards: list[Card]) -> Section:
    from smallmines.figures import (
        dataset_overview_figure,
        growth_figure,
        tile_growth_figure,
        tile_pairs_figure,
    )

    p = view.patches
    years = sorted(p["year"].unique())
    rows = []
    for year in years:
        sel = p[p["year"] == year]
        share = 100.0 * sel["mining_px"].sum() / max(sel["valid_px"].sum(), 1)
        rows.append([str(year), _num(len(sel)), _num(int((sel["mining_px"] > 0).sum())), _num(share, 2, " %"),
                     _num(float(sel["share"].median()), 2, " %"), _num(float(sel["share"].max()), 1, " %")])
        cards.append(Card(f"labelled mining {year}", _num(share, 1, " %"),
                          f"of valid pixels in {len(sel):,} patches", ""))
    parts = [_table(["year", "patches", "with mining", "mining share", "median patch", "max patch"], rows),
             figs.img(dataset_overview_figure(p), "dataset_overview", "patches by mining share and year")]
    if view.growth is not None and view.tiles is not None:
        g = view.growth
        from smallmines.change import tiles_frame

        frame = tiles_frame(view.tiles)
        parts.append(Markup("<h3>Labelled mining, tile by tile</h3>"))
        parts.append(_note(
            f"{g['tiles_paired']:,} tiles exist in both {g['year_a']} and {g['year_b']} (paired by tile id); "
            f"{g['tiles_unpaired']:,} exist in one year only and are left out. Areas count pixels valid in both years."))
        parts.append(Markup('<div class="grid2">') + _area_table(g) +
                     figs.img(growth_figure(g, title="Labelled mining, paired tiles"), "dataset_growth",
                              "labelled mined area in both years") + Markup("</div>"))
        parts.append(figs.img(tile_growth_figure(frame, g["year_a"], g["year_b"]), "tile_growth",
                              "tile footprints coloured by growth",
                              "Red tiles gained labelled mining, blue tiles lost it; grey tiles have none in either "
                              "year."))
        cards.append(Card(f"labelled growth {g['year_a']}\u2013{g['year_b']}", _ha(g["net_growth_ha"], True),
                          f"{_num(g['net_growth_pct'], 0, ' %', True)} on {g['tiles_paired']:,} paired tiles", "new"))
    elif view.problem:
        parts.append(_note(f"No tile-by-tile growth: {view.problem}"))
    if view.pairs:
        ya, yb = view.growth["year_a"], view.growth["year_b"]
        parts.append(Markup("<h3>The same ground in both years</h3>"))
        parts.append(figs.img(tile_pairs_figure(view.pairs, ya, yb), "preview_pairs", "tile pairs",
                              f"True colour (2-98 % stretch) with labelled mining outlined; {ya} framed purple, "
                              f"{yb} orange. The tiles whose mining grew most come first."))
    lead = f"{len(p):,} patches of {view.path}"
    return Section("dataset", "Dataset", Markup("").join(parts), lead)


def _area_table(summary: Mapping[str, Any]) -> Markup:
    """The area table of a change summary, with colour swatches and totals."""
    ya, yb = summary["year_a"], summary["year_b"]
    rows, classes = [], []
    for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED, ChangeClass.NO_MINING):
        cls = summary["classes"][CLASS_KEYS[c]]
        rows.append([Markup(_swatch(CHANGE_COLOURS[c])) + c.label, _ha(cls["area_ha"]),
                     _num(cls["pct_valid"], 2, " %")])
        classes.append("")
    rows.append([f"mining {ya}", _ha(summary["mining_a_ha"]), _num(summary.get("mining_a_pct"), 2, " %")])
    rows.append([f"mining {yb}", _ha(summary["mining_b_ha"]), _num(summary.get("mining_b_pct"), 2, " %")])
    classes += ["total", "total"]
    rows.append(["net growth", _ha(summary["net_growth_ha"], True), _num(summary.get("net_growth_pct"), 1, " %", True)])
    rate = summary.get("annual_growth_rate_pct")
    rows.append(["annual growth rate", "", _num(rate, 1, " % / yr", True) if rate is not None else "undefined"])
    classes += ["total", ""]
    return _table(["class", "area", "% of valid area"], rows, classes)


# --------------------------------------------------------------------------------------------
# training and evaluation


def _training_section(inputs: ReportInputs, figs: _Figures) -> Section | None:
    from smallmines.figures import training_curves_figure

    if not (inputs.train_summary or inputs.metrics_csv or inputs.config):
        return None
    parts = []
    facts = []
    ts = inputs.train_summary
    model = _dig(inputs.config, "model", "name") or _dig(inputs.config, "model", "arch") or ts.get("model")
    for label, value in (("model", model), ("bands", _dig(inputs.config, "data", "bands")),
                         ("epochs", ts.get("epochs")), ("best epoch", ts.get("best_epoch")),
                         ("best score", ts.get("best_score")), ("parameters", ts.get("params")),
                         ("training time", f"{ts['seconds'] / 60:.1f} min" if isinstance(ts.get("seconds"), (int, float))
                          else None),
                         ("patches / s", ts.get("patches_per_s") or ts.get("patches_per_second"))):
        if value is not None and value != "":
            if isinstance(value, float):
                value = f"{value:,.3g}" if value < 1000 else f"{value:,.0f}"
            elif isinstance(value, int):
                value = f"{value:,}"
            elif isinstance(value, (list, tuple)):
                value = ", ".join(map(str, value))
            facts.append([label, str(value)])
    if facts:
        parts.append(Markup('<dl class="facts">') + Markup("").join(
            Markup("<div><dt>{}</dt><dd>{}</dd></div>").format(k, v) for k, v in facts) + Markup("</dl>"))
    if inputs.metrics_csv is not None:
        try:
            curves = pd.read_csv(inputs.metrics_csv)
            parts.append(figs.img(training_curves_figure(curves), "training_curves", "training curves",
                                  "Loss per epoch (left) and validation scores (right); the dashed line marks the best "
                                  "epoch by IoU of the mining class."))
        except (ValueError, KeyError, pd.errors.ParserError) as exc:
            parts.append(_note(f"{inputs.metrics_csv} could not be drawn ({exc}).", warn=True))
    else:
        parts.append(_note("No logs/metrics.csv: no training curves."))
    return Section("training", "Training", Markup("").join(parts), f"run folder {inputs.run_dir}")


SCORE_COLUMNS = (("iou_mining", "IoU mining"), ("iou_background", "IoU bg"), ("miou", "mIoU"),
                 ("f1_mining", "F1 mining"), ("precision_mining", "precision"), ("recall_mining", "recall"),
                 ("accuracy", "accuracy"))


def _score_row(label: str, scores: Mapping[str, Any]) -> list[Any]:
    return [label, *(_num(scores.get(k), 3) for k, _ in SCORE_COLUMNS), _num(scores.get("patches"))]


def _evaluation_section(inputs: ReportInputs, figs: _Figures, cards: list[Card]) -> Section | None:
    from smallmines.figures import confusion_figure

    if not inputs.evaluations:
        return None
    order = sorted(inputs.evaluations, key=lambda s: {"test": 0, "val": 1, "train": 2}.get(s, 3))
    parts = []
    for split in order:
        m = inputs.evaluations[split]
        rows = [_score_row("overall", {**m.get("overall", {}), "patches": m.get("patches")})]
        classes = ["total"]
        for year, scores in (m.get("per_year") or {}).items():
            rows.append(_score_row(f"year {year}", scores))
            classes.append("")
        for b, scores in (m.get("per_bin") or {}).items():
            rows.append(_score_row(f"mining share {scores.get('label', b)}", scores))
            classes.append("")
        threshold = m.get("threshold")
        parts.append(Markup(f"<h3>{html.escape(split)} split"
                            f"{f' (threshold {threshold:.2f})' if isinstance(threshold, (int, float)) else ''}</h3>"))
        table = _table(["", *(h for _, h in SCORE_COLUMNS), "patches"], rows, classes)
        confusion = m.get("confusion")
        if confusion:
            parts.append(Markup('<div class="grid2" style="grid-template-columns: 2fr 1fr">') + table +
                         figs.img(confusion_figure(confusion, f"Confusion, {split}"), f"confusion_{split}",
                                  f"confusion matrix, {split}") + Markup("</div>"))
        else:
            parts.append(table)
        if split == order[0]:
            overall = m.get("overall", {})
            cards.append(Card(f"IoU mining ({split})", _num(overall.get("iou_mining"), 3),
                              f"F1 {_num(overall.get('f1_mining'), 3)}, mIoU {_num(overall.get('miou'), 3)}"))
    return Section("evaluation", "Evaluation", Markup("").join(parts),
                   "Pixel scores over each split; per-bin rows group patches by their true mining share.")


def _pick_samples(per_patch: Path | None, ids: Sequence[str], n: int, seed: int) -> list[tuple[str, str]]:
    """(patch id, label) of patches to show: best, median and worst IoU among mined patches, one clean."""
    if per_patch is not None:
        table = pd.read_csv(per_patch)
        if "id" in table.columns and "iou_mining" in table.columns:
            table = table[table["id"].isin(set(ids))]
            mined = table[table.get("mining_share", pd.Series(1.0, index=table.index)) > 0]
            mined = mined.dropna(subset=["iou_mining"]).sort_values("iou_mining", ascending=False)
            picks: list[tuple[str, str]] = []
            if len(mined):
                positions = np.unique(np.linspace(0, len(mined) - 1, max(1, n - 1)).round().astype(int))
                names = {0: "best", len(mined) - 1: "worst"}
                for pos in positions:
                    row = mined.iloc[pos]
                    tag = names.get(pos, "median" if len(positions) == 3 else "")
                    picks.append((row["id"], f"{row['id']}\n{tag} IoU {row['iou_mining']:.2f}".strip()))
            clean = table[table.get("mining_share", pd.Series(0.0, index=table.index)) == 0]
            if len(clean) and len(picks) < n:
                row = clean.sort_values("fp", ascending=False).iloc[0] if "fp" in clean else clean.iloc[0]
                picks.append((row["id"], f"{row['id']}\nno mining"))
            if picks:
                return picks[:n]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=min(n, len(ids)), replace=False) if ids else []
    return [(ids[i], ids[i]) for i in chosen]


def _samples_section(inputs: ReportInputs, figs: _Figures, n: int, seed: int) -> Section | None:
    from smallmines.figures import samples_figure

    if inputs.model is None:
        return None
    if inputs.data is None:
        return Section("samples", "Sample predictions",
                       _note("A model is here but no dataset: pass --data PATH to draw sample predictions."))
    try:
        import torch

        from smallmines.data.dataset import SmallMinesDS
        from smallmines.models import load_model, mining_probability

        network, card = load_model(inputs.model)
        dataset = SmallMinesDS(inputs.data, split=None, bands=card.channels, stats=card.stats)
        split = next((s for s in ("test", "val") if s in inputs.per_patch), None)
        picks = _pick_samples(inputs.per_patch.get(split) if split else None, dataset.ids, n, seed)
        position = {pid: i for i, pid in enumerate(dataset.ids)}
        samples = []
        with torch.inference_mode():
            for pid, label in picks:
                i = position[pid]
                sample = dataset[i]
                probability = mining_probability(network(sample["image"][None]))[0].numpy()
                image, truth = dataset.source.read(dataset.indices[i])
                samples.append({"rgb": _rgb_of(image), "truth": truth,
                                "prediction": (probability >= card.threshold).astype(np.uint8), "title": label})
    except (SmallminesError, RuntimeError, KeyError, ValueError) as exc:
        logger.warning("sample predictions skipped: %s", exc)
        return Section("samples", "Sample predictions",
                       _note(f"Sample predictions could not be drawn: {exc}", warn=True))
    caption = (f"Model {inputs.model.name} at threshold {card.threshold:.2f}"
               + (f"; patches from the {split} split chosen by IoU" if split else "; randomly chosen patches"))
    return Section("samples", "Sample predictions", figs.img(samples_figure(samples), "samples",
                                                             "sample predictions", caption),
                   "True colour, ground truth, prediction and errors: white hits, magenta false alarms, cyan misses.")


# --------------------------------------------------------------------------------------------
# raster layers for the web map


@dataclass
class WebLayer:
    """An image overlay on the web map."""

    name: str
    plain: str
    url: str
    bounds: list[list[float]]
    group: str = "overlay"
    visible: bool = False
    opacity: float = 1.0
    pixelated: bool = False


def _rank_reduce(array: np.ndarray, factor: int, ranks: Mapping[int, int]) -> np.ndarray:
    """Block-reduce a class raster keeping the highest-ranked value of each block (0 = nodata)."""
    if factor <= 1:
        return array
    lut = np.zeros(256, np.uint8)
    inverse = np.full(max(ranks.values()) + 1, CHANGE_NODATA, np.uint8)
    for value, rank in ranks.items():
        lut[value] = rank
        inverse[rank] = value
    h, w = (array.shape[0] // factor) * factor, (array.shape[1] // factor) * factor
    blocks = lut[array[:h, :w]].reshape(h // factor, factor, w // factor, factor).max(axis=(1, 3))
    return inverse[blocks]


MINES_RANKS = {0: 1, 1: 2}
CHANGE_RANKS = {int(ChangeClass.NO_MINING): 1, int(ChangeClass.PERSISTENT): 2, int(ChangeClass.CEASED): 3,
                int(ChangeClass.NEW): 4}


def _read_reduced(path: Path, kind: str, max_px: int,
                  bands: Sequence[int] | None = None) -> tuple[np.ndarray, Any, Affine]:
    """Read a raster at most ~``max_px`` a side: averaged for images, class-ranked for classes."""
    with rasterio.open(path) as src:
        factor = max(1, math.ceil(max(src.width, src.height) / max_px))
        crs = src.crs
        if kind in ("mines", "change"):
            data = src.read(1)
            if src.nodata is not None and src.nodata != CHANGE_NODATA:
                data = np.where(data == src.nodata, CHANGE_NODATA, data).astype(np.uint8)
            data = _rank_reduce(data.astype(np.uint8), factor, MINES_RANKS if kind == "mines" else CHANGE_RANKS)
            return data[None], crs, src.transform @ Affine.scale(factor)
        indexes = list(bands) if bands else _rgb_indexes(src) if kind == "rgb" else [1]
        shape = (len(indexes), max(1, src.height // factor), max(1, src.width // factor))
        band = src.read(indexes, out_shape=shape, resampling=Resampling.average, masked=True)
        data = np.ma.filled(band.astype(np.float32), np.nan)
        if kind == "rgb":
            data[data == -9999] = np.nan
        transform = src.transform @ Affine.scale(src.width / shape[2], src.height / shape[1])
        return data, crs, transform


def _rgb_indexes(src: rasterio.DatasetReader) -> list[int]:
    """1-based band indexes of red, green, blue: by band description, else the published 13-band order."""
    from smallmines.bands import RGB_BANDS, band_index

    names = [(d or "").lower() for d in src.descriptions]
    if all(b in names for b in RGB_BANDS):
        return [names.index(b) + 1 for b in RGB_BANDS]
    if src.count >= 13:
        return [band_index(b) + 1 for b in RGB_BANDS]
    if src.count >= 3:
        return [1, 2, 3]
    raise SmallminesError(f"{src.name}: {src.count} bands; cannot find red, green and blue for a true-colour image")


def _to_web(data: np.ndarray, crs: Any, transform: Affine, categorical: bool) -> tuple[np.ndarray, list[list[float]]]:
    """Warp ``(B, H, W)`` to Web Mercator at about the same pixel count; returns data and lat/lon bounds."""
    bands, h, w = data.shape
    left, top = transform.c, transform.f
    right, bottom = left + w * transform.a, top + h * transform.e
    dst_transform, dst_w, dst_h = calculate_default_transform(crs, WEB_MERCATOR, w, h, left, bottom, right, top)
    nodata = CHANGE_NODATA if categorical else np.nan
    out = np.full((bands, dst_h, dst_w), nodata, dtype=data.dtype)
    reproject(data, out, src_transform=transform, src_crs=crs, src_nodata=nodata, dst_transform=dst_transform,
              dst_crs=WEB_MERCATOR, dst_nodata=nodata,
              resampling=Resampling.nearest if categorical else Resampling.bilinear)
    west, north = dst_transform.c, dst_transform.f
    east, south = west + dst_w * dst_transform.a, north + dst_h * dst_transform.e
    lon0, lat0, lon1, lat1 = transform_bounds(WEB_MERCATOR, "EPSG:4326", west, south, east, north)
    return out, [[lat0, lon0], [lat1, lon1]]


def _png(rgba: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colourize(data: np.ndarray, kind: str, colour: str = MINING_COLOUR) -> np.ndarray:
    """RGBA uint8 of a warped layer."""
    if kind == "rgb":
        valid = np.isfinite(data).all(axis=0)
        rgb = rgb_stretch(data)
        alpha = np.where(valid, 1.0, 0.0)[..., None]
        return (np.concatenate([rgb, alpha], axis=-1) * 255).round().astype(np.uint8)
    if kind == "probability":
        p = data[0]
        valid = np.isfinite(p)
        rgba = colormaps[PROBABILITY_CMAP](np.clip(np.nan_to_num(p), 0, 1))
        rgba[..., 3] = np.where(valid, np.clip((p - PROBABILITY_FLOOR) / 0.4, 0, 1) * 0.9, 0)
        return (rgba * 255).round().astype(np.uint8)
    table = np.zeros((256, 4), np.uint8)
    if kind == "mines":
        table[1] = [round(255 * v) for v in to_rgba(colour)]
    else:
        for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED):
            table[int(c)] = [round(255 * v) for v in to_rgba(CHANGE_COLOURS[c])]
    return table[data[0]]


def _web_layer(path: Path, kind: str, name: str, plain: str, max_px: int, colour: str = MINING_COLOUR,
               bands: Sequence[int] | None = None, **options: Any) -> WebLayer | None:
    try:
        data, crs, transform = _read_reduced(path, kind, max_px, bands)
        if crs is None:
            raise SmallminesError(f"{path}: no CRS")
        warped, bounds = _to_web(data, crs, transform, categorical=kind in ("mines", "change"))
    except (RasterioError, SmallminesError, ValueError) as exc:
        logger.warning("web map layer %s skipped: %s", path, exc)
        return None
    return WebLayer(name, plain, _png(_colourize(warped, kind, colour)), bounds,
                    pixelated=kind in ("mines", "change"), **options)


def _label(colour: str | None, text: str) -> str:
    return (f'<span class="sw" style="background:{colour}"></span>' if colour else "") + html.escape(text)


def _vector_geojson(frame: Any, popup: Callable[[Any], str], tip: Callable[[Any], str],
                    style: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """GeoJSON (EPSG:4326, simplified) with popups, tooltips and per-feature styles."""
    web = frame.to_crs("EPSG:4326")
    features = []
    for (_, row), geom in zip(web.iterrows(), web.geometry, strict=True):
        if geom is None or geom.is_empty:
            continue
        from shapely.geometry import mapping

        features.append({"type": "Feature", "geometry": mapping(geom.simplify(1e-5, preserve_topology=True)),
                         "properties": {"_popup": popup(row), "_tip": tip(row), "_style": style(row)}})
    return {"type": "FeatureCollection", "features": features}


def _zone_popup(row: Any, ya: int, yb: int) -> str:
    lines = [f"<b>{html.escape(str(row['zone']))}</b>",
             f"covered: {_num(100 * float(row['covered_fraction']), 0, ' %')} ({html.escape(str(row['coverage']))})"]
    if row["coverage"] != "outside":
        lines += [f"mining {ya}: {_ha(row.get(f'mining_{ya}_ha'))}", f"mining {yb}: {_ha(row.get(f'mining_{yb}_ha'))}",
                  f"net growth: {_ha(row.get('net_growth_ha'), True)}",
                  f"annual rate: {_num(row.get('annual_growth_rate_pct'), 1, ' %/yr', True)}"]
    return "<br>".join(lines)


def _tile_popup(row: Any, ya: int, yb: int) -> str:
    return (f"<b>{html.escape(str(row['site']))}</b><br>{html.escape(str(row['status']))}<br>"
            f"mining {ya}: {_num(row['mining_a_pct'], 1, ' %')}<br>mining {yb}: {_num(row['mining_b_pct'], 1, ' %')}<br>"
            f"change: {_num(row['growth_pp'], 1, ' pp', True)} ({_ha(row['net_growth_ha'], True)})")


def _growth_colour(value: float, limit: float) -> str:
    if not math.isfinite(value):
        return "#bdbdbd"
    return to_hex(GROWTH_CMAP(0.5 + 0.5 * max(-1.0, min(1.0, value / limit))))


def _legend_html(has: set[str], years: Sequence[int]) -> str:
    parts = []
    if "change" in has:
        parts.append("<b>Change</b>")
        for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED):
            parts.append(_label(CHANGE_COLOURS[c], c.label))
    if "mines" in has:
        parts.append("<b>Mines</b>")
        parts += [_label(YEAR_COLOURS[i % 2], f"mining {y}") for i, y in enumerate(years)]
    if "probability" in has:
        stops = ", ".join(to_hex(colormaps[PROBABILITY_CMAP](v)) for v in np.linspace(0, 1, 8))
        parts.append("<b>Mining probability</b>")
        parts.append(f'<div class="ramp" style="background:linear-gradient(to right, {stops})"></div>'
                     f'<div class="ends"><span>{PROBABILITY_FLOOR:g}</span><span>0.5</span><span>1</span></div>')
    if "tiles" in has:
        parts.append("<b>Dataset tiles</b>")
        parts.append(_label(CHANGE_COLOURS[ChangeClass.NEW], "labelled mining grew"))
        parts.append(_label(CHANGE_COLOURS[ChangeClass.CEASED], "labelled mining shrank"))
        parts.append(_label("#d9d9d9", "no mining either year"))
    if "zones" in has:
        parts.append("<b>Zones</b>")
        parts.append(_label(None, "dashed: partly covered; click for numbers"))
    return "".join(p if p.startswith(("<b>", "<div")) else f"<div>{p}</div>" for p in parts)


def _map_section(inputs: ReportInputs, change: ChangeFolder | None, view: DatasetView | None,
                 max_px: int) -> tuple[Section | None, dict[str, Any] | None]:
    layers: list[WebLayer] = []
    vectors: list[dict[str, Any]] = []
    has: set[str] = set()
    years = [m.year for m in inputs.maps]
    labels = [str(y) if y is not None else m.path.name for y, m in zip(years, inputs.maps, strict=True)]
    for m, label in zip(inputs.maps, labels, strict=True):
        if m.scene is not None:
            layer = _web_layer(m.scene, "rgb", f"True colour {label}", f"true colour {label}", max_px, group="base",
                               bands=m.rgb_bands)
            if layer:
                layers.append(layer)
    # the latest true-colour image is the default background
    bases = [layer for layer in layers if layer.group == "base"]
    if bases:
        bases[-1].visible = True
    for i, (m, label) in enumerate(zip(inputs.maps, labels, strict=True)):
        last = i == len(inputs.maps) - 1
        if m.probability is not None:
            layer = _web_layer(m.probability, "probability", _label(None, f"Mining probability {label}"),
                               f"probability {label}", max_px, visible=last and change is None, opacity=0.9)
            if layer:
                layers.append(layer)
                has.add("probability")
        if m.mines is not None:
            colour = YEAR_COLOURS[i % 2]
            layer = _web_layer(m.mines, "mines", _label(colour, f"Mines {label}"), f"mines {label}", max_px,
                               colour=colour, opacity=0.85)
            if layer:
                layers.append(layer)
                has.add("mines")
    if change is not None and change.raster is not None:
        ya, yb = change.summary.get("year_a", ""), change.summary.get("year_b", "")
        swatches = "".join(_swatch(CHANGE_COLOURS[c]) for c in (ChangeClass.NEW, ChangeClass.PERSISTENT,
                                                               ChangeClass.CEASED))
        layer = _web_layer(change.raster, "change", Markup(swatches) + html.escape(f"Change {ya}\u2013{yb}"),
                           f"change {ya}-{yb}", max_px, visible=True)
        if layer:
            layers.append(layer)
            has.add("change")
        zones_gpkg = change.path / "zones.gpkg"
        if zones_gpkg.is_file():
            import geopandas as gpd

            zones = gpd.read_file(zones_gpkg)
            vectors.append({"name": _label(None, "Zones"), "visible": True, "style": {},
                            "data": _vector_geojson(
                                zones, lambda r: _zone_popup(r, ya, yb), lambda r: str(r["zone"]),
                                lambda r: {"color": "#111111", "weight": 1.6, "fill": True, "fillOpacity": 0.0,
                                           "dashArray": None if r["coverage"] == "full" else "5 4"})})
            has.add("zones")
    if view is not None and view.tiles is not None and len(view.tiles):
        from smallmines.change import tiles_frame

        frame = tiles_frame(view.tiles)
        if frame.crs is not None:
            ya, yb = view.growth["year_a"], view.growth["year_b"]
            limit = max(1.0, float(np.nanpercentile(np.abs(frame["growth_pp"].astype(float)), 98)))
            vectors.append({"name": _label("#e41a1c", "Dataset tiles by labelled growth"),
                            "visible": not layers, "style": {},
                            "data": _vector_geojson(
                                frame, lambda r: _tile_popup(r, ya, yb), lambda r: str(r["site"]),
                                lambda r: {"color": "#444444", "weight": 0.6, "fillOpacity": 0.85,
                                           "fillColor": "#d9d9d9" if r["status"] == "no mining"
                                           else _growth_colour(float(r["growth_pp"]), limit)})})
            has.add("tiles")
    if not layers and not vectors:
        return None, None
    bounds = _union_bounds([layer.bounds for layer in layers] or [_geojson_bounds(v["data"]) for v in vectors])
    payload = {"layers": [layer.__dict__ for layer in layers], "vectors": vectors, "bounds": bounds,
               "legend": _legend_html(has, [y for y in years if y is not None] or [0])}
    missing = []
    if inputs.maps and not any(layer.group == "base" for layer in layers):
        missing.append("no true-colour background: the map summary.json names no readable scene (inputs.stacked)")
    if layers:
        lead = ("Switch layers in the panel at the top right; the background buttons choose the true-colour image. "
                "Raster layers are reduced for the browser; use the GeoTIFFs for analysis.")
    else:
        lead = "Footprints of the dataset tiles, coloured by the growth of their labelled mining."
    if vectors:
        lead += " Click a zone or tile for its numbers."
    body = Markup('<div id="map"></div>') + Markup("").join(_note(m, warn=True) for m in missing)
    return Section("webmap", "Interactive map", body, lead), payload


def _union_bounds(items: Sequence[list[list[float]]]) -> list[list[float]]:
    south = min(b[0][0] for b in items)
    west = min(b[0][1] for b in items)
    north = max(b[1][0] for b in items)
    east = max(b[1][1] for b in items)
    return [[south, west], [north, east]]


def _geojson_bounds(collection: Mapping[str, Any]) -> list[list[float]]:
    from shapely.geometry import shape

    boxes = [shape(f["geometry"]).bounds for f in collection["features"]]
    return [[min(b[1] for b in boxes), min(b[0] for b in boxes)], [max(b[3] for b in boxes), max(b[2] for b in boxes)]]


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


def _change_section(change: ChangeFolder, figs: _Figures, cards: list[Card], computed: bool) -> Section:
    from smallmines.figures import growth_figure, zones_figure

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
    if figs.folder is not None and change.raster is not None:  # the static map, for papers (the page has the web map)
        from smallmines.figures import change_map_figure

        with rasterio.open(change.raster) as src:
            figs.save_only(change_map_figure(src.read(1), src.transform, ya, yb, summary=s), "change_map")
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


def _auto_change(inputs: ReportInputs, tmp: Path) -> ChangeFolder | None:
    """Compare the earliest and latest map when no change folder exists."""
    from smallmines.change import compare_maps

    dated = [m for m in inputs.maps if m.year is not None and m.mines is not None]
    if len(dated) < 2 or dated[0].year == dated[-1].year:
        return None
    try:
        result = compare_maps(dated[0].mines, dated[-1].mines, tmp, dated[0].year, dated[-1].year, figures=False)
    except SmallminesError as exc:
        inputs.notes.append(f"The maps of {dated[0].year} and {dated[-1].year} could not be compared: {exc}")
        return None
    return _change_folder(result.out_dir, inputs.notes)


# --------------------------------------------------------------------------------------------
# assembling


def _leaflet_assets() -> tuple[str, str]:
    """Leaflet's script and its stylesheet with the layer-control icons inlined as data URIs."""
    folder = resources.files("smallmines") / "assets" / "leaflet"
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
    text = (resources.files("smallmines") / "assets" / "report.html.j2").read_text(encoding="utf-8")
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

    Returns:
        The path of the HTML file.

    Raises:
        SmallminesError: ``run_dir`` does not exist or holds nothing the report can show.

    .. versionadded:: 0.1
    """
    inputs = find_inputs(run_dir, data)
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
            change = _auto_change(inputs, Path(tmp))
            computed = change is not None
        map_section, map_payload = _map_section(inputs, change, view, max_overlay_px)
        change_section = _change_section(change, figs, cards, computed) if change is not None else None
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
             {"label": f"{len(inputs.maps)} maps" if inputs.maps else "maps", "on": bool(inputs.maps), "title": "maps/*/"},
             {"label": "change", "on": change_section is not None or any(c.kind == "dataset" for c in inputs.changes),
              "title": "change/"}]
    leaflet_js, leaflet_css = _leaflet_assets() if map_payload else ("", "")
    page = _template().render(
        title=title or _default_title(inputs, view),
        subtitle=str(inputs.run_dir.resolve()),
        chips=chips, cards=cards, sections=sections, notes=inputs.notes,
        colours={CLASS_KEYS[c]: CHANGE_COLOURS[c] for c in ChangeClass},
        leaflet_js=Markup(leaflet_js), leaflet_css=Markup(leaflet_css), leaflet_version=LEAFLET_VERSION,
        map_data=_safe_json(map_payload) if map_payload else None,
        version=__version__, generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        run_dir=str(inputs.run_dir.resolve()),
    )
    out = Path(out_html)
    with _atomic(out) as tmp_html:
        tmp_html.write_text(page, encoding="utf-8")
    logger.info("report written to %s (%.1f MB, %d sections%s)", out, out.stat().st_size / 1e6, len(sections),
                f", {len(figs.written)} figure files" if figs.written else "")
    return out


def _default_title(inputs: ReportInputs, view: DatasetView | None) -> str:
    if inputs.is_training_run:
        return f"smallmines run: {inputs.run_dir.name}"
    if inputs.maps or inputs.changes:
        return "Mining maps and change"
    return f"SmallMinesDS overview: {view.path.name if view else inputs.run_dir.name}"

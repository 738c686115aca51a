"""The report's sections on the dataset, training and evaluation, and the HTML pieces they are built of.

Each section function returns a :class:`Section` (or None when the folder holds nothing for it);
figures are rendered once to base64 PNG by :class:`_Figures`.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from smallmines.errors import SmallminesError
from smallmines.legend import CHANGE_COLOURS, CHANGE_NODATA, CLASS_KEYS, ChangeClass
from smallmines.report.figures import rgb_stretch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from smallmines.report.inputs import ReportInputs, _dig

logger = logging.getLogger(__name__)


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
            from smallmines.report.figures import save_figure

            self.written += save_figure(fig, self.folder / name)

    def img(self, fig: Figure, name: str, alt: str, caption: str = "") -> Markup:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight", facecolor="white")
        if self.folder is not None:
            from smallmines.report.figures import save_figure

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
    from smallmines.analysis.tiles import tile_growth
    from smallmines.data.dataset import PatchSource
    from smallmines.errors import ChangeError

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
    from smallmines.report.figures import (
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
        from smallmines.analysis.tiles import tiles_frame

        frame = tiles_frame(view.tiles)
        parts.append(Markup("<h3>Labelled mining, tile by tile</h3>"))
        parts.append(_note(
            f"{g['tiles_paired']:,} tiles exist in both {g['year_a']} and {g['year_b']} (paired by tile id); "
            f"{g['tiles_unpaired']:,} exist in one year only and are left out. "
            "Areas count pixels valid in both years."))
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


def _estimates_table(summary: Mapping[str, Any]) -> Markup:
    """Sample-based area estimates (``summary["area_estimates"]``) beside the pixel-counted areas."""
    est = summary["area_estimates"]
    rows = []
    for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED, ChangeClass.NO_MINING):
        e = est["classes"].get(CLASS_KEYS[c])
        if e is None:
            continue
        rows.append([Markup(_swatch(CHANGE_COLOURS[c])) + c.label, _ha(e["mapped_ha"]), _ha(e["estimated_ha"]),
                     "\u00b1 " + _ha(e["ci95_ha"]), _num(e.get("users_accuracy"), 2),
                     _num(e.get("producers_accuracy"), 2), _num(e.get("samples"), 0)])
    note = _note(f"Stratified estimates from {est['samples']} labelled points (Olofsson et al. 2014), 95 % "
                 f"confidence intervals; overall accuracy {_num(est.get('overall_accuracy'), 2)}. The pixel counts "
                 "carry the map's errors; the estimates correct them.")
    return note + _table(["class", "mapped (pixels)", "estimated", "95 % CI", "user's acc.", "producer's acc.",
                          "points"], rows)


# --------------------------------------------------------------------------------------------
# training and evaluation


def _training_section(inputs: ReportInputs, figs: _Figures) -> Section | None:
    from smallmines.report.figures import training_curves_figure

    if not (inputs.train_summary or inputs.metrics_csv or inputs.config):
        return None
    parts = []
    facts = []
    ts = inputs.train_summary
    model = _dig(inputs.config, "model", "name") or _dig(inputs.config, "model", "arch") or ts.get("model")
    for label, value in (("model", model), ("bands", _dig(inputs.config, "data", "bands")),
                         ("epochs", ts.get("epochs")), ("best epoch", ts.get("best_epoch")),
                         ("best score", ts.get("best_score")), ("parameters", ts.get("params")),
                         ("training time", f"{ts['seconds'] / 60:.1f} min"
                          if isinstance(ts.get("seconds"), (int, float)) else None),
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
    from smallmines.report.figures import confusion_figure

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
    from smallmines.report.figures import samples_figure

    if inputs.model is None:
        return None
    if inputs.data is None:
        return Section("samples", "Sample predictions",
                       _note("A model is here but no dataset: pass --data PATH to draw sample predictions."))
    try:
        import torch

        from smallmines.data.dataset import SmallMinesDS
        from smallmines.models.networks import mining_probability
        from smallmines.models.registry import load_model

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

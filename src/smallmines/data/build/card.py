"""The dataset card: ``README.md`` of a built dataset, regenerated from ``build.json`` on every build.

It says what is in the folder (patches per year and split, mining share, band order, CRS and tile
grid), where it came from (scene files and their ``fetch.json`` provenance, the label files and what
was repaired or skipped, the build options), leaves the licence and authorship fields for the
builder to fill, and says how to cite SmallMinesDS, whose layout and formats the dataset follows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smallmines.bands import BANDS, IMAGE_NODATA, MASK_NODATA
from smallmines.data.build.writer import SplitRow, write_text
from smallmines.data.layout import DATASET_DIR, SPLITS_DIR

CARD = "README.md"
CITATION = ("the SmallMinesDS dataset paper (IEEE Geoscience and Remote Sensing Letters, 2025; data CC-BY-SA-4.0); "
            "copy its reference from where you downloaded SmallMinesDS")
"""How to cite SmallMinesDS (the layout, formats and band order this dataset follows)."""
TO_FILL = "_to fill in_"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """Render a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _counts(rows: Mapping[str, SplitRow]) -> str:
    per_year: dict[int, Counter[str]] = {}
    shares: dict[int, list[float]] = {}
    for row in rows.values():
        per_year.setdefault(row.key.year, Counter())[row.split] += 1
        shares.setdefault(row.key.year, []).append(row.share)
    table = []
    for year in sorted(per_year):
        c = per_year[year]
        mined = sum(1 for s in shares[year] if s > 0)
        table.append([year, sum(c.values()), c["train"], c["test"], mined,
                      f"{sum(shares[year]) / len(shares[year]):.2f}"])
    return markdown_table(["year", "patches", "train", "test", "with mining", "mean mining share %"], table)


def _sources(years: Mapping[str, Any]) -> str:
    lines = []
    for year, info in sorted(years.items()):
        lines.append(f"### {year}\n")
        lines.append(f"- country code: `{info.get('country', '')}`")
        for source in info.get("scene", {}).get("sources", []):
            how = "warped" if source.get("warped") else "read on the grid"
            lines.append(f"- scene file `{Path(source['path']).name}` ({source['kind']}: "
                         f"{', '.join(b or '-' for b in source['bands'])}; {how})")
        for prov in info.get("provenance", []):
            record = prov.get("record", {})
            keys = ", ".join(f"{k}: {record[k]}" for k in ("catalogue", "collections", "dates") if k in record)
            lines.append(f"- provenance `{Path(prov['path']).name}`" + (f" ({keys})" if keys else ""))
        if not info.get("provenance"):
            lines.append(f"- provenance: {TO_FILL} (no `fetch.json` beside the scene: say where the imagery came "
                         "from, dates and processing)")
        for label in info.get("labels", []):
            skipped = {k: len(label[k]) for k in ("empty", "not_polygon", "outside") if label.get(k)}
            lines.append(f"- labels `{label['source']}`: {label['features']} features, {label['mining']} mining, "
                         f"{label['unknown']} unknown, {len(label.get('repaired', []))} repaired"
                         + (f", skipped {skipped}" if skipped else ""))
        options = info.get("options", {})
        lines.append("- options: " + ", ".join(f"{k}={v}" for k, v in options.items() if v not in (None, {})))
        lines.append(f"- tiles skipped: {info.get('skipped', {})}\n")
    return "\n".join(lines)


def render_card(record: Mapping[str, Any], rows: Mapping[str, SplitRow]) -> str:
    """Render the card's Markdown from the build record and the split rows of every year."""
    grid = record["grid"]
    bands = record.get("bands", [])
    band_rows = [[i + 1, b.name, b.sensor, b.unit, b.description]
                 for i, b in enumerate(b for b in BANDS if b.name in bands)]
    countries = sorted({r.key.country for r in rows.values()})
    years = sorted({r.key.year for r in rows.values()})
    return f"""# SmallMinesDS-format dataset ({', '.join(countries)}; {', '.join(str(y) for y in years)})

Built with smallmines {record.get('smallmines', '')} (`smallmines build`) in the layout and formats of
SmallMinesDS, so every SmallMinesDS reader (smallmines, the authors' scripts, torchgeo-style loaders)
reads it unchanged.

## Contents

{_counts(rows)}

- `{DATASET_DIR}/{{YEAR}}/IMAGE/IMG_{{CC}}_{{TTTT}}_{{YEAR}}.tif`: {len(bands)} x {grid['tile']} x {grid['tile']}
  float32, nodata {IMAGE_NODATA:g}, band descriptions = band names.
- `{DATASET_DIR}/{{YEAR}}/MASK/MASK_{{CC}}_{{TTTT}}_{{YEAR}}.tif`: uint8, 1 mining, 0 not mining,
  {MASK_NODATA} where the imagery is nodata or the label is unknown (ignored by losses and metrics).
- `{SPLITS_DIR}/train_test_splits_{{YEAR}}.csv`: `patch_name,class_percentage,bin,split`; stratified on
  mining share, a tile (site) is in the same split in every year.
- `tiles.gpkg` (layer `tiles`): footprints with `id`, `site`, `tile`, `year`, `country`, `split`,
  `mining_share`, `nodata_share`.
- `build.json`: the tile grid, inputs and options of every year (read by later builds).

A tile number names the same place in every year: `IMG_{{CC}}_0042_2016.tif` and `IMG_{{CC}}_0042_2022.tif`
cover the same pixels.

## Bands

{markdown_table(["#", "band", "sensor", "unit", "description"], band_rows)}

Sentinel-2 L2A reflectance x 10000, Sentinel-1 backscatter in dB, elevation in metres.

## Grid

- CRS: {grid['crs']}; pixel {grid['res']:g} CRS units; tiles of {grid['tile']} px, stride {grid['stride']} px
- tile (row 0, column 0) top-left corner: ({grid['x0']}, {grid['y0']}); {grid['rows']} x {grid['columns']}
  tiles; tile number = row x {grid['columns']} + column + 1

## Labels

A pixel is mining when its centre lies inside a mining polygon; a pixel touched by an unknown area is
{MASK_NODATA}. Invalid polygons were repaired (`make_valid`); empty features and features outside the
imagery were skipped (listed in `build.json`).

## Sources

{_sources(record.get('years', {}))}
## Licence and authors

- licence of the imagery-derived patches: {TO_FILL} (Copernicus Sentinel data are free and open; say so)
- licence of the labels: {TO_FILL}
- authors and contact: {TO_FILL}
- how the polygons were digitised (imagery, dates, people, checks): {TO_FILL}

## Citation

This dataset follows the layout, formats and band order of SmallMinesDS; alongside this dataset, cite
{CITATION}.

- citation of this dataset: {TO_FILL}
"""


def write_card(out: Path, record: Mapping[str, Any], rows: Mapping[str, SplitRow]) -> Path:
    """Write ``out/README.md`` (atomically) and return its path."""
    path = out / CARD
    write_text(path, render_card(record, rows))
    return path

"""Regenerate ``src/smallmines/report/assets/natural_earth/countries.geojson`` (the report's context layer).

Source: Natural Earth 1:110m Admin 0 countries (public domain, https://www.naturalearthdata.com),
as the ``naturalearth_lowres`` copy that GeoPandas published and pyogrio ships among its test
fixtures (``pyogrio/tests/fixtures/naturalearth_lowres/naturalearth_lowres.shp``), so it can be
rebuilt offline from an installed pyogrio. Any Natural Earth ``ne_110m_admin_0_countries`` file
works as well (its ``NAME``/``ISO_A3``/``CONTINENT`` fields are read in either case)::

    python tools/make_countries.py                      # from the installed pyogrio fixture
    python tools/make_countries.py ne_110m_admin_0_countries.shp

The outlines are simplified (0.03 degrees, topology kept) and coordinates rounded to 0.01 degrees
(about 1 km, finer than the 1:110m source): the layer only places an area in its country and
region, it is no boundary of record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "smallmines" / "report" / "assets" / "natural_earth" / \
    "countries.geojson"
TOLERANCE = 0.03
DECIMALS = 2


def _source() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    import pyogrio

    path = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    if not path.is_file():
        sys.exit(f"{path}: not found; pass a Natural Earth ne_110m_admin_0_countries file as the argument")
    return path


def main() -> None:
    """Read, simplify, round and write the countries as compact GeoJSON (atomically)."""
    import geopandas as gpd
    import shapely
    from shapely.geometry import mapping

    source = _source()
    frame = gpd.read_file(source).to_crs("EPSG:4326")
    fields = {c.lower(): c for c in frame.columns}
    features = []
    for _, row in frame.iterrows():
        geom = row.geometry.simplify(TOLERANCE, preserve_topology=True)
        geom = shapely.transform(geom, lambda xy: np.round(xy, DECIMALS))
        if geom.is_empty:
            continue
        features.append({"type": "Feature", "geometry": mapping(shapely.make_valid(geom)),
                         "properties": {key: row[fields[key]] for key in ("name", "iso_a3", "continent")
                                        if key in fields}})
    features.sort(key=lambda f: str(f["properties"].get("name")))
    collection = {"type": "FeatureCollection",
                  "source": "Natural Earth 1:110m Admin 0 countries (public domain), via naturalearth_lowres",
                  "features": features}
    text = json.dumps(collection, separators=(",", ":"), ensure_ascii=False)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"{OUT}: {len(features)} countries, {len(text) / 1000:.0f} KB from {source}")


if __name__ == "__main__":
    main()

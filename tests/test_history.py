"""Multi-year mining history: flicker filter, first/last year rasters, per-year table, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from smallmines.analysis.history import YEAR_NODATA, confirm_runs, first_last_year, history_table, map_history
from smallmines.errors import ChangeError

CRS = "EPSG:32630"


def test_confirm_drops_short_runs_inside_the_record_only():
    series = np.array([[1, 0, 1, 1, 0, 1],   # one-year runs at both ends kept, unconfirmed
                       [0, 1, 0, 1, 1, 0],   # one-year flicker in 2nd map dropped
                       [1, 1, 1, 0, 0, 1],
                       [0, 0, 0, 0, 1, 1],   # two years at the end: confirmed
                       [0, 0, 1, 0, 1, 0]],  # two flickers dropped
                      bool).T
    kept, unconfirmed = confirm_runs(series, 2)
    assert kept.T.astype(int).tolist() == [[1, 0, 1, 1, 0, 1],
                                           [0, 0, 0, 1, 1, 0],
                                           [1, 1, 1, 0, 0, 1],
                                           [0, 0, 0, 0, 1, 1],
                                           [0, 0, 0, 0, 0, 0]]
    assert unconfirmed[0].tolist() == [True, False, False, False, False]
    assert unconfirmed[-1].tolist() == [True, False, True, False, False]
    assert unconfirmed[1:-1].sum() == 0
    same, none = confirm_runs(series, 1)
    assert (same == series).all() and not none.any()
    kept3, _ = confirm_runs(series, 3)
    assert kept3[:, 1].tolist() == [False] * 6 and kept3[:, 2].tolist() == series[:, 2].tolist()
    with pytest.raises(ChangeError, match="confirm 0"):
        confirm_runs(series, 0)


def test_confirm_in_chunks_equals_at_once(monkeypatch):
    import smallmines.analysis.history as history

    raw = np.random.default_rng(1).random((6, 30, 40)) < 0.4
    whole = confirm_runs(raw, 3)
    monkeypatch.setattr(history, "_CHUNK", 7)
    chunked = confirm_runs(raw, 3)
    assert all((a == b).all() for a, b in zip(whole, chunked, strict=True))
    assert whole[0].sum() < raw.sum()


def test_first_and_last_year_never_and_nodata():
    mining = np.array([[[1, 0, 0]], [[1, 1, 0]], [[0, 1, 0]]], bool)  # T=3, 1 x 3 pixels
    valid = np.array([[True, True, False]])
    first, last = first_last_year(mining, [2016, 2019, 2022], valid)
    assert first.dtype == np.uint16
    assert first.tolist() == [[2016, 2019, YEAR_NODATA]] and last.tolist() == [[2019, 2022, YEAR_NODATA]]
    first, _ = first_last_year(mining, [2016, 2019, 2022], np.ones((1, 3), bool))
    assert first[0, 2] == 0  # never mined


def test_history_table_balances_new_resumed_and_ceased():
    rng = np.random.default_rng(0)
    raw = rng.random((5, 40, 40)) < 0.3
    kept, unconfirmed = confirm_runs(raw, 2)
    table = history_table(raw, kept, unconfirmed, [2016, 2017, 2018, 2019, 2020], 100.0)  # 0.01 ha a pixel
    assert table.loc[0, "mined_ha"] == pytest.approx(kept[0].sum() / 100)
    assert np.isnan(table.loc[0, "new_ha"])
    balance = table["mined_ha"].shift() + table["new_ha"] + table["resumed_ha"] - table["ceased_ha"]
    np.testing.assert_allclose(balance[1:], table["mined_ha"][1:])
    assert (table["flicker_ha"] >= 0).all() and table["flicker_ha"].sum() > 0
    assert table["ever_mined_ha"].is_monotonic_increasing
    assert table["ever_mined_ha"].iloc[-1] == pytest.approx(kept.any(axis=0).sum() / 100)
    assert table.loc[2, "growth_pct"] == pytest.approx(100 * table.loc[2, "net_ha"] / table.loc[1, "mined_ha"])


# ------------------------------------------------------------------------------------------------
# files


def _write(path: Path, data: np.ndarray, transform=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype="uint8", crs=CRS, transform=transform or from_origin(600_000, 700_000, 10, 10),
                       nodata=255) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture
def four_maps(tmp_path: Path) -> list[Path]:
    """Four 50 x 50 maps (10 m, 0.01 ha a pixel) of 2016, 2018, 2020, 2022.

    Block A (rows 0-9, cols 0-9, 100 px): mined in all years.
    Block B (rows 20-24, cols 0-9, 50 px): mined in 2018 only: a flicker.
    Block C (rows 30-39, cols 0-4, 50 px): mined 2018-2020 (new in 2018), stopped in 2022.
    Block D (rows 40-44, cols 20-29, 50 px): mined in 2022 only: new, unconfirmed.
    Rows 45-49 are nodata in 2020.
    """
    base = np.zeros((50, 50), np.uint8)
    maps = {y: base.copy() for y in (2016, 2018, 2020, 2022)}
    for y in maps:
        maps[y][0:10, 0:10] = 1
    maps[2018][20:25, 0:10] = 1
    maps[2018][30:40, 0:5] = 1
    maps[2020][30:40, 0:5] = 1
    maps[2022][40:45, 20:30] = 1
    maps[2020][45:, :] = 255
    return [_write(tmp_path / f"mines_{y}.tif", m) for y, m in maps.items()]


def test_history_of_four_maps_writes_rasters_table_and_summary(four_maps, tmp_path):
    shuffled = [four_maps[2], four_maps[0], four_maps[3], four_maps[1]]  # order does not matter
    res = map_history(shuffled, tmp_path / "h", figures=True)
    assert res.years == [2016, 2018, 2020, 2022] and res.confirm == 2
    t = pd.read_csv(tmp_path / "h" / "history.csv").set_index("year")
    assert t["mined_ha"].tolist() == pytest.approx([1.0, 1.5, 1.5, 1.5])
    assert t["mapped_ha"].tolist() == pytest.approx([1.0, 2.0, 1.5, 1.5])
    assert t.loc[2018, "flicker_ha"] == pytest.approx(0.5)
    assert t.loc[2018, "new_ha"] == pytest.approx(0.5) and t.loc[2022, "new_ha"] == pytest.approx(0.5)
    assert t.loc[2022, "ceased_ha"] == pytest.approx(0.5) and t.loc[2022, "unconfirmed_ha"] == pytest.approx(0.5)
    assert t.loc[2016, "unconfirmed_ha"] == 0
    assert np.isnan(t.loc[2016, "new_ha"])
    with rasterio.open(tmp_path / "h" / "first_year.tif") as src:
        first = src.read(1)
        assert src.dtypes[0] == "uint16" and src.nodata == YEAR_NODATA and src.crs.to_epsg() == 32630
        assert src.tags()["years"] == "2016,2018,2020,2022"
    with rasterio.open(tmp_path / "h" / "last_year.tif") as src:
        last = src.read(1)
    assert first.shape == (50, 50)
    assert (first[0:10, 0:10] == 2016).all() and (last[0:10, 0:10] == 2022).all()
    assert (first[20:25, 0:10] == 0).all()  # the flicker never counted
    assert (first[30:40, 0:5] == 2018).all() and (last[30:40, 0:5] == 2020).all()
    assert (first[45:, :] == YEAR_NODATA).all()  # nodata in one map: out of the history
    assert (first[40:45, 20:30] == 2022).all() and (last[40:45, 20:30] == 2022).all()
    summary = json.loads((tmp_path / "h" / "summary.json").read_text())
    assert summary["year_a"] == 2016 and summary["year_b"] == 2022
    assert summary["history"]["years"] == [2016, 2018, 2020, 2022]
    assert summary["history"]["flicker_ha"] == pytest.approx(0.5)
    assert (tmp_path / "h" / "figures" / "history.png").is_file()
    # change.tif is the change between the first and the last map, as mapped
    with rasterio.open(tmp_path / "h" / "change.tif") as src:
        change = src.read(1)
    assert (change[40:45, 20:30] == 1).all() and (change[0:10, 0:10] == 2).all()


def test_history_needs_years_once_each(four_maps, tmp_path):
    with pytest.raises(ChangeError, match="more than one map for 2016"):
        map_history(four_maps[:3], tmp_path / "x", years=[2016, 2016, 2020], figures=False)
    with pytest.raises(ChangeError, match="3 years for 4 maps"):
        map_history(four_maps, tmp_path / "x", years=[2016, 2018, 2020], figures=False)
    plain = _write(tmp_path / "plain.tif", np.zeros((50, 50), np.uint8))
    with pytest.raises(ChangeError, match="no year found"):
        map_history([*four_maps[:2], plain], tmp_path / "x", figures=False)
    res = map_history([*four_maps[:2], plain], tmp_path / "y", years=[2016, 2018, 2021], confirm=1, figures=False)
    assert res.years == [2016, 2018, 2021] and res.table["flicker_ha"].sum() == 0


def test_cli_history_and_two_maps_unchanged(four_maps, tmp_path):
    from smallmines.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["change", *map(str, four_maps), "-o", str(tmp_path / "cli"), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "2018" in res.output and "flickers" in res.output and (tmp_path / "cli" / "history.csv").is_file()
    res = runner.invoke(app, ["change", *map(str, four_maps), "-o", str(tmp_path / "cli1"), "--confirm", "1",
                              "--no-figures"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "cli1" / "history.csv")["flicker_ha"].sum() == 0
    res = runner.invoke(app, ["change", *map(str, four_maps), "--year-a", "2016", "-o", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "--years" in res.output
    res = runner.invoke(app, ["change", str(four_maps[0]), str(four_maps[3]), "-o", str(tmp_path / "two"),
                              "--no-figures"])
    assert res.exit_code == 0 and not (tmp_path / "two" / "history.csv").exists()


def test_report_shows_the_history(four_maps, tmp_path):
    from smallmines.report.build import _change_section
    from smallmines.report.inputs import _change_folder
    from smallmines.report.sections import _Figures

    map_history(four_maps, tmp_path / "h", figures=False)
    section = _change_section(_change_folder(tmp_path / "h", []), _Figures(None), [], False)
    assert "<h3>History</h3>" in str(section.html) and "each of 4 maps" in str(section.html)
    assert "mining in every map" not in str(section.html)
    map_history(four_maps, tmp_path / "h", figures=True)
    assert (tmp_path / "h" / "figures" / "history_maps.png").is_file()
    section = _change_section(_change_folder(tmp_path / "h", []), _Figures(None), [], False)
    assert "mining in every map" in str(section.html)

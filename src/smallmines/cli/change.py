"""``smallmines change``: two mine maps, a history of many, or a dataset tile by tile; ``smallmines sample``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from smallmines.cli._common import OVERWRITE_HELP, api_errors, console, out, progress_bar, setup_logging


def _growth_line(summary: dict[str, Any]) -> str:
    rate = summary.get("annual_growth_rate_pct")
    pct = summary.get("net_growth_pct")
    return (f"mining {summary['year_a']}: [bold]{summary['mining_a_ha']:,.1f} ha[/]  ->  {summary['year_b']}: "
            f"[bold]{summary['mining_b_ha']:,.1f} ha[/]   net [bold]{summary['net_growth_ha']:+,.1f} ha[/]"
            + (f" ({pct:+.1f} %)" if pct is not None else "")
            + (f", [bold]{rate:+.1f} %[/] per year" if rate is not None else ", annual rate undefined (no mining "
               "in the first year)"))


def _print_areas(table: Any) -> None:
    import pandas as pd
    from rich.table import Table

    from smallmines.legend import ChangeClass
    from smallmines.report.figures import CHANGE_COLOURS

    view = Table(show_edge=False, header_style="bold")
    view.add_column("class")
    view.add_column("area (ha)", justify="right")
    view.add_column("% of valid", justify="right")
    for _, row in table.iterrows():
        code = row["code"]
        swatch = "  " if pd.isna(code) else f"[{CHANGE_COLOURS[ChangeClass(int(code))]}]\u25a0[/] "
        view.add_row(swatch + str(row["class"]), f"{row['area_ha']:,.1f}", f"{row['pct_valid']:.2f}")
    out.print(view)


def _print_estimates(table: Any, summary: dict[str, Any]) -> None:
    """Sample-based area estimates beside the pixel counts (Olofsson et al., 2014)."""
    from rich.table import Table

    title = f"area estimates from {summary['samples']} labelled points (95 % intervals)"
    view = Table(show_edge=False, header_style="bold", title=title, title_justify="left")
    for name in ("class", "mapped (ha)", "estimated (ha)", "95 % CI (ha)", "user's acc.", "producer's acc."):
        view.add_column(name, justify="left" if name == "class" else "right")
    for _, row in table.iterrows():
        view.add_row(str(row["class"]), f"{row['mapped_ha']:,.1f}", f"{row['estimated_ha']:,.1f}",
                     f"\u00b1 {row['ci95_ha']:,.1f}", _acc(row["users_accuracy"], row["users_ci95"]),
                     _acc(row["producers_accuracy"], row["producers_ci95"]))
    out.print(view)
    out.print(f"overall accuracy {summary['overall_accuracy']:.2f} \u00b1 {summary['overall_accuracy_ci95'] or 0:.2f}")


def _acc(value: float, ci: float) -> str:
    import math

    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2f}" + ("" if ci is None or math.isnan(ci) else f" \u00b1 {ci:.2f}")


def _print_history(result: Any) -> None:
    from rich.table import Table

    view = Table(show_edge=False, header_style="bold")
    for name in ("year", "mined (ha)", "new (ha)", "resumed (ha)", "ceased (ha)", "net (ha)", "flickers (ha)"):
        view.add_column(name, justify="right")

    def fmt(value: Any, signed: bool = False) -> str:
        import math

        return "" if value is None or math.isnan(value) else (f"{value:+,.1f}" if signed else f"{value:,.1f}")

    for row in result.table.itertuples():
        view.add_row(str(row.year), fmt(row.mined_ha), fmt(row.new_ha), fmt(row.resumed_ha), fmt(row.ceased_ha),
                     fmt(row.net_ha, True), fmt(row.flicker_ha))
    out.print(view)
    s = result.summary
    out.print(f"mining counts when seen in {result.confirm} consecutive maps: {s['flicker_ha']:,.1f} ha of flickers "
              f"dropped; unconfirmed (runs at the ends of the record): {s['unconfirmed_first_ha']:,.1f} ha in "
              f"{result.years[0]}, {s['unconfirmed_last_ha']:,.1f} ha in {result.years[-1]}; ever mined "
              f"{s['ever_mined_ha']:,.1f} ha")


def _parse_years(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise typer.BadParameter(f"--years {text!r}: give years separated by commas, e.g. 2016,2018,2020") from None


def register(app: typer.Typer) -> None:
    """Add the ``change`` and ``sample`` commands to the main app."""

    @app.command("change")
    def change(
        maps: Annotated[list[Path] | None, typer.Argument(
            help="Two or more mine maps (`smallmines map` folders, mines.tif or any 0/1 rasters): two give the "
                 "change between them; more give the multi-year history too.", show_default=False)] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("change"),
        dataset: Annotated[Path | None, typer.Option("--dataset", help="Compare the two years of a SmallMinesDS "
                                                     "(zip, folder or .smpack) tile by tile instead of two maps.",
                                                     exists=True)] = None,
        year_a: Annotated[int | None, typer.Option(help="First year (default: the map's summary.json or name, "
                                                        "else 2016; for --dataset the earliest year).")] = None,
        year_b: Annotated[int | None, typer.Option(help="Second year (default likewise, else 2022).")] = None,
        years: Annotated[str | None, typer.Option(help="Years of all maps, in order, comma-separated (default: "
                                                       "each map's summary.json or name).")] = None,
        confirm: Annotated[int, typer.Option(help="With three or more maps: consecutive maps a run of mining "
                                                  "needs to count (one-off flickers between maps without mining are "
                                                  "dropped; 1 keeps the maps as they are).", min=1)] = 2,
        zones: Annotated[Path | None, typer.Option(help="Polygons for per-zone statistics (GeoPackage, GeoJSON, "
                                                   "shapefile).", exists=True, dir_okay=False)] = None,
        zone_field: Annotated[str | None, typer.Option(help="Attribute that names each zone (default: name).")] = None,
        min_area: Annotated[float, typer.Option(help="Smallest change polygon kept in change.gpkg, in hectares.",
                                                min=0.0)] = 0.0,
        reference: Annotated[Path | None, typer.Option(help="A labelled sample of this change map (sample.gpkg or "
                                                       "sample.csv from `smallmines sample`, reference filled in): "
                                                       "adds area estimates with 95 % intervals. Without maps, "
                                                       "assesses the change folder OUTPUT as it is.",
                                                       dir_okay=False)] = None,
        figures: Annotated[bool, typer.Option(help="Also write PNG/PDF figures under OUTPUT/figures.")] = True,
        overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Map where mining appeared, persisted and ceased between two years, with areas and growth.

        Two maps give change.tif (0 no mining, 1 new, 2 persistent, 3 ceased), change.gpkg, areas.csv
        and summary.json (and zones.csv/zones.gpkg with --zones). Three or more give the change between
        the first and the last, plus first_year.tif, last_year.tif and history.csv. --reference adds
        accuracy.json and area_estimates.csv. --dataset gives tiles.csv, tiles.gpkg, areas.csv and
        summary.json for the labelled masks.
        """
        setup_logging(verbose)
        logging.getLogger("pyogrio").setLevel(logging.DEBUG if verbose else logging.WARNING)
        maps = list(maps or [])
        with api_errors():
            if dataset is not None:
                if maps:
                    raise typer.BadParameter("give either maps or --dataset, not both")
                from smallmines.analysis.tiles import dataset_change

                with progress_bar("reading tile pairs") as update:
                    result = dataset_change(dataset, output, year_a, year_b, figures=figures, progress=update,
                                            overwrite=overwrite)
                s = result.summary
                out.print(f"[bold]{s['tiles_paired']:,}[/] tiles in both {s['year_a']} and {s['year_b']}"
                          + (f" ({s['tiles_unpaired']:,} in one year only, left out)" if s["tiles_unpaired"] else ""))
                counts = ", ".join(f"{k} {v}" for k, v in s["tiles_by_status"].items() if v)
                out.print(f"tiles: {counts}")
                out.print(_growth_line(s))
                out.print(f"written to {result.out_dir}")
                return
            if not maps and reference is not None:
                from smallmines.analysis.sampling import assess_change

                assessed = assess_change(output, reference, overwrite=overwrite)
                _print_estimates(assessed.table, assessed.summary)
                console.print(f"written to {assessed.accuracy_json} and {assessed.estimates_csv}")
                return
            if len(maps) < 2:
                raise typer.BadParameter("give two maps (MAP_A MAP_B), three or more for a history, or --dataset PATH")
            history, dated = None, _parse_years(years)
            if dated is not None and len(dated) != len(maps):
                raise typer.BadParameter(f"--years names {len(dated)} years for {len(maps)} maps; give one per map")
            if len(maps) == 2:
                from smallmines.analysis.change import compare_maps

                year_a, year_b = dated or (year_a, year_b)
                result = compare_maps(maps[0], maps[1], output, year_a, year_b,
                                      zones=zones, zone_field=zone_field, min_area_ha=min_area, figures=figures,
                                      reference=reference, overwrite=overwrite)
            else:
                if year_a is not None or year_b is not None:
                    raise typer.BadParameter("with more than two maps give --years Y1,Y2,... instead of --year-a/-b")
                from smallmines.analysis.history import map_history

                with progress_bar("aligning maps") as update:
                    history = map_history(maps, output, dated, confirm, zones=zones,
                                          zone_field=zone_field, min_area_ha=min_area, figures=figures,
                                          reference=reference, progress=update, overwrite=overwrite)
                result = history.change
            _print_areas(result.table)
            out.print(_growth_line(result.summary))
            if history is not None:
                _print_history(history)
            if result.accuracy is not None:
                _print_estimates(result.accuracy.table, result.accuracy.summary)
            if result.zones is not None:
                partial = result.summary["zones"]["partial"] + result.summary["zones"]["outside"]
                out.print(f"{len(result.zones)} zones written to {result.zones_csv}"
                          + (f"; [yellow]{len(partial)} only partly covered or outside[/]: {', '.join(partial[:6])}"
                             if partial else ""))
            console.print(f"written to {result.out_dir}")

    @app.command("sample")
    def sample(
        change_dir: Annotated[Path, typer.Argument(help="A `smallmines change` folder (or its change.tif).")],
        n: Annotated[int, typer.Option("-n", "--n", help="Number of points.", min=1)] = 500,
        min_per_class: Annotated[int, typer.Option(help="Smallest sample of a mapped class (new, persistent, "
                                                        "ceased); the rest is proportional to mapped area.",
                                                   min=0)] = 50,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: CHANGE_DIR).")
                          ] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP + " A sample may hold labels.")
                             ] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Draw a stratified random sample of points from a change map, for a person to label.

        Writes sample.gpkg, sample.csv (id, x, y, lon, lat, stratum, map_class, reference) and
        sample.json (the design). Fill in the reference column (0 no mining, 1 new, 2 persistent,
        3 ceased, or the names) and give the file to `smallmines change ... --reference`.
        """
        from rich.table import Table

        setup_logging(verbose)
        logging.getLogger("pyogrio").setLevel(logging.DEBUG if verbose else logging.WARNING)
        with api_errors():
            from smallmines.analysis.sampling import draw_sample

            result = draw_sample(change_dir, n, seed=seed, min_per_class=min_per_class, out_dir=output,
                                 overwrite=overwrite)
        view = Table(show_edge=False, header_style="bold")
        for name in ("stratum", "mapped pixels", "weight", "points"):
            view.add_column(name, justify="left" if name == "stratum" else "right")
        for _, row in result.allocation.iterrows():
            view.add_row(f"{row['code']} {row['class']}", f"{row['pixels']:,}", f"{row['weight']:.4f}",
                         str(row["samples"]))
        out.print(view)
        console.print(f"{len(result.points)} points written to {result.gpkg} and {result.csv}; fill in the "
                      "reference column, then run `smallmines change ... --reference FILE`")

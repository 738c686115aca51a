"""``smallmines data ...`` commands, run in-process with typer's CliRunner."""

import json

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from smallmines.cli.data import app
from smallmines.data.dataset import PatchSource, SmallMinesDS, resolve_split
from smallmines.data.layout import discover
from smallmines.data.pack import PackedSource
from smallmines.data.stats import BandStats

runner = CliRunner()


def invoke(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result


def test_main_app_registers_the_data_group(synth_root):
    from smallmines.cli import app as main_app

    result = runner.invoke(main_app, ["data", "--help"])
    assert result.exit_code == 0
    for command in ("synth", "check", "stats", "split", "pack", "preview"):
        assert command in result.output


def test_synth_folder_zip_and_no_country(tmp_path):
    result = invoke("synth", tmp_path / "a", "--tiles", 2, "--seed", 1)
    layout = discover(tmp_path / "a")
    assert len(layout.patches) == 4 and sorted(layout.split_files) == [2016, 2022]
    assert "2016" in result.output
    invoke("synth", tmp_path / "z", "--tiles", 2, "--zip")
    assert discover(tmp_path / "z" / "SmallMinesDS.zip").is_zip
    invoke("synth", tmp_path / "n", "--tiles", 2, "--no-country")
    assert discover(tmp_path / "n").patches[0].id == "0001_2016"


def test_synth_with_scene(tmp_path):
    result = invoke("synth", tmp_path / "s", "--tiles", 1, "--scene-size", 256)
    assert "scene 2016" in result.output
    assert any((tmp_path / "s" / "scenes").rglob("*.tif"))


def test_synth_rejects_bad_options(tmp_path):
    invoke("synth", tmp_path / "x", "--tiles", 0, code=2)


def test_stats_train_only(synth_root, tmp_path):
    result = invoke("stats", synth_root, "--bands", "official6,ndvi", "-o", tmp_path / "stats.json")
    saved = json.loads((tmp_path / "stats.json").read_text())
    expected = SmallMinesDS(synth_root, split="train", bands="official6,ndvi").compute_stats()
    assert saved["channels"] == list(expected.channels) == ["blue", "green", "red", "rededge4", "swir1", "swir2",
                                                            "ndvi"]
    assert BandStats.load(tmp_path / "stats.json").mean == pytest.approx(expected.mean)
    assert "ndvi" in result.output
    invoke("stats", synth_root, "--split", "test", "-o", tmp_path / "t.json")
    assert BandStats.load(tmp_path / "t.json").mean != BandStats.load(tmp_path / "stats.json").mean


def test_stats_errors_are_one_line(synth_root, tmp_path):
    result = invoke("stats", synth_root, "--bands", "B13", "-o", tmp_path / "s.json", code=1)
    assert "error:" in result.output and "B13" in result.output
    invoke("stats", tmp_path / "missing", "-o", tmp_path / "s.json", code=2)


@pytest.mark.parametrize(("method", "extra"), [("official", []), ("random", ["--test-fraction", "0.25"]),
                                               ("year", ["--train-years", "2016", "--test-years", "2022"]),
                                               ("spatial", ["--block-size", "2500"])])
def test_split_is_reproducible(synth_root, tmp_path, method, extra):
    first = invoke("split", synth_root, "--method", method, "--seed", 3, *extra, "-o", tmp_path / "a.csv")
    invoke("split", synth_root, "--method", method, "--seed", 3, *extra, "-o", tmp_path / "b.csv")
    text = (tmp_path / "a.csv").read_text()
    assert text == (tmp_path / "b.csv").read_text()
    assert text.splitlines()[0] == "patch_name,class_percentage,bin,split"
    source = PatchSource(synth_root)
    split = resolve_split(source, tmp_path / "a.csv")
    assert "val" in split.values() and "test" in split.values()
    assert "2016" in first.output and "train" in first.output
    if method != "official":
        invoke("split", synth_root, "--method", method, "--seed", 4, *extra, "-o", tmp_path / "c.csv")
        assert (tmp_path / "c.csv").read_text() != text


def test_split_rejects_options_the_method_does_not_take(synth_root, tmp_path):
    result = invoke("split", synth_root, "--method", "random", "--block-size", 100, "-o", tmp_path / "x.csv", code=1)
    assert "takes no option block_size" in result.output
    invoke("split", synth_root, "--method", "year", "--train-years", "20x6", "-o", tmp_path / "x.csv",
           code=2)
    assert not (tmp_path / "x.csv").exists()


def test_pack_command(broken, tmp_path):
    bad = broken.bad_band_count(0)
    result = invoke("pack", broken.root, "-o", tmp_path / "d.smpack")
    pack = PackedSource(tmp_path / "d.smpack")
    assert len(pack) == len(broken.layout.patches) - 1 and pack.header.official
    assert "official split stored" in result.output
    assert "skipped" in result.output and bad in result.output


def test_preview_png(synth_root, tmp_path):
    invoke("preview", synth_root, "-o", tmp_path / "p.png", "--n", 3, "--split", "test", "--dpi", 50)
    image = imread(tmp_path / "p.png")
    height, width = image.shape[:2]
    assert (height, width) == (round(50 * (3 * 2.3 + 0.7)), round(50 * 4 * 2.3))  # 3 rows of 4 panels


def test_preview_api_picks_mining_and_draws_nodata(synth_root):
    from smallmines.data.preview import choose_patches, preview_grid

    source = PatchSource(synth_root)
    nodata_id = next(pid for i, pid in enumerate(source.ids) if (source.read(i)[1] == 255).any())
    fig = preview_grid(source, ids=[nodata_id, source.ids[0]])
    assert len(fig.axes) == 8
    assert nodata_id in fig.axes[0].get_ylabel() and "mining" in fig.axes[0].get_ylabel()
    assert fig.axes[3].collections, "nodata is hatched on the mask panel"
    chosen = choose_patches(source.shares, source.ids, 6, seed=0)
    assert len(chosen) == 6 and chosen == choose_patches(source.shares, source.ids, 6, seed=0)
    assert sum(source.shares[p] > 0 for p in chosen) >= 4
    assert [source.shares[p] for p in chosen] == sorted((source.shares[p] for p in chosen), reverse=True)


def test_preview_errors(synth_root, tmp_path):
    result = invoke("preview", synth_root, "-o", tmp_path / "p.png", "--split", "holdout", code=1)
    assert "holdout" in result.output

"""Bad input as a hostile tester gives it: every case one clear line, a non-zero exit, nothing written.

A growing corpus (issue 13). Cases run in-process through typer's CliRunner and share fixtures, so
the corpus stays cheap as it grows. Each case asserts: exit code 1, an ``error:`` line naming the
value, no Python traceback and, where the command would write, no output left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _scene_data import card_for, save_tiny, scene_array, write_stack
from typer.testing import CliRunner

from smallmines.bands import BAND_NAMES
from smallmines.cli import app
from smallmines.legend import CHANGE_COLOURS, MINING_COLOUR, hex_to_rgba

runner = CliRunner()


def _refused(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    text = result.output
    assert result.exit_code == 1, f"{args}: exit {result.exit_code}\n{text}"
    assert "Traceback" not in text and result.exception is None or isinstance(result.exception, SystemExit), text
    assert "error:" in text, text
    for needle in needles:
        assert needle in text, f"{args}: {needle!r} not in\n{text}"
    return text


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hardening")
    image = scene_array(96, 128, seed=3)
    return {"root": root, "stacked": write_stack(root / "scene.tif", image),
            "model": save_tiny(root / "conv.pt", card_for(image, (*BAND_NAMES, "ndvi")))}


# ---------------------------------------------------------------- configuration values (train)
BAD_SETTINGS = [
    ("train.epochs=abc", "must be an integer"),
    ("train.epochs=0", "at least 1"),
    ("train.epochs=true", "must be an integer"),
    ("train.batch_size=-4", "at least 1"),
    ("train.eval_batch_size=abc", "must be an integer"),
    ("train.patience=-3", "at least 1"),
    ("train.seed=abc", "must be an integer"),
    ("train.gradient_clip=-1", "greater than 0"),
    ("train.accumulate=0", "at least 1"),
    ("train.log_every_n_steps=0", "at least 1"),
    ("train.num_sanity_val_steps=-2", "at least 0"),
    ("train.devices=-1", "train.devices"),
    ("train.devices=gpu0", "train.devices"),
    ("train.compile=maybe", "torch.compile mode"),
    ("train.precision=fp8", "train.precision"),
    ("train.augment=mixup", "train.augment"),
    ("train.threshold=1.5", "train.threshold"),
    ("train.threshold=often", "train.threshold"),
    ("train.max_time=soon", "train.max_time"),
    ("train.max_time=-5m", "train.max_time"),
    ("optimizer.lr=-1", "greater than 0"),
    ("optimizer.lr=0", "greater than 0"),
    ("optimizer.lr=abc", "must be a number"),
    ("optimizer.weight_decay=-0.1", "at least 0"),
    ("optimizer.momentum=2", "less than 1"),
    ("optimizer.warmup_epochs=-1", "at least 0"),
    ("optimizer.name=lion", "optimizer.name"),
    ("optimizer.scheduler=step", "optimizer.scheduler"),
    ("loss.focal_gamma=-1", "at least 0"),
    ("loss.class_weights=[1, -1]", "class_weights"),
    ("loss.class_weights=[0, 0]", "class_weights"),
    ("loss.class_weights=[1, 2, 3]", "class_weights"),
    ("loss.terms={tversky: 1}", "loss.terms"),
    ("loss.terms={ce: 0, dice: 0}", "loss.terms"),
    ("data.val_fraction=abc", "must be a number"),
    ("data.val_fraction=1.5", "val_fraction"),
    ("data.split_seed=1.5", "must be an integer"),
    ("data.years=[2016, abc]", "list of integers"),
    ("data.cache=gpu", "data.cache"),
    ("model.args=3", "must be a mapping"),
    ("model.stats=maybe", "model.stats"),
    ("model.frozen_batch_norm=half", "frozen_batch_norm"),
    ("model.freeze_encoder=often", "true or false"),
    ("train.epoch=3", "unknown key"),
    ("trian.epochs=3", "unknown key"),
    ("train", "section.key=value"),
]


@pytest.mark.parametrize(("setting", "needle"), BAD_SETTINGS, ids=[s for s, _ in BAD_SETTINGS])
def test_bad_configuration_values_are_refused_before_anything_is_written(synth_root: Path, tmp_path: Path,
                                                                         setting: str, needle: str) -> None:
    out = tmp_path / "run"
    _refused(["train", "tiny", "--data", str(synth_root), "-o", str(out), "--set", setting], needle)
    assert not out.exists()


def test_a_preset_that_needs_weights_is_refused_before_anything_is_written(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "faithful"
    _refused(["train", "official-unet-r50-6band", "--data", str(synth_root), "-o", str(out)], "encoder_weights=PATH")
    assert not out.exists()


# ---------------------------------------------------------------- thresholds and devices
@pytest.mark.parametrize("threshold", ["2", "5", "0", "1", "-0.5"])
def test_map_refuses_a_threshold_outside_0_1(scene: dict[str, Path], threshold: str) -> None:
    out = scene["root"] / f"map-{threshold}"
    _refused(["map", str(scene["model"]), str(scene["stacked"]), "-o", str(out), "--threshold", threshold],
             "between 0 and 1")
    assert not out.exists()


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--threshold", "2", "between 0 and 1"), ("--threshold", "often", "--threshold"),
    ("--device", "cuda", "no CUDA GPU"), ("--device", "tpu", "choose auto, cpu, cuda"),
])
def test_evaluate_refuses_bad_thresholds_and_devices(scene: dict[str, Path], synth_root: Path, option: str,
                                                     value: str, needle: str) -> None:
    if option == "--device" and value == "cuda":
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
    _refused(["evaluate", str(scene["model"]), str(synth_root), option, value], needle)


@pytest.mark.parametrize(("option", "value"), [("--min-area", "-1"), ("--simplify", "-5")])
def test_map_refuses_negative_sizes(scene: dict[str, Path], option: str, value: str) -> None:
    _refused(["map", str(scene["model"]), str(scene["stacked"]), "-o", str(scene["root"] / "neg"), option, value],
             "negative")


# ---------------------------------------------------------------- behaving like rio and Lightning
def test_version_and_global_verbosity() -> None:
    from smallmines import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"smallmines {__version__}"
    assert runner.invoke(app, ["-q", "train", "--list-presets"]).exit_code == 0


def test_training_is_quiet_and_logs_one_line_per_epoch_without_a_terminal(synth_root: Path, tmp_path: Path) -> None:
    """In a fresh process, as a user runs it: Lightning is imported after the CLI starts."""
    import subprocess
    import sys

    command = [sys.executable, "-c", "from smallmines.cli import main; main()", "train", "tiny", "--data",
               str(synth_root), "-o", str(tmp_path / "run"), "--epochs", "2", "--set", "model.args={widths: [8, 16]}",
               "--batch-size", "8"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for banner in ("GPU available", "TPU available", "Tip:", "LeafSpec", "litlogger", "Loading `train_dataloader`"):
        assert banner not in output, banner
    assert "epoch 1/2:" in output and "epoch 2/2:" in output and "val_iou_mining" in output


def test_mines_raster_carries_a_colour_table(scene: dict[str, Path]) -> None:
    result = runner.invoke(app, ["map", str(scene["model"]), str(scene["stacked"]), "-o", str(scene["root"] / "ok"),
                                 "--window", "64", "--overlap", "32", "--min-area", "0", "--year", "2022"])
    assert result.exit_code == 0, result.output
    assert json.loads((scene["root"] / "ok" / "summary.json").read_text())["year"] == 2022
    with rasterio.open(scene["root"] / "ok" / "mines.tif") as src:
        colours = src.colormap(1)
        assert colours[1] == hex_to_rgba(MINING_COLOUR) and colours[0] == hex_to_rgba(CHANGE_COLOURS[0])
        assert src.nodata == 255
    assert json.loads((scene["root"] / "ok" / "summary.json").read_text())["areas"]["scene_km2"] > 0
    assert np.isfinite(json.loads((scene["root"] / "ok" / "summary.json").read_text())["areas"]["mined_ha"])


# ---------------------------------------------------------------- output folders: one run at a time
def test_a_second_map_into_a_busy_folder_is_refused(scene: dict[str, Path]) -> None:
    from smallmines.folders import folder_lock

    busy = scene["root"] / "busy"
    with folder_lock(busy, "another smallmines map run"):
        text = _refused(["map", str(scene["model"]), str(scene["stacked"]), "-o", str(busy)], "is in use by")
        assert "another smallmines map run (pid" in text
    assert sorted(p.name for p in busy.iterdir()) == []  # nothing written, and the lock file is gone


def test_change_refuses_an_interrupted_or_mixed_map_folder(scene: dict[str, Path]) -> None:
    import shutil

    maps = {}
    for name in ("a", "b"):
        maps[name] = scene["root"] / f"run-{name}"
        result = runner.invoke(app, ["map", str(scene["model"]), str(scene["stacked"]), "-o", str(maps[name]),
                                     "--window", "64", "--overlap", "32"])
        assert result.exit_code == 0, result.output
    ok = runner.invoke(app, ["change", str(maps["a"]), str(maps["b"]), "-o", str(scene["root"] / "ch-ok"),
                             "--year-a", "2016", "--year-b", "2022"])
    assert ok.exit_code == 0, ok.output
    # a rerun killed while replacing outputs: mines.tif of one run beside summary.json of another
    shutil.copy(maps["b"] / "mines.tif", maps["a"] / "mines.tif")
    _refused(["change", str(maps["a"]), str(maps["b"]), "-o", str(scene["root"] / "ch-mixed")], "mixes two map runs")
    # a run killed before summary.json (written last)
    (maps["b"] / "summary.json").unlink()
    _refused(["change", str(maps["b"]), str(maps["a"]), "-o", str(scene["root"] / "ch-cut")], "did not finish")


# ---------------------------------------------------------------- silent wrong results
def test_a_map_of_an_all_nodata_scene_is_an_error_not_0_ha(scene: dict[str, Path]) -> None:
    empty = np.full((13, 96, 128), -9999.0, np.float32)
    path = write_stack(scene["root"] / "empty.tif", empty)
    out = scene["root"] / "empty-map"
    _refused(["map", str(scene["model"]), str(path), "-o", str(out), "--force"], "no pixel", "valid data")
    assert not (out / "summary.json").exists() and not (out / "mines.tif").exists()


def test_a_missing_splits_dir_is_an_error(synth_root: Path, tmp_path: Path) -> None:
    _refused(["train", "tiny", "--data", str(synth_root), "-o", str(tmp_path / "r"), "--set",
              f"data.splits_dir={tmp_path / 'nowhere'}", "--epochs", "1"], "split folder not found")
    _refused(["data", "check", str(synth_root), "--splits-dir", str(tmp_path / "nowhere")], "split folder not found")


def test_benchmark_does_not_reuse_a_run_of_another_configuration(synth_root: Path, tmp_path: Path) -> None:
    base = ["benchmark", "tiny", "--data", str(synth_root), "-o", str(tmp_path / "b"), "--set", "train.epochs=1",
            "--set", "model.args={widths: [8, 16]}", "--set", "train.batch_size=8"]
    assert runner.invoke(app, base).exit_code == 0
    _refused([*base, "--set", "optimizer.lr=0.5"], "another configuration", "optimizer.lr")


# ---------------------------------------------------------------- I/O errors: one line naming the path
def test_outputs_under_a_file_or_in_a_read_only_place(scene: dict[str, Path], synth_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _refused(["map", str(scene["model"]), str(scene["stacked"]), "-o", str(blocker / "map")], str(blocker))
    _refused(["data", "synth", str(blocker / "data"), "--tiles", "4"], str(blocker))
    _refused(["change", "--dataset", str(synth_root), "-o", str(blocker / "change")], str(blocker))
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o555)
    _refused(["data", "synth", str(locked / "data"), "--tiles", "4"], "ermission")


def test_patches_in_hidden_folders_are_not_read(tmp_path: Path) -> None:
    import shutil

    from smallmines.data.layout import discover
    from smallmines.data.synth import synthesize_dataset

    root = synthesize_dataset(tmp_path / "ds", tiles=4, seed=0)
    before = discover(root)
    scratch = root / ".synth-tmp" / "SmallMinesDS" / "2016" / "IMAGE"  # what a killed run leaves behind
    scratch.mkdir(parents=True)
    first = before.patches[0]
    shutil.copy(first.image, scratch / Path(first.image).name)
    after = discover(root)
    assert [p.image for p in after.patches] == [p.image for p in before.patches] and not after.duplicates


# ---------------------------------------------------------------- --overwrite (rio's habit)
@pytest.fixture(scope="module")
def mapped(scene: dict[str, Path]) -> Path:
    """One finished map of the module's scene (read-only: copy it to change it)."""
    out = scene["root"] / "mapped"
    result = runner.invoke(app, ["map", str(scene["model"]), str(scene["stacked"]), "-o", str(out), "--window", "64",
                                 "--overlap", "32", "--year", "2016"])
    assert result.exit_code == 0, result.output
    return out


def test_map_refuses_to_replace_a_finished_map_and_resumes_an_interrupted_one(scene: dict[str, Path],
                                                                               mapped: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "map"
    shutil.copytree(mapped, folder)
    before = (folder / "summary.json").read_bytes()
    args = ["map", str(scene["model"]), str(scene["stacked"]), "-o", str(folder), "--window", "64", "--overlap", "32"]
    _refused(args, str(folder / "summary.json"), "give --overwrite")
    assert (folder / "summary.json").read_bytes() == before
    (folder / "summary.json").unlink()  # a run killed before its last file: resumed without --overwrite
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert json.loads((folder / "summary.json").read_text())["run_id"] != json.loads(before)["run_id"]


def _existing(path: Path, folder: bool = False) -> Path:
    if folder:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("an earlier output\n")
    return path


OVERWRITE_CASES = {
    # name: (arguments given tmp, the dataset and the scene fixture; the path that exists; is it a folder)
    "data-synth": (lambda t, d, s: ["data", "synth", str(t / "o"), "--tiles", "2"], "o/SmallMinesDS", True),
    "data-synth-splits": (lambda t, d, s: ["data", "synth", str(t / "o"), "--tiles", "2"], "o/data_splits", True),
    "data-synth-zip": (lambda t, d, s: ["data", "synth", str(t / "o"), "--tiles", "2", "--zip"], "o/SmallMinesDS.zip",
                       False),
    "data-synth-scenes": (lambda t, d, s: ["data", "synth", str(t / "o"), "--tiles", "2", "--scene-size", "64"],
                          "o/scenes", True),
    "data-pack": (lambda t, d, s: ["data", "pack", str(d), "-o", str(t / "d.smpack")], "d.smpack", False),
    "data-stats": (lambda t, d, s: ["data", "stats", str(d), "-o", str(t / "s.json")], "s.json", False),
    "data-split": (lambda t, d, s: ["data", "split", str(d), "-o", str(t / "s.csv")], "s.csv", False),
    "data-preview": (lambda t, d, s: ["data", "preview", str(d), "-o", str(t / "p.png")], "p.png", False),
    "data-check-json": (lambda t, d, s: ["data", "check", str(d), "--json", str(t / "c.json")], "c.json", False),
    "data-merge": (lambda t, d, s: ["data", "merge", str(d), str(d), "-o", str(t / "m")], "m/SmallMinesDS", True),
    "export": (lambda t, d, s: ["export", str(s["model"]), str(t / "m.onnx")], "m.onnx", False),
    "report": (lambda t, d, s: ["report", str(t), "-o", str(t / "r.html")], "r.html", False),
    "change": (lambda t, d, s: ["change", str(t / "a"), str(t / "b"), "-o", str(t / "c")], "c/summary.json", False),
    "change-raster": (lambda t, d, s: ["change", str(t / "a"), str(t / "b"), "-o", str(t / "c")], "c/change.tif",
                      False),
    "change-history": (lambda t, d, s: ["change", str(t / "a"), str(t / "b"), str(t / "c"), "-o", str(t / "h")],
                       "h/history.csv", False),
    "change-dataset": (lambda t, d, s: ["change", "--dataset", str(d), "-o", str(t / "c")], "c/tiles.csv", False),
    "evaluate": (lambda t, d, s: ["evaluate", str(s["model"]), str(d), "-o", str(t / "e")], "e/metrics.json", False),
    "build": (lambda t, d, s: ["build", "--scene", str(s["stacked"]), "--labels", str(s["stacked"]), "--country",
                               "GH", "--year", "2016", "-o", str(t / "b")], "b/SmallMinesDS/2016", True),
}


@pytest.mark.parametrize("case", list(OVERWRITE_CASES))
def test_existing_outputs_are_not_replaced_without_overwrite(case: str, synth_small: Path, scene: dict[str, Path],
                                                             tmp_path: Path) -> None:
    make_args, existing, folder = OVERWRITE_CASES[case]
    path = _existing(tmp_path / existing, folder)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    _refused(make_args(tmp_path, synth_small, scene), str(path), "give --overwrite")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    if not folder:
        assert path.read_text() == "an earlier output\n"


def test_overwrite_replaces_an_output(synth_small: Path, tmp_path: Path) -> None:
    target = _existing(tmp_path / "s.csv")
    result = runner.invoke(app, ["data", "split", str(synth_small), "-o", str(target), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("patch_name")


@pytest.mark.parametrize(("extra", "needle"), [([], "give --overwrite"), (["--resume", "--overwrite"], "not both")])
def test_train_refuses_to_replace_a_run(synth_small: Path, tmp_path: Path, extra: list[str], needle: str) -> None:
    run = tmp_path / "run"
    _existing(run / "model.pt")
    _refused(["train", "tiny", "--data", str(synth_small), "-o", str(run), *extra], needle)
    assert sorted(p.name for p in run.iterdir()) == ["model.pt"]


def test_train_overwrite_removes_only_the_run_files(tmp_path: Path) -> None:
    from smallmines.training.trainer import RUN_FILES, _clear_run

    run = tmp_path / "run"
    for name in RUN_FILES:
        _existing(run / name / "x" if name in ("checkpoints", "logs", "evaluation") else run / name)
    _existing(run / "notes.txt")
    _clear_run(run)
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------- free space and atomic checkpoints
def test_pack_checks_free_space_before_writing(synth_small: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    _refused(["data", "pack", str(synth_small), "-o", str(tmp_path / "d.smpack")], "MiB free",
             "free space or write somewhere else")
    assert list(tmp_path.iterdir()) == []


def test_map_checks_free_space_before_writing(scene: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    out = tmp_path / "map"
    _refused(["map", str(scene["model"]), str(scene["stacked"]), "-o", str(out)], "MiB free")
    assert not out.exists()


def test_a_checkpoint_cut_by_a_full_disk_never_appears_under_its_final_name(tmp_path: Path, monkeypatch) -> None:
    import errno

    import torch

    from smallmines.training.trainer import AtomicCheckpointIO

    def full_disk(obj, handle, *args, **kwargs) -> None:
        handle.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "checkpoints" / "best.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, target)
    assert torch.load(target, weights_only=False) == {"epoch": 1}
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False) == {"epoch": 1}  # the complete earlier one, no temp file
    assert [p.name for p in target.parent.iterdir()] == ["best.ckpt"]


def test_the_trainer_writes_checkpoints_atomically() -> None:
    from smallmines.training.config import load_config
    from smallmines.training.trainer import AtomicCheckpointIO, EpochTimer, _trainer

    trainer, _ = _trainer(load_config("tiny"), Path("unused"), "cpu", "32-true", False, True, EpochTimer(), 1)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# ---------------------------------------------------------------- change: everything refused before a file is written
@pytest.mark.parametrize("field", ["nosuchfield", "NAME ", "geometry2"])
def test_a_bad_zone_field_is_refused_before_anything_is_written(mapped: Path, tmp_path: Path, field: str) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    with rasterio.open(mapped / "mines.tif") as src:
        bounds, crs = src.bounds, src.crs
    zones = tmp_path / "zones.geojson"
    gpd.GeoDataFrame({"name": ["all"]}, geometry=[box(*bounds)], crs=crs).to_file(zones)
    out = tmp_path / "change"
    _refused(["change", str(mapped), str(mapped), "-o", str(out), "--year-a", "2016", "--year-b", "2022",
              "--zones", str(zones), "--zone-field", field], repr(field), "fields: name")
    assert not out.exists() or list(out.iterdir()) == []


# ---------------------------------------------------------------- portability: no working-directory paths
def test_a_run_configuration_stores_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    from smallmines.training.config import load_config

    monkeypatch.chdir(tmp_path)
    config = load_config("tiny", {"data": {"root": "data/SmallMinesDS.zip", "splits_dir": "splits"},
                                  "model": {"init": "../base/model.pt"}}).with_absolute_paths()
    assert config.data.root == str(tmp_path / "data" / "SmallMinesDS.zip")
    assert config.data.splits_dir == str(tmp_path / "splits") and config.model.init == str(tmp_path.parent / "base"
                                                                                           / "model.pt")
    assert config.data.splits == "official"


def test_a_map_summary_names_its_inputs_by_absolute_paths(mapped: Path) -> None:
    summary = json.loads((mapped / "summary.json").read_text())
    assert Path(summary["model"]["file"]).is_absolute() and Path(summary["model"]["file"]).is_file()
    assert all(Path(s["path"]).is_absolute() for s in summary["scene"]["sources"])


def test_report_finds_maps_given_with_maps_and_shows_no_local_paths(mapped: Path, tmp_path: Path) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    out = tmp_path / "r" / "report.html"
    result = runner.invoke(app, ["report", str(empty), "-o", str(out), "--maps", str(mapped / "mines.tif")])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "mapped" in page
    for local in (str(tmp_path), str(mapped), str(Path.cwd().resolve())):
        assert local not in page, local


def test_report_refuses_maps_that_are_not_maps(tmp_path: Path) -> None:
    _refused(["report", str(tmp_path), "-o", str(tmp_path / "r.html"), "--maps", str(tmp_path)], "--maps",
             "no mines.tif")
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------- tables and rasters say what they hold
def test_mines_raster_carries_category_names(mapped: Path) -> None:
    with rasterio.open(mapped / "mines.tif") as src:
        assert src.tags()["classes"] == "0=not mining, 1=mining, 255=nodata"
    sidecar = (mapped / "mines.tif.aux.xml").read_text()
    assert "<Category>not mining</Category>" in sidecar and "<Category>mining</Category>" in sidecar


def test_benchmark_rows_name_their_configuration() -> None:
    from smallmines.training.benchmarking import to_markdown

    row = {"config": "tiny-fast", "model": "unet (resnet18)", "bands": "all", "channels": 13, "params": 1000,
           "train_s": 3.0, "seeds": 1, **{f"{s}_{k}": 0.5 for s in ("iou_mining", "miou", "f1_mining",
                                                                      "precision_mining", "recall_mining")
                                           for k in ("mean", "std")}}
    table = to_markdown([row], "test", [0])
    assert "| Config | Model |" in table and "| tiny-fast | unet (resnet18) |" in table


def test_the_no_validation_warning_is_given_once(caplog) -> None:
    from smallmines.training.evaluation import select_threshold

    empty = type("Empty", (), {"__len__": lambda self: 0})()
    with caplog.at_level("WARNING", logger="smallmines"):
        assert select_threshold(None, empty, (), None)["threshold"] == 0.5
        assert select_threshold(None, empty, (), None, warn=False)["threshold"] == 0.5
    assert sum("no validation patches" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------- the corpus: bad input across every command
BAD_INPUTS = [
    "map {M} {S} -o {R}/m1 --window 100",
    "map {M} {S} -o {R}/m2 --window 64 --overlap 64",
    "map {M} {S} -o {R}/m3 --window 64 --overlap 96",
    "map {M} {S} -o {R}/m4 --block -5",
    "map {M} {S} -o {R}/m5 --batch-size 0",
    "map {M} {S} -o {R}/m6 --readers 0",
    "map {M} {S} -o {R}/m7 --workers 0",
    "map {M} {S} -o {R}/m8 --scale abc",
    "map {M} {S} -o {R}/m9 --scale s9=3",
    "map {M} {S} -o {R}/m10 --scale dem=-1",
    "map {M} {S} -o {R}/m11 --band-order red,red",
    "map {M} {S} -o {R}/m12 --band-order foo,bar",
    "map {M} {S} -o {R}/m13 --precision fp64",
    "map {M} {S} -o {R}/m14 --device tpu",
    "map {M} {S} -o {R}/m15 --aoi {R}/text.txt",
    "map {M} {R}/text.tif -o {R}/m16",
    "map {M} {R}/empty.tif -o {R}/m17",
    "map {R}/empty.pt {S} -o {R}/m18",
    "map {R}/garbage.pt {S} -o {R}/m19",
    "map {R}/garbage.onnx {S} -o {R}/m20",
    "map {M} -o {R}/m21",
    "map {M} {S} -o {R}/m22 --margin -3",
    "map {M} {S} -o {R}/m23 --threads 0",
    "map {M} {S} -o {R}/m24 --overlap -32",
    "map {M} {S} -o {R}/m25 --year 20x",
    "map {M} {S} -o {R}/m26 --aoi {R}/bad.geojson",
    "map {M} {S} -o {R}/m27 --aoi {R}/empty.gpkg",
    "map {M} {S} -o {R}/m28 --window 0",
    "map {M} {S} -o {R}/m29 --window -64",
    "map {M} --onnx {R}/garbage.onnx {S} -o {R}/m30",
    "export {R}/garbage.pt {R}/x.onnx",
    "export {R}/empty.pt {R}/x.onnx",
    "export {M} {R}/text.txt/x.onnx",
    "data check {R}/emptydir",
    "data check {R}/bad.zip",
    "data check {R}/emptyzip.zip",
    "data check {R}/text.txt",
    "data stats {D} -o {R}/s.json --bands B13",
    "data stats {D} -o {R}/s.json --split holdout",
    "data stats {D} -o {R}/s.json --splits bogus",
    "data stats {D} -o {R}/s.json --val-fraction 2",
    "data stats {D} -o {R}/s.json --splits {R}/empty.csv",
    "data stats {D} -o {R}/s.json --splits {R}/nocols.csv",
    "data stats {D} -o {R}/s.json --splits {R}/badsplit.csv",
    "data stats {R}/emptydir -o {R}/s.json",
    "data split {D} -o {R}/x.csv --method bogus",
    "data split {D} -o {R}/x.csv --method random --test-fraction 1.5",
    "data split {D} -o {R}/x.csv --method spatial --block-size -5",
    "data split {D} -o {R}/x.csv --val-fraction -0.1",
    "data split {D} -o {R}/x.csv --method year --train-years 2016 --test-years 2016",
    "data split {D} -o {R}/x.csv --method country --test-countries XX",
    "data pack {R}/emptydir -o {R}/p.smpack",
    "data pack {R}/bad.zip -o {R}/p.smpack",
    "data pack {D} -o {R}/text.txt/p.smpack",
    "data preview {D} -o {R}/p.png --split holdout",
    "data preview {R}/emptydir -o {R}/p.png",
    "data preview {D} -o {R}/p.png --splits bogus --split test",
    "data merge {D} -o {R}/mm",
    "data merge {D} {R}/emptydir -o {R}/mm",
    "data merge {D} {D} -o {D}",
    "data synth {R}/syn --tiles 100000",
    "data synth {R}/text.txt/syn --tiles 2",
    "train nosuchpreset --data {D} -o {R}/t1",
    "train {R}/bad.yaml --data {D} -o {R}/t2",
    "train {R}/list.yaml --data {D} -o {R}/t3",
    "train {R}/empty.yaml --data {D} -o {R}/t4",
    "train tiny --data {R}/emptydir -o {R}/t5",
    "train tiny --data {R}/nowhere -o {R}/t6",
    "train tiny --data {D} -o {R}/t7 --set data.bands=bogus",
    "train tiny --data {D} -o {R}/t8 --set data.splits=bogus",
    "train tiny --data {D} -o {R}/t9 --set data.splits={R}/nocols.csv",
    "train tiny --data {D} -o {R}/t10 --init {R}/garbage.pt",
    "train tiny --data {D} -o {R}/t11 --init {R}/empty.pt",
    "train tiny --data {D} -o {R}/t12 --resume",
    "train tiny --data {D} -o {R}/t13 --max-time abc",
    "train tiny --data {D} -o {R}/t14 --devices abc",
    "train tiny --data {D} -o {R}/t15 --precision 8-bit",
    "train tiny --data {D} -o {R}/t16 --stats maybe",
    "train tiny --data {D} -o {R}/t17 --set model.name=nosuchnet",
    "train tiny --data {D} -o {R}/t18 --set data.years=[1999]",
    "train tiny --data {D} -o {R}/t19 --set data.bands=",
    "train tiny --data {R}/text.txt -o {R}/t20",
    "evaluate {M} {D} --split holdout",
    "evaluate {M} {D} --batch-size 0",
    "evaluate {R}/garbage.pt {D}",
    "evaluate {R}/empty.pt {D}",
    "evaluate {M} {R}/emptydir",
    "evaluate {M} {R}/nowhere",
    "evaluate {M} {D} --threshold -1",
    "benchmark tiny --data {D} -o {R}/b --seeds a,b",
    "benchmark tiny tiny --data {D} -o {R}/b2",
    "benchmark nosuch --data {D} -o {R}/b3",
    "change {R}/text.tif {R}/text.tif -o {R}/c1",
    "change {R}/empty.tif {S} -o {R}/c2",
    "change {S} {S} -o {R}/c3",
    "change {R}/nowhere {R}/nowhere2 -o {R}/c4",
    "change {R}/a {R}/b --years 2016 -o {R}/c5",
    "change {R}/a {R}/b --years abc -o {R}/c6",
    "change {R}/a {R}/b {R}/c --confirm 0 -o {R}/c7",
    "change {R}/a {R}/b --min-area -1 -o {R}/c8",
    "change --dataset {R}/emptydir -o {R}/c9",
    "change --dataset {D} -o {R}/c10 --year-a 2022 --year-b 2016",
    "change --dataset {D} -o {R}/c11 --year-a 1999",
    "change -o {R}/emptydir --reference {R}/empty.csv",
    "sample {R}/emptydir -n 10",
    "sample {S} -n 10",
    "sample {R}/text.tif -n 10",
    "report {R}/emptydir -o {R}/r.html",
    "report {R}/emptydir -o {R}/r.html --data {R}/text.txt",
    "report {R}/emptydir -o {R}/text.txt/r.html --maps {R}/emptydir",
    "build --scene {S} --labels {R}/text.txt --country GH --year 2016 -o {R}/bb1",
    "build --scene {S} --labels {R}/bad.geojson --country GH --year 2016 -o {R}/bb2",
    "build --scene {S} --labels {R}/empty.gpkg --country GH --year 2016 -o {R}/bb3",
    "build --scene {R}/text.tif --labels {R}/bad.geojson --country GH --year 2016 -o {R}/bb4",
    "build --scene {S} --labels {R}/bad.geojson --country G --year 2016 -o {R}/bb5",
    "build --scene {S} --labels {R}/bad.geojson --country GH --year 1800 -o {R}/bb6",
    "build --scene {S} --labels {R}/bad.geojson --country GH --year 2016 --max-nodata 2 -o {R}/bb7",
    "build --scene {S} --labels {R}/bad.geojson --country GH --year 2016 --test-fraction 1.5 -o {R}/bb8",
    "build --scene {S} --labels {R}/bad.geojson --country GH --year 2016 --bands ndvi -o {R}/bb9",
    "fetch --year 2016 --bbox 1,2,3 -o {R}/f1",
    "fetch --year 2016 --bbox 10,10,5,5 -o {R}/f2",
    "fetch --year 2016 --bbox a,b,c,d -o {R}/f3",
    "fetch --year 2016 --bbox 0,0,1,1 --months 13 -o {R}/f4",
    "fetch --year 2016 --bbox 0,0,1,1 --statistic mode -o {R}/f5",
    "fetch --year 2016 --bbox 0,0,1,1 --stac {R}/text.txt -o {R}/f6",
    "fetch {R}/bad.geojson --year 2016 -o {R}/f7",
    "fetch --year 2016 --bbox 0,0,1,1 --collection s3=x -o {R}/f8",
    "monitor --years 2016 --model {M} --bbox 0,0,1,1 -o {R}/mo1",
    "monitor --years abc --model {M} --bbox 0,0,1,1 -o {R}/mo2",
]
"""Templates: {M} a model, {S} a scene, {D} a small dataset, {R} a folder of junk files (see ``junk``)."""
USAGE_ERRORS = {

    "change {R}/a {R}/b --min-area -1 -o {R}/c8",
    "change {R}/a {R}/b --years 2016 -o {R}/c5",
    "change {R}/a {R}/b --years abc -o {R}/c6",
    "change {R}/a {R}/b {R}/c --confirm 0 -o {R}/c7",
    "fetch --year 2016 --bbox 0,0,1,1 --collection s3=x -o {R}/f8",
    "map {M} {S} -o {R}/m25 --year 20x",
}
"""Refused by the option parser (exit 2, typer's framed message naming the option), not by smallmines."""


@pytest.fixture(scope="module")
def junk(scene: dict[str, Path], synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files a hostile tester feeds: empty, truncated, not what their name says."""
    import zipfile

    root = tmp_path_factory.mktemp("junk")
    (root / "text.txt").write_text("hello\n")
    (root / "empty.tif").write_bytes(b"")
    (root / "text.tif").write_text("not a tiff")
    (root / "empty.pt").write_bytes(b"")
    (root / "garbage.pt").write_bytes(b"\x00garbage" * 10)
    (root / "garbage.onnx").write_bytes(b"xx")
    (root / "bad.yaml").write_text("train: [1, 2\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "empty.yaml").write_text("")
    (root / "empty.csv").write_text("")
    (root / "nocols.csv").write_text("a,b\n1,2\n")
    (root / "badsplit.csv").write_text("patch_name,class_percentage,bin,split\nIMG_GH_0001_2016.tif,1,0,holdout\n")
    (root / "bad.geojson").write_text("{not json")
    (root / "empty.gpkg").write_bytes(b"")
    (root / "bad.zip").write_bytes(b"PK\x03\x04garbage")
    zipfile.ZipFile(root / "emptyzip.zip", "w").close()
    (root / "emptydir").mkdir()
    return {"R": str(root), "S": str(scene["stacked"]), "M": str(scene["model"]), "D": str(synth_small)}


@pytest.mark.parametrize("template", BAD_INPUTS)
def test_bad_input_gets_a_clear_error_and_no_output(junk: dict[str, str], template: str) -> None:
    args = [part.format(**junk) for part in template.split()]
    before = {p for p in Path(junk["R"]).rglob("*") if p.is_file()}
    result = runner.invoke(app, args)
    text = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (template, result.exception)
    assert "Traceback" not in text, text
    if template in USAGE_ERRORS:
        assert result.exit_code == 2 and "Invalid value" in text, text
    else:
        assert result.exit_code == 1 and "error:" in text, f"{template}: exit {result.exit_code}\n{text}"
    written = {p for p in Path(junk["R"]).rglob("*") if p.is_file()} - before
    assert not written, f"{template} left {sorted(map(str, written))}"

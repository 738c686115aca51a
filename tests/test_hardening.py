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

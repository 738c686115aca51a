"""The CUDA paths: compiled bf16 training, resume, evaluation, batched GPU mapping, ONNX on CUDA.

Run on a GPU machine with ``pytest -m cuda`` (``benchmarks/gpu_check.sh`` does). Everywhere torch sees
no GPU (CI, laptops) every test here is skipped. Each compares the GPU result with the CPU one of the
same weights, so a wrong device path fails rather than merely runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from _scene_data import TINY_UNET, card_for, save_tiny, scene_array, write_stack

from smallmines.bands import BAND_NAMES
from smallmines.mapping.mapper import map_scene
from smallmines.models.registry import load_model
from smallmines.training.datamodule import DeviceBatches, SmallMinesDataModule
from smallmines.training.evaluation import evaluate
from smallmines.training.trainer import fit

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run with -m cuda there)")]

GPU = ["train.accelerator=gpu", "train.precision=bf16-mixed", "train.compile=true", "train.channels_last=true",
       "train.batch_size=8", "model.args={widths: [8, 16]}", "train.epochs=2", "optimizer.scheduler=cosine"]
TILING = {"window": 256, "overlap": 64, "block": 512, "min_area_ha": 0.0}


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def gpu_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory):
    return fit("tiny", [f"data.root={synth_root}", *GPU], out=tmp_path_factory.mktemp("cuda") / "run")


def test_compiled_bf16_fit_runs_on_the_gpu(gpu_run) -> None:
    s = gpu_run.summary
    assert s["precision"] == "bf16-mixed" and s["epochs"] == 2
    assert s["device"] == torch.cuda.get_device_name(0)
    with open(gpu_run.run_dir / "logs" / "metrics.csv") as fh:
        losses = [float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss")]
    assert losses and all(np.isfinite(losses))
    network, card = load_model(gpu_run.model_path)  # saved from a compiled, channels-last network
    assert next(network.parameters()).device.type == "cpu"
    x = torch.randn(2, len(card.channels), 128, 128)
    assert torch.isfinite(network.eval()(x)).all()


def test_resume_on_the_gpu_continues_the_epochs(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit("tiny", [f"data.root={synth_root}", *GPU, "train.epochs=1"], out=out)
    resumed = fit("tiny", [f"data.root={synth_root}", *GPU, "train.epochs=2"], out=out, resume=True)
    assert resumed.summary["resumed_from_epoch"] == 1 and resumed.summary["epochs"] == 2
    with open(out / "logs" / "metrics.csv") as fh:
        epochs = {int(float(r["epoch"])) for r in csv.DictReader(fh) if r["epoch"]}
    assert epochs == {0, 1}


def test_gpu_evaluation_equals_the_cpu_one(gpu_run, synth_root: Path) -> None:
    on_gpu = evaluate(gpu_run.model_path, synth_root, "test", device="cuda")
    on_cpu = evaluate(gpu_run.model_path, synth_root, "test", device="cpu")
    gpu_conf, cpu_conf = np.asarray(on_gpu.confusion, float), np.asarray(on_cpu.confusion, float)
    assert gpu_conf.sum() == cpu_conf.sum()
    assert np.abs(gpu_conf - cpu_conf).sum() <= 0.002 * cpu_conf.sum()  # autocast rounding flips a few pixels


def test_device_batches_stay_on_the_gpu_and_match_the_cpu(synth_root: Path) -> None:
    dm = SmallMinesDataModule(synth_root, bands="all,ndvi", batch_size=8, augment="dihedral")
    dm.setup("fit")
    arrays = dm.load("train")
    out = {}
    for device in ("cpu", "cuda"):
        batches = DeviceBatches(arrays.to(device), 8, shuffle=True, augment="dihedral", seed=3)
        batch = next(iter(batches))
        assert batch["image"].device.type == device
        out[device] = dm.on_after_batch_transfer(batch, 0)
    assert out["cuda"]["image"].device.type == "cuda"
    torch.testing.assert_close(out["cuda"]["image"].cpu(), out["cpu"]["image"], rtol=1e-5, atol=1e-5)
    assert torch.equal(out["cuda"]["mask"].cpu(), out["cpu"]["mask"])


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cuda_map")
    data = scene_array(640, 704, seed=1)  # not a multiple of the window: the edge windows are shifted
    return {"root": root, "stacked": write_stack(root / "scene.tif", data),
            "unet": save_tiny(root / "unet.pt", card_for(data, BAND_NAMES, "unet", TINY_UNET, threshold=0.55))}


# fp32 on the GPU still runs cuDNN convolutions in TF32 (PyTorch's default): 3.1e-3 was seen on an H200
@pytest.mark.parametrize("precision, tolerance", [("fp32", 5e-3), ("bf16", 3e-2)])
def test_batched_gpu_map_equals_the_cpu_map(scene: dict[str, Path], precision: str, tolerance: float) -> None:
    cpu = map_scene(scene["unet"], scene["root"] / "cpu", stacked=scene["stacked"], device="cpu", batch_size=1,
                    **TILING)
    gpu = map_scene(scene["unet"], scene["root"] / f"gpu_{precision}", stacked=scene["stacked"], device="cuda",
                    batch_size=8, precision=precision, **TILING)
    assert gpu.summary["backend"]["device"].startswith("cuda")
    assert gpu.summary["backend"]["precision"] == precision
    p_cpu, p_gpu = _read(cpu.probability), _read(gpu.probability)
    valid = np.isfinite(p_cpu) & (p_cpu >= 0)
    assert np.abs(p_gpu[valid] - p_cpu[valid]).max() < tolerance
    clear = valid & (np.abs(p_cpu - 0.55) > tolerance)  # pixels the precision cannot move across the threshold
    np.testing.assert_array_equal(_read(gpu.mines)[clear], _read(cpu.mines)[clear])
    summary = json.loads(gpu.summary_path.read_text())
    assert summary["run_id"] == gpu.summary["run_id"]


def test_onnx_on_the_cuda_provider(scene: dict[str, Path]) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has no CUDA provider ({', '.join(ort.get_available_providers())})")
    from smallmines.models.export import export_onnx

    model = export_onnx(scene["unet"], scene["root"] / "unet.onnx", check=False).path
    cpu = map_scene(scene["unet"], scene["root"] / "torch_cpu", stacked=scene["stacked"], device="cpu", **TILING)
    gpu = map_scene(None, scene["root"] / "onnx_cuda", stacked=scene["stacked"], onnx=model, device="cuda",
                    batch_size=4, **TILING)
    assert gpu.summary["backend"]["engine"] == "onnxruntime"
    np.testing.assert_allclose(_read(gpu.probability), _read(cpu.probability), atol=2e-3)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_the_optimizer_is_fused_on_the_gpu_only(name: str) -> None:
    from smallmines.training.task import SegmentationTask

    for device, fused in (("cpu", None), ("cuda", True)):
        network = torch.nn.Conv2d(3, 2, 3).to(device)
        task = SegmentationTask(network, {}, {"terms": {"ce": 1.0}}, {"name": name, "lr": 1e-3, "scheduler": "none"})
        assert task.configure_optimizers().defaults["fused"] is fused, device

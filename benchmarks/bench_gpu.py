"""GPU training throughput: the authors' recipe against ``unet-r50-all13`` end to end, in one run (issue 14).

Three measurements on the same GPU, one after the other (``fit`` first: it is the target):

- ``authors``: the SmallMinesDS recipe as written: U-Net ResNet50 on 6 bands (``official6``), the
  whole network trained, per-file rasterio reads through a DataLoader (batch 4, flips, normalised on
  the CPU), fp16 autocast with a GradScaler (Lightning's ``16-mixed``), no compile, NCHW. A plain
  loop, so it is an upper bound of the authors' Lightning/TerraTorch run.
- ``ceiling``: the same U-Net ResNet50 on 13 bands with a fixed random batch already on the GPU
  (bf16 autocast, channels-last, AdamW), eager and ``torch.compile``d: what the network alone allows.
- ``fit``: ``smallmines.training.trainer.fit("unet-r50-all13")`` on the packed dataset, Lightning
  included (device-resident splits, batched normalisation and augmentation, bf16, channels-last,
  compile, validation and checkpoints every epoch). Its throughput is the median of the training
  epochs after the first (which compiles), as logged by the run (``train_patches_per_s``).

GPU busy share of the training epochs is measured two ways: NVML's utilisation counter (the share of
time in which at least one kernel ran, over NVML's sample period) sampled every 20 ms and averaged
over the timed training epochs; and, for one epoch, the union of the CUDA kernels' intervals recorded
by ``torch.profiler`` over the epoch's wall time (that epoch is left out of the throughput).

Usage (``benchmarks/gpu_check.sh`` runs it)::

    python benchmarks/bench_gpu.py --pack DATA.smpack --files DATA_DIR --out RESULTS_DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import smallmines  # noqa: F401  (torchvision shim before smp)
from smallmines.bands import BAND_NAMES, parse_bands
from smallmines.data.dataset import SmallMinesDS
from smallmines.data.stats import BandStats
from smallmines.models.registry import build_model
from smallmines.training import trainer as trainer_module
from smallmines.training.datamodule import SmallMinesDataModule
from smallmines.training.losses import CombinedLoss

PROFILED_EPOCH = 2


def _event_time(fn, steps: int, warmup: int) -> float:
    """Seconds per call of ``fn`` (CUDA events around ``steps`` calls after ``warmup``)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def authors(files: Path, pack: Path | None, workers: int, steps: int) -> dict[str, Any]:
    """Patches/s of the authors' recipe (per-file reads, batch 4, 16-mixed, 6 bands, encoder trained).

    The z-score statistics come from the pack when given; otherwise 0/1 (the speed is the same).
    """
    device = torch.device("cuda")
    channels = parse_bands("official6")
    if pack is not None:
        dm = SmallMinesDataModule(pack, bands="official6")
        dm.setup("fit")
        stats = dm.stats
    else:
        stats = BandStats(channels, (0.0,) * len(channels), (1.0,) * len(channels))
    dataset = SmallMinesDS(files, split="train", bands="official6", stats=stats, augment=True)
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers, persistent_workers=True,
                        pin_memory=True, drop_last=True)
    model = build_model("unet", parse_bands("official6"), encoder="resnet50").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss = CombinedLoss({"ce": 1.0}, class_weights=[0.1, 0.9]).to(device)
    scaler = torch.amp.GradScaler("cuda")

    def batches():
        while True:
            yield from loader

    done, start = 0, None
    for i, batch in enumerate(islice(batches(), steps + 10)):
        if i == 10:
            torch.cuda.synchronize()
            start, done = time.perf_counter(), 0
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16):
            value = loss(model(image), mask)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(value).backward()
        scaler.step(optimizer)
        scaler.update()
        done += image.shape[0]
    torch.cuda.synchronize()
    rate = done / (time.perf_counter() - start)
    return {"patches_per_s": rate, "batch_size": 4, "workers": workers, "bands": "official6", "steps": steps}


def ceiling(batch: int, compiled: bool, steps: int, fused: bool = False) -> dict[str, Any]:
    """Training and inference patches/s of U-Net ResNet50 on 13 bands with the batch already on the GPU."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("unet", BAND_NAMES, encoder="resnet50").to(device, memory_format=torch.channels_last)
    if compiled:
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    loss = CombinedLoss({"ce": 1.0, "dice": 1.0}, class_weights=[0.1, 0.9]).to(device)
    x = torch.randn(batch, 13, 128, 128, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, 128, 128), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            value = loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    start = time.perf_counter()
    train = _event_time(step, steps, warmup=3)
    model.eval()

    @torch.inference_mode()
    def infer() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x)

    infer_s = _event_time(infer, steps, warmup=3)
    return {"compiled": compiled, "fused_adamw": fused, "batch_size": batch, "train_patches_per_s": batch / train,
            "inference_patches_per_s": batch / infer_s, "seconds_with_warmup": time.perf_counter() - start}


class _Busy:
    """NVML utilisation sampled every 20 ms in a thread, as (time, percent)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        except Exception as error:  # noqa: BLE001  (no NVML: no samples, the profiler measure remains)
            print(f"NVML unavailable: {error}", flush=True)
            return
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            time.sleep(0.02)

    def __enter__(self) -> _Busy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self, spans: list[tuple[float, float]]) -> float | None:
        values = [u for t, u in self.samples if any(a <= t <= b for a, b in spans)]
        return sum(values) / len(values) if values else None


def _kernel_union_seconds(prof: Any) -> float:
    """Seconds in which at least one CUDA kernel ran (union of the kernels' intervals)."""
    intervals = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                       if e.device_type == torch.autograd.DeviceType.CUDA
                       and not getattr(e, "is_user_annotation", False) and "#" not in e.name)
    total, current = 0.0, None
    for start, end in intervals:
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    if current is not None:
        total += current[1] - current[0]
    return total / 1e6


def fit_run(pack: Path, epochs: int, out: Path, preset: str = "unet-r50-all13",
            overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """``fit(preset)`` with per-epoch spans recorded and one epoch profiled."""
    spans: list[tuple[int, float, float]] = []
    profiled: dict[str, Any] = {}

    class Timer(trainer_module.EpochTimer):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            super().on_train_epoch_start(trainer, pl_module)
            self._epoch, self._t0 = trainer.current_epoch, self._start
            if trainer.current_epoch == PROFILED_EPOCH:
                from torch.profiler import ProfilerActivity, profile

                self._prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self._prof.__enter__()
                self._t0 = time.perf_counter()

        def _stop(self, trainer, pl_module) -> None:
            if self._start is None:
                return
            super()._stop(trainer, pl_module)
            end = time.perf_counter()
            spans.append((self._epoch, self._t0, end))
            prof = getattr(self, "_prof", None)
            if prof is not None:
                prof.__exit__(None, None, None)
                self._prof = None
                wall = end - self._t0
                averages = prof.key_averages()
                profiled.update(epoch=self._epoch, wall_s=wall, kernel_s=_kernel_union_seconds(prof),
                                table=averages.table(sort_by="self_cuda_time_total", row_limit=25) + "\n\n"
                                + averages.table(sort_by="self_cpu_time_total", row_limit=40))

    original = trainer_module.EpochTimer
    trainer_module.EpochTimer = Timer
    try:
        with _Busy() as busy:
            result = trainer_module.fit(preset, [f"data.root={pack}", f"train.epochs={epochs}", "train.patience=null",
                                                 *overrides], out=out)
    finally:
        trainer_module.EpochTimer = original
    with open(out / "logs" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train_patches_per_s")]
    per_epoch = {int(float(r["epoch"])): float(r["train_patches_per_s"]) for r in rows}
    timed = [e for e in sorted(per_epoch) if e >= 1 and e != PROFILED_EPOCH]
    steady = [(a, b) for e, a, b in spans if e in timed]
    s = result.summary
    busy_profiled = profiled["kernel_s"] / profiled["wall_s"] if profiled else None
    return {"patches_per_s": statistics.median(per_epoch[e] for e in timed) if timed else None,
            "per_epoch_patches_per_s": per_epoch, "epochs": s["epochs"], "train_patches": s["counts"]["train"],
            "preset": preset, "overrides": list(overrides), "precision": s["precision"], "seconds": s["seconds"],
            "gpu_busy_nvml_pct": busy.mean(steady), "gpu_busy_profiler_pct": None if busy_profiled is None
            else 100 * busy_profiled, "profiled_epoch": profiled.get("epoch"),
            "profiled_wall_s": profiled.get("wall_s"), "profiled_kernel_s": profiled.get("kernel_s"),
            "profile_table": profiled.get("table"), "val_iou_mining": s.get("val", {}).get("iou_mining")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, help="the .smpack of the dataset (fit; the authors' statistics)")
    parser.add_argument("--files", type=Path, required=True, help="the dataset's files (authors' per-file reads)")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json and the profile")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the authors' recipe")
    parser.add_argument("--only", nargs="+", default=["fit", "authors", "ceiling"],
                        choices=["authors", "ceiling", "fit"], help="measurements to run, in this order")
    parser.add_argument("--authors-steps", type=int, default=300)
    parser.add_argument("--ceiling", nargs="+", default=["eager", "eager-fused"],
                        choices=["eager", "eager-fused", "compiled", "compiled-fused"],
                        help="ceiling variants (compiling takes minutes)")
    parser.add_argument("--results", default="train_results.json", help="file name of the results under --out")
    parser.add_argument("--preset", default="unet-r50-all13", help="what fit trains")
    parser.add_argument("--set", nargs="*", default=[], help="overrides of fit's configuration")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                               "torch": torch.__version__}
    path = args.out / args.results

    def save() -> None:
        path.write_text(json.dumps(results, indent=1, default=str))

    for what in args.only:
        if what == "fit":
            with tempfile.TemporaryDirectory() as tmp:
                results["fit"] = fit_run(args.pack, args.epochs, Path(tmp) / "run", args.preset, tuple(args.set))
            table = results["fit"].pop("profile_table")
            if table:
                (args.out / args.results.replace(".json", "_profile.txt")).write_text(table)
            f = results["fit"]
            print(f"fit {args.preset} {' '.join(args.set)}: {f['patches_per_s']:.0f} patches/s (epochs "
                  f"{f['per_epoch_patches_per_s']}), GPU busy {f['gpu_busy_nvml_pct']}% (NVML), "
                  f"{f['gpu_busy_profiler_pct']}% (profiler, epoch {f['profiled_epoch']})", flush=True)
        elif what == "authors":
            results["authors"] = authors(args.files, args.pack, args.workers, steps=args.authors_steps)
            print(f"authors' recipe: {results['authors']['patches_per_s']:.1f} patches/s", flush=True)
        else:
            for variant in args.ceiling:
                compiled, fused = variant.startswith("compiled"), variant.endswith("fused")
                key = "ceiling_" + variant.replace("-", "_")
                results[key] = ceiling(128, compiled, steps=20, fused=fused)
                print(f"{key}: train {results[key]['train_patches_per_s']:.0f} patches/s, inference "
                      f"{results[key]['inference_patches_per_s']:.0f} patches/s (batch 128)", flush=True)
                save()
        save()
    if "fit" in results and "authors" in results and results["fit"]["patches_per_s"]:
        results["ratio_fit_over_authors"] = results["fit"]["patches_per_s"] / results["authors"]["patches_per_s"]
        print(f"ratio: {results['ratio_fit_over_authors']:.1f}x the authors' recipe", flush=True)
        save()


if __name__ == "__main__":
    main()

"""Training throughput: the authors' data path versus smallmines' on-device path, side by side.

The authors' recipe reads every sample from its GeoTIFF with rasterio on every epoch (through a
DataLoader at batch 4) and normalises it on the CPU. smallmines loads the split once into one
tensor, keeps it on the device and computes channels, z-scores and flips/rotations batched there.

Both paths are timed on the same machine, interleaved, for:

- ``data``: producing normalised, augmented batches only (no model);
- ``step``: data plus forward, backward and optimiser step of the same network;
- ``fit``: one epoch of ``smallmines.training.trainer.fit`` (Lightning included), as ``train_patches_per_s``.

Usage::

    python benchmarks/bench_train.py --write               # CPU: synthetic data, U-Net ResNet18
    python benchmarks/bench_train.py --data SmallMinesDS.zip --encoder resnet50 --batch-size 128 \\
        --precision bf16-mixed --compile                  # the H100 target (>= 3,000 patches/s)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import smallmines
from smallmines.bands import parse_bands
from smallmines.data.dataset import SmallMinesDS
from smallmines.models.registry import build_model
from smallmines.training.datamodule import DeviceBatches, SmallMinesDataModule
from smallmines.training.losses import CombinedLoss

SECTION = "## Training throughput"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def authors_batches(root: Path, bands: str, stats, batch_size: int, workers: int):
    """Per-file reads through a DataLoader, as the authors' recipe (normalisation on the CPU)."""
    dataset = SmallMinesDS(root, split="train", bands=bands, stats=stats, augment=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    while True:
        for batch in loader:
            yield {"image": batch["image"], "mask": batch["mask"]}


def fast_batches(dm: SmallMinesDataModule, batch_size: int, device: torch.device):
    """Device-resident split, batched normalisation and augmentation (what training uses)."""
    arrays = dm.load("train").to(device)
    epoch = 0
    while True:
        for batch in DeviceBatches(arrays, batch_size, shuffle=True, augment="dihedral",
                                   epoch=lambda current=epoch: current):
            yield dm.on_after_batch_transfer(batch, 0)
        epoch += 1


def throughput(batches, steps: int, device: torch.device, model=None, optimizer=None, loss=None,
               autocast: bool = False, channels_last: bool = False) -> float:
    """Patches per second over ``steps`` batches (after 2 warm-up batches)."""
    done = 0
    start = None
    for i, batch in enumerate(islice(batches, steps + 2)):
        if i == 2:
            _sync(device)
            start, done = time.perf_counter(), 0
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        if model is not None:
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                value = loss(model(image), mask)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
        done += image.shape[0]
    _sync(device)
    return done / (time.perf_counter() - start)


def fit_epoch(root: Path, args: argparse.Namespace) -> float:
    """``train_patches_per_s`` of the second epoch of a real ``fit`` run."""
    from smallmines.training.trainer import fit

    with tempfile.TemporaryDirectory() as tmp:
        result = fit("unet-r34-all13", [f"data.root={root}", f"data.bands={args.bands}",
                                        f"model.args.encoder={args.encoder}", f"train.batch_size={args.batch_size}",
                                        "train.epochs=2", f"train.precision={args.precision}",
                                        f"train.compile={str(args.compile).lower()}", "train.num_sanity_val_steps=0"],
                     out=Path(tmp) / "run")
        return result.summary["patches_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset (default: a 32-tile synthetic one)")
    parser.add_argument("--bands", default="all")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32, help="fast path batch size (authors: 4)")
    parser.add_argument("--authors-batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the authors' path")
    parser.add_argument("--steps", type=int, default=10, help="timed batches per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (best is reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-fit", action="store_true", help="skip the full fit() epoch measurement")
    parser.add_argument("--write", type=Path, nargs="?", const=Path(__file__).resolve().parents[1] / "BENCHMARKS.md",
                        help="append the run to the Training throughput section of this file (default BENCHMARKS.md)")
    args = parser.parse_args()
    device = torch.device(args.device)
    tmp = tempfile.TemporaryDirectory()
    root = args.data
    if root is None:
        from smallmines.data.synth.patches import synthesize_dataset

        root = synthesize_dataset(Path(tmp.name) / "synth", tiles=32, seed=0)
    start = time.perf_counter()
    dm = SmallMinesDataModule(root, bands=args.bands, batch_size=args.batch_size)
    dm.setup("fit")
    load_s = time.perf_counter() - start
    n_train = len(dm.load("train"))

    channels = parse_bands(args.bands)
    model = build_model("unet", channels, encoder=args.encoder).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = CombinedLoss({"ce": 1.0}, class_weights=[0.1, 0.9]).to(device)
    autocast = args.precision.startswith("bf16") and device.type == "cuda"
    authors = authors_batches(root, args.bands, dm.stats, args.authors_batch_size, args.workers)
    fast = fast_batches(dm, args.batch_size, device)
    results: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved; the best of the repeats filters out other load on the machine
        for label, batches in (("authors", authors), ("smallmines", fast)):
            value = throughput(batches, args.steps * (8 if label == "authors" else 1), device)
            results[f"{label} data"] = max(value, results.get(f"{label} data", 0.0))
        for label, batches in (("authors", authors), ("smallmines", fast)):
            value = throughput(batches, args.steps, device, model, optimizer, loss, autocast, channels_last)
            results[f"{label} step"] = max(value, results.get(f"{label} step", 0.0))
    if not args.no_fit:
        results["smallmines fit"] = fit_epoch(root, args)

    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    lines = [f"### {datetime.date.today().isoformat()}: {machine}; torch {torch.__version__}, smallmines "
             f"{smallmines.__version__}", "",
             f"U-Net {args.encoder}, bands {args.bands} ({len(channels)} channels), {n_train} training patches "
             f"(loaded once in {load_s:.1f} s); authors batch {args.authors_batch_size} with {args.workers} "
             f"workers, smallmines batch {args.batch_size}, precision {args.precision}; best of {args.repeats} "
             f"interleaved repetitions; load average {os.getloadavg()[0]:.1f}.", "",
             "| measurement | authors' path (patches/s) | smallmines (patches/s) | ratio |", "|---|---:|---:|---:|"]
    for kind in ("data", "step"):
        a, f = results[f"authors {kind}"], results[f"smallmines {kind}"]
        lines.append(f"| {kind} | {a:.1f} | {f:.1f} | {f / a:.1f}x |")
    if "smallmines fit" in results:
        lines.append(f"| fit epoch (Lightning) | – | {results['smallmines fit']:.1f} | – |")
    print("\n".join(lines))
    if args.write:
        append_run(args.write, "\n".join(lines))
        print(f"appended to {args.write}")
    tmp.cleanup()


def append_run(path: Path, block: str) -> None:
    """Add a run at the end of the ``## Training throughput`` section (created if missing), atomically."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\nProduced by `benchmarks/bench_train.py`; newest runs last.\n"
    start = text.index(SECTION)
    following = text.find("\n## ", start + len(SECTION))
    end = len(text) if following < 0 else following
    text = text[:end].rstrip("\n") + "\n\n" + block + "\n" + text[end:]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()

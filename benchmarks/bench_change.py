"""Bi-temporal change model against differencing two single-date maps, on the synthetic twin (issue 12).

For each seed: a synthetic dataset of that world seed, one site-grouped random split of that seed
(both years of a tile on the same side), then, with the same CPU time budget (``train.max_time``):

(a) the single-date ``tiny`` model (unet-lite) trained on the patches of both years; its two test
    predictions of each tile (thresholded at the validation-chosen threshold) are differenced into
    the 4 change classes;
(b) the bi-temporal ``change-tiny`` model (siamese-lite) trained on the pairs, predicting the 4
    classes directly;
(c) with ``--aux-weight W``, the same model with per-date auxiliary mining heads (``model.args.aux_weight=W``).

Both are scored on the test pairs against the twin's true change: the dataset masks are the world's
rendered masks (:func:`smallmines.data.synth.world.render`), so the change label of a pair is the
true change, 255 where either year has a nodata region. Usage::

    python benchmarks/bench_change.py --out /tmp/bench_change --tiles 96 --seeds 0 1 2 --max-time 3m
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from smallmines.bands import BAND_NAMES
from smallmines.data.synth import synthesize_dataset
from smallmines.training.change import (
    ChangeDataModule,
    change_confusion,
    change_scores,
    difference_change,
    evaluate_change,
)
from smallmines.training.datamodule import SplitArrays
from smallmines.training.evaluation import predict_batches
from smallmines.training.trainer import fit

COMMON = ["data.splits=random", "train.epochs=1000", "optimizer.scheduler=none", "optimizer.lr=3e-3",
          "train.patience=null"]
SHOWN = ("iou_new", "precision_new", "recall_new", "f1_new", "iou_persistent", "precision_ceased", "iou_ceased",
         "recall_ceased", "miou_change")


def differencing_scores(run, test: SplitArrays) -> dict:
    """Score the differenced predictions of a single-date model on the test pairs."""
    network, card = run.network, run.card
    half = len(test.bands) // 2
    mining = []
    for part in (slice(0, half), slice(half, 2 * half)):
        dates = SplitArrays(test.images[:, part], test.masks, tuple(BAND_NAMES), test.ids, test.years)
        probs = [p.cpu() for p, _ in predict_batches(network, dates, card.channels, card.stats, 16, "cpu")]
        mining.append((torch.cat(probs) >= card.threshold).numpy())
    pred = torch.from_numpy(difference_change(mining[0], mining[1]).astype(np.int64))
    return {"overall": change_scores(change_confusion(pred, test.masks.long()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/bench_change")
    parser.add_argument("--tiles", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-time", default="3m")
    parser.add_argument("--widths", default="[8, 16, 32, 64]")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every model for exactly this many epochs instead of the time budget")
    parser.add_argument("--aux-weight", type=float, default=0.0,
                        help="also train change-tiny with per-date auxiliary heads of this weight")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("lightning").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    methods = ("differencing", "bitemporal", *(("bitemporal-aux",) if args.aux_weight else ()))
    for seed in args.seeds:
        data = out / f"data-{seed}"
        if not (data / "SmallMinesDS").is_dir():
            synthesize_dataset(data, tiles=args.tiles, seed=seed)
        overrides = [f"data.root={data}", f"data.split_seed={seed}", f"train.seed={seed}",
                     f"train.max_time={args.max_time}", f"model.args.widths={args.widths}", *COMMON,
                     *([f"train.epochs={args.epochs}", "train.max_time=null"] if args.epochs else [])]
        row = {"seed": seed, "load_before": os.getloadavg()[0]}
        t0 = time.perf_counter()
        single = fit("tiny", overrides, out=out / f"tiny-{seed}")
        change = fit("change-tiny", overrides, out=out / f"change-{seed}")
        aux = fit("change-tiny", [*overrides, f"model.args.aux_weight={args.aux_weight}"],
                  out=out / f"change-aux-{seed}") if args.aux_weight else None
        row["train_s"] = time.perf_counter() - t0
        dm = ChangeDataModule(data, "all", "random", seed, 0.1)
        assert dm.split_hash() == single.summary["split_hash"] == change.summary["split_hash"]
        test = dm.load("test")
        row["test_pairs"] = len(test)
        row["differencing"] = differencing_scores(single, test)["overall"]
        row["bitemporal"] = evaluate_change(change.network, test, dm.date_channels, change.card.stats, 16,
                                            "cpu")["overall"]
        row["epochs"] = {"differencing": single.summary["epochs"], "bitemporal": change.summary["epochs"]}
        if aux is not None:
            assert aux.summary["split_hash"] == change.summary["split_hash"]
            row["bitemporal-aux"] = evaluate_change(aux.network, test, dm.date_channels, aux.card.stats, 16,
                                                    "cpu")["overall"]
            row["epochs"]["bitemporal-aux"] = aux.summary["epochs"]
        row["load_after"] = os.getloadavg()[0]
        rows.append(row)
        (out / "results.json").write_text(json.dumps(rows, indent=2, default=float))
        logging.info("seed %d: %s", seed, json.dumps({m: {k: round(row[m][k], 3) for k in SHOWN}
                                                      for m in methods if m in row}))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.tiles} tiles/seed, "
             + (f"{args.epochs} epochs per model" if args.epochs else f"max_time {args.max_time} per model")
             + f", widths {args.widths}"
             + (f", aux_weight {args.aux_weight:g}" if args.aux_weight else ""), "",
             "| seed | method | new IoU | new precision | new recall | persistent IoU | ceased IoU | ceased precision "
             "| ceased recall | epochs | load |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        for method in methods:
            s = row[method]
            lines.append(f"| {row['seed']} | {method} | {s['iou_new']:.3f} | {s['precision_new']:.3f} | "
                         f"{s['recall_new']:.3f} | {s['iou_persistent']:.3f} | {s['iou_ceased']:.3f} | "
                         f"{s['precision_ceased']:.3f} | {s['recall_ceased']:.3f} | {row['epochs'][method]} | "
                         f"{row['load_before']:.1f}-{row['load_after']:.1f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

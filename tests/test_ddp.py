"""Lightning DDP, exercised on CPU: two processes (gloo) train one run through the command line.

Multi-GPU training takes the same path (``train.devices=N``, ``train.strategy=ddp``), so this shows
that it starts, shards the data, agrees on the weights and writes one run folder from rank zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch without gloo")
def test_two_process_ddp_on_cpu_trains_one_run(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    # Lightning's DDP launcher starts rank 1 by running this same command line again
    command = [sys.executable, "-m", "smallmines", "train", "tiny", "--data", str(synth_root), "-o", str(out),
               "--epochs", "2", "--batch-size", "4", "--set", "train.accelerator=cpu", "--set", "train.devices=2",
               "--set", "train.strategy=ddp", "--set", "model.args={widths: [8, 16]}",
               "--set", "optimizer.scheduler=cosine", "--set", "train.precision=32-true"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["devices"] == 2 and summary["epochs"] == 2
    assert (out / "model.pt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    # each process takes every second sample of the epoch's permutation, so the two see the split once
    # per epoch together (less the dropped last batches), not once each
    per_epoch = summary["patches_per_s"] * summary["train_seconds"] / summary["epochs"]
    train = summary["counts"]["train"]
    assert train - 2 * 4 <= round(per_epoch) <= train, (per_epoch, train)
    assert "Traceback" not in run.stderr

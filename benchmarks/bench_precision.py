"""Training step throughput on CPU: fp32 against bf16 autocast, interleaved, best of 3.

Usage::

    python benchmarks/bench_precision.py

Each measurement is a forward/backward/AdamW step on random 13 x 128 x 128 batches: 15 timed steps
after 3 warm-up steps. Results go into BENCHMARKS.md by hand, with the machine, load and commit.
"""

from __future__ import annotations

import os
import time

import torch

import smallmines  # noqa: F401  (torchvision shim before smp)
from smallmines.bands import parse_bands
from smallmines.models.registry import build_model

NETWORKS = (("unet-lite", {"widths": [16, 32, 64, 128]}, 4), ("unet", {"encoder": "resnet34"}, 8))


def patches_per_s(name: str, args: dict, batch: int, bf16: bool, steps: int = 15) -> float:
    """Training-step throughput of one network at one precision."""
    torch.manual_seed(0)
    net = build_model(name, parse_bands("all"), **args)
    optimizer = torch.optim.AdamW(net.parameters())
    x, y = torch.randn(batch, 13, 128, 128), torch.randint(0, 2, (batch, 128, 128))
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, args, batch in NETWORKS:
        best = {False: 0.0, True: 0.0}
        for _ in range(3):
            for bf16 in (False, True):
                best[bf16] = max(best[bf16], patches_per_s(name, args, batch, bf16))
        print(f"{name} batch {batch}: fp32 {best[False]:.1f}, bf16 {best[True]:.1f} patches/s, "
              f"ratio {best[True] / best[False]:.2f}")


if __name__ == "__main__":
    main()

"""Quality bar on the synthetic twin: a small U-Net and the per-pixel LightGBM baseline, trained with
the same commands and scored with the same code, against all-background and random predictions.

Every score is mining IoU on the held-out official test split of a 48-tile synthetic dataset (96
patches), thresholds chosen on validation. The numbers are printed (``pytest -s``) and recorded in
BENCHMARKS.md.
"""

from __future__ import annotations

import pytest
import torch

from smallmines.evaluation import evaluate
from smallmines.training import fit

pytestmark = pytest.mark.slow


class _Constant(torch.nn.Module):
    """Predicts background everywhere."""

    def forward(self, x):
        zeros = torch.zeros(x.shape[0], 1, *x.shape[2:])
        return torch.cat((zeros, zeros - 10), dim=1)


class _Random(torch.nn.Module):
    """Predicts mining with probability 0.5 per pixel (seeded)."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x):
        margin = torch.randn(x.shape[0], 1, *x.shape[2:], generator=self.generator)
        return torch.cat((torch.zeros_like(margin), margin), dim=1)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from smallmines.synth import synthesize_dataset

    root = synthesize_dataset(tmp_path_factory.mktemp("quality_data"), tiles=48, seed=0)
    runs = tmp_path_factory.mktemp("quality_runs")
    unet = fit("tiny", [f"data.root={root}"], out=runs / "unet")
    lgbm = fit("pixel-lgbm", [f"data.root={root}"], out=runs / "lgbm")
    scores = {name: evaluate(run.model_path).overall for name, run in (("unet", unet), ("lgbm", lgbm))}
    for name, net in (("all_background", _Constant()), ("random", _Random())):
        scores[name] = evaluate((net, unet.card), root, threshold=0.5).overall
    print("\nmining IoU on test:", {k: round(v["iou_mining"], 4) for k, v in scores.items()})
    print("mean IoU on test:  ", {k: round(v["miou"], 4) for k, v in scores.items()})
    return scores


def test_trained_models_are_far_above_trivial_predictions(results):
    trivial = max(results["all_background"]["iou_mining"], results["random"]["iou_mining"])
    assert results["all_background"]["iou_mining"] == 0.0
    assert trivial < 0.2
    assert results["unet"]["iou_mining"] > trivial + 0.5
    assert results["lgbm"]["iou_mining"] > trivial + 0.5
    assert results["unet"]["miou"] > 0.85 and results["lgbm"]["miou"] > 0.85


@pytest.mark.xfail(strict=False, reason="the synthetic twin is close to separable per pixel (LightGBM reaches "
                                        "~0.92 mining IoU); the small U-Net needs more than CPU minutes to pass it")
def test_unet_beats_the_per_pixel_baseline(results):
    assert results["unet"]["iou_mining"] > results["lgbm"]["iou_mining"] + 0.02

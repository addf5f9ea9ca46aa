"""Shared models for the analysis tests: a small CNN trained on the real (embedded) digits, and
untrained tiny models for shape/plumbing tests."""

from __future__ import annotations

import pytest
import torch

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.models import CNN
from cnnsweep.transforms import Preprocess

# 10 epochs on 1,527 digits: ~2 s on one core, val/acc ~0.97 (chance 0.10)
DIGITS = {"data": {"name": "digits"}, "model": {"num_stages": 2, "width": 16, "convs_per_stage": 1},
          "sched": {"name": "onecycle"}, "train": {"epochs": 10, "lr": 5e-3, "batch_size": 64}}


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    """(LoadedModel, ImageDataset): a small CNN trained on digits, reloaded from its checkpoint."""
    cfg = validate_config(DIGITS)
    dataset = load_dataset(cfg.data)
    out = tmp_path_factory.mktemp("digits_run")
    result = fit(cfg, dataset, LocalHooks(output=out))
    assert result.metrics["val/acc"] > 0.9  # the class-image test needs a model that learned
    return load_model_from_checkpoint(out / "checkpoints"), dataset


@pytest.fixture
def tiny_rgb():
    """(untrained 3-stage CNN for 3 x 16 x 16, its Preprocess, 4 random uint8 images)."""
    torch.manual_seed(0)
    model = CNN(num_classes=5, in_channels=3, image_size=16, num_stages=3, width=4, convs_per_stage=1).eval()
    pre = Preprocess(source_size=(16, 16), source_channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return model, pre, images


# ---------------------------------------------------------------------------- `cnnsweep analyze` tests


def tiny_config(name: str, **model) -> dict:
    return {"name": name, "data": {"name": "digits", "val_fraction": 0.2},
            "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1} | model,
            "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "amp": "off"}}


def train_tiny(out, name: str = "digits-analysis", **model):
    """A real training run of a tiny CNN on digits (about a second); returns its checkpoint folder."""
    from pathlib import Path

    cfg = validate_config(tiny_config(name, **model))
    hooks = LocalHooks(output=out)
    fit(cfg, load_dataset(cfg.data), hooks)
    return Path(hooks.last_checkpoint)


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("digits-analyze-run"))


@pytest.fixture
def tiny_metrics():
    """tiny_metrics(**changes) -> the smallest AnalysisMetrics a report can be drawn from: one model, empty
    sections (the file's shape, no model or data)."""
    from cnnsweep.analysis.metrics_file import AnalysisMetrics

    scores = {"num_images": 4, "accuracy": 0.75, "precision_macro": 0.8, "recall_macro": 0.75, "f1_macro": 0.7,
              "precision_weighted": 0.8, "recall_weighted": 0.75, "f1_weighted": 0.7, "top5_accuracy": 1.0,
              "top_k": 3, "log_loss": 0.5, "num_errors": 1, "seconds": 0.01, "images_per_s": 400.0}
    raw = {"target": {"kind": "checkpoint", "path": "/r/checkpoint.pt"}, "split": "valid", "notes": ["a note"],
           "output": "/r/analysis", "data": {"name": "digits", "root": None, "num_images": 4,
                                             "class_names": ["a", "b", "c", "d"]},
           "models": [{"name": "checkpoint", "trial_id": None, "source": "/r/checkpoint.pt",
                       "predictions": ["predictions.npz", "predictions.csv"], "summary": scores}],
           "per_class": {"model": "checkpoint", "table": []}, "data_analysis": {"num_images": 8}, "seconds": 1.5}
    return lambda **changes: AnalysisMetrics.model_validate(raw | changes)

"""Assemble a model from its config section (`build_model(cfg.model, ...)`)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from cnnsweep.config import ModelConfig
from cnnsweep.models.freeze import apply_freeze
from cnnsweep.models.registry import create_model


def model_args(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """Keyword arguments for `create_model(**args)` that rebuild the architecture without any
    weights: what a checkpoint stores as `model_args` (its state_dict supplies the weights).
    The family's config section says which `model.*` fields are its own (`family_args`)."""
    args: dict[str, Any] = {"name": cfg.name, "num_classes": num_classes,
                            "in_channels": in_channels, "image_size": image_size}
    return args | cfg.family_args()


def build_model(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The model for a run: architecture, pretrained weights (the family finds them), then freezing."""
    args = model_args(cfg, num_classes, in_channels, image_size)
    model = create_model(**args, pretrained=cfg.pretrained, weights=cfg.weights)
    return apply_freeze(model, cfg.freeze, cfg.freeze_stages)

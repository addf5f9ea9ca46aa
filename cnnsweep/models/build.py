"""Assemble a model from its config section (`build_model(cfg.model, ...)`)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from cnnsweep.config import ModelConfig
from cnnsweep.models.cnn import CNN_ARGS
from cnnsweep.models.freeze import apply_freeze
from cnnsweep.models.registry import ModelError, create_model


def model_args(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """Keyword arguments for `create_model(**args)` that rebuild the architecture without any
    weights: what a checkpoint stores as `model_args` (its state_dict supplies the weights)."""
    args: dict[str, Any] = {"name": cfg.name, "num_classes": num_classes,
                            "in_channels": in_channels, "image_size": image_size}
    if cfg.name == "cnn":
        args.update({k: getattr(cfg, k) for k in CNN_ARGS})
    return args


def build_model(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The model for a run: architecture, offline pretrained weights (timm), then freezing."""
    args = model_args(cfg, num_classes, in_channels, image_size)
    if cfg.name == "cnn":
        if cfg.pretrained and not cfg.weights:
            raise ModelError("model.pretrained=true: the cnn family has no published weights; set "
                             "model.weights to a local file (e.g. a cnnsweep checkpoint.pt) or use timm/<name>")
        model = create_model(**args)
        if cfg.weights:
            from cnnsweep.models.weights import load_weights

            load_weights(model, cfg.weights)
    else:
        model = create_model(**args, pretrained=cfg.pretrained, weights=cfg.weights)
    return apply_freeze(model, cfg.freeze, cfg.freeze_stages)

"""`timm/<name>`: any timm model, for transfer learning.

cnnsweep picks the weights file (weights.py): `weights` (a local file), else the Hugging Face cache entry
named by the model's `pretrained_cfg["hf_hub_id"]`, else (online, no HF_HUB_OFFLINE) huggingface_hub's
download into that cache; nothing found -> ModelError saying where to put the weights. timm reads it
(weights only) and loads it: `timm.create_model(pretrained=True)` with the file's tensors as the
`pretrained_cfg_overlay` state dict, so timm's own head reset, input-conv adaptation and
per-architecture checkpoint filter apply.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch.nn as nn

from cnnsweep.models.freeze import zero_init_classifier
from cnnsweep.models.registry import ModelError, register_model
from cnnsweep.models.weights import (LoadedWeights, check_complete, find_cached_weights, hf_cache_dir,
                                     hub_offline, hub_reachable, load_state_dict_file, mismatch_error,
                                     resolve_pretrained, source_cfg)

log = logging.getLogger(__name__)


def _create_timm(model_name: str, num_classes: int, in_channels: int, image_size: int,
                 **kwargs: Any) -> nn.Module:
    import timm

    try:
        # ViT-style models fix their position-embedding grid at construction, so they need img_size.
        return timm.create_model(model_name, num_classes=num_classes, in_chans=in_channels,
                                 img_size=image_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
    # CNNs take any input size and reject the img_size argument.
    return timm.create_model(model_name, num_classes=num_classes, in_chans=in_channels, **kwargs)


def _first(names: Any) -> Optional[str]:
    return names[0] if isinstance(names, (tuple, list)) else names  # distilled models: (head, head_dist)


def _create_pretrained(model_name: str, num_classes: int, in_channels: int, image_size: int,
                       weights: Optional[str], **kwargs: Any) -> tuple[nn.Module, LoadedWeights]:
    """timm builds the model and loads the file's tensors (see module doc); then refuse a partial load."""
    from timm.models import get_pretrained_cfg

    pcfg = get_pretrained_cfg(model_name)
    path = weights or str(resolve_pretrained(f"timm/{model_name}", *_hub_source(model_name)))
    sd = load_state_dict_file(path)
    shapes = {k: v.shape for k, v in sd.items()}
    cfg = source_cfg(sd, _first(pcfg.classifier), _first(pcfg.first_conv), tuple(pcfg.input_size[1:]))
    try:
        model = _create_timm(model_name, num_classes, in_channels, image_size, pretrained=True,
                             pretrained_cfg_overlay=dict(cfg, state_dict=sd), **kwargs)
    except RuntimeError as err:  # a tensor of another shape, an inconsistent stem
        raise mismatch_error(path, err) from None
    model.pretrained_cfg.pop("state_dict", None)  # the model's own tensors are the only copy to keep
    return model, check_complete(model, shapes, cfg, path)


def _hub_source(model_name: str) -> tuple[Optional[str], Optional[str]]:
    """(hf_hub_id, hf_hub_filename) of timm's default pretrained tag, without building the model."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    return (cfg.hf_hub_id, getattr(cfg, "hf_hub_filename", None)) if cfg is not None else (None, None)


def check_timm(model_name: str, pretrained: bool = False, weights: Optional[str] = None) -> Optional[str]:
    """Availability (see availability.py): the name in timm; for pretrained, weights reachable."""
    import timm

    if not timm.is_model(model_name):
        return f"unknown timm model {model_name!r}: check the spelling against timm.list_models()"
    if not pretrained or weights:
        return None
    hf_hub_id, filename = _hub_source(model_name)
    if hf_hub_id is None:
        return f"timm names no pretrained weights for {model_name}: set model.weights, or model.pretrained=false"
    if find_cached_weights(hf_hub_id, filename) is not None:
        return None
    repo = hf_hub_id.partition("@")[0]
    fix = (f"put {repo} into {hf_cache_dir()}/models--{repo.replace('/', '--')} (`hf download {repo}` "
           "where there is network), or set model.weights to a local file")
    if hub_offline():
        return f"weights not in the Hugging Face cache and HF_HUB_OFFLINE=1: {fix}"
    problem = hub_reachable(hf_hub_id, filename)
    return None if problem is None else f"weights not in the Hugging Face cache and the hub is unreachable ({problem}): {fix}"


PRETRAINED_MIN_FRACTION = 0.25  # below 1/4 of the pretraining side, pretrained filters see mostly blur


def check_input_size(model: nn.Module, model_name: str, image_size: int, *, pretrained: bool) -> None:
    """Backbones with a minimum or fixed input size: a clear error naming `data.image_size` instead of a
    shape error deep in the forward pass; a warning when pretrained weights meet far smaller images than
    they were trained on (GTSRB's 32x32 vs ImageNet's 224x224: resize with `data.image_size`)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    side = (cfg.get("input_size") or (3, image_size, image_size))[-1]
    minimum = (cfg.get("min_input_size") or (3, 1, 1))[-1]
    if image_size < minimum:
        raise ModelError(f"timm/{model_name} needs inputs of at least {minimum}x{minimum}; set "
                         f"data.image_size: {minimum} (or more; images are resized in preprocessing)")
    if cfg.get("fixed_input_size") and pretrained and image_size != side:
        raise ModelError(f"timm/{model_name}'s pretrained weights need {side}x{side} inputs; set data.image_size: {side}")
    if pretrained and image_size < PRETRAINED_MIN_FRACTION * side:
        log.warning("timm/%s was pretrained at %dx%d but sees %dx%d images: consider data.image_size: %d "
                    "(preprocessing resizes; slower per image)", model_name, side, side, image_size, image_size,
                    side // 2)


@register_model("timm/", check=check_timm)
def create_timm_model(model_name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                      pretrained: bool = False, weights: Optional[str] = None,
                      **kwargs: Any) -> nn.Module:
    """A timm model; with `pretrained` (or a `weights` file) its backbone weights are loaded (see above)."""
    import timm

    if not timm.is_model(model_name):
        raise ModelError(f"unknown timm model {model_name!r}; see timm.list_models()")
    if not (pretrained or weights):
        model = _create_timm(model_name, num_classes, in_channels, image_size, pretrained=False, **kwargs)
        check_input_size(model, model_name, image_size, pretrained=False)
        return model
    model, report = _create_pretrained(model_name, num_classes, in_channels, image_size, weights, **kwargs)
    if report.skipped:  # the file's head was for other classes: a new one, started at zero
        zero_init_classifier(model)
    check_input_size(model, model_name, image_size, pretrained=True)
    log.info("timm/%s: loaded %d tensors from %s; head re-initialised: %s; input conv adapted: %s",
             model_name, report.num_loaded, report.path, report.skipped or "no", report.adapted or "no")
    return model

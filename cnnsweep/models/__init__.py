"""Model registry: the `cnn` family, `timm/<name>` and `torchvision/<name>` (offline weights, freezing).
Pure torch, no ray.

    create_model(name, num_classes, in_channels=3, image_size=32, **cfg)  # registry look-up
    build_model(cfg.model, num_classes, in_channels, image_size)          # from config (+weights, freeze)
    model_args(cfg.model, ...)          # create_model kwargs a checkpoint stores to rebuild the model
    param_groups(model, cfg.model, lr, backbone_lr_scale[, stn_lr_scale])  # optimizer groups
"""

from cnnsweep.models import cnn as _cnn  # noqa: F401  (registers "cnn")
from cnnsweep.models import timm_models as _timm_models  # noqa: F401  (registers "timm/")
from cnnsweep.models import torchvision_models as _torchvision_models  # noqa: F401  (registers "torchvision/")
from cnnsweep.models.build import build_model, model_args
from cnnsweep.models.cnn import CNN
from cnnsweep.models.freeze import (BackboneWarmup, apply_freeze, classifier_module, classifier_param_names,
                                    param_groups, stage_param_names)
from cnnsweep.models.registry import ModelError, create_model, list_models, register_model
from cnnsweep.models.weights import LoadedWeights, load_weights

__all__ = [
    "BackboneWarmup", "CNN", "LoadedWeights", "ModelError", "apply_freeze", "build_model", "classifier_module",
    "classifier_param_names", "create_model", "list_models", "load_weights", "model_args", "param_groups", "register_model",
    "stage_param_names",
]

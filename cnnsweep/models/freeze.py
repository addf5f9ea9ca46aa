"""Freezing and optimizer parameter groups for fine-tuning (every model family).

Stages come from timm's `group_matcher(coarse=True)` (the same grouping timm uses for layer-wise lr
decay): group 0 is the stem when the matcher names one, then one group per block stage
(resnet: layer1..layer4; efficientnet: blocks.0..), and the classifier's group last. `freeze_stages=N`
freezes the stem plus the first N stages. A model without a `group_matcher` falls back to module order:
each top-level child that holds parameters (the classifier's excluded) is one stage, with no stem.
The cnn family defines `group_matcher` itself: one group per conv stage, no stem.

Frozen BatchNorm layers are pinned to eval mode (see `_pin_eval`), so their running statistics stay
the pretrained ones; otherwise `model.train()` would let them drift on the new data.
"""

from __future__ import annotations

from typing import Any, Optional

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnsweep.models.registry import ModelError


# Where torchvision's classification models keep their head (resnet/regnet/inception `fc`, vit
# `heads.head`, swin `head`, vgg/efficientnet/mobilenet/convnext/squeezenet `classifier`), in look-up order.
HEAD_ATTRS = ("fc", "heads", "head", "classifier")


def _last_layer(module: nn.Module) -> Optional[tuple[str, nn.Module]]:
    """The last Linear or Conv2d in `module` (itself included): the layer that outputs the classes."""
    found = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return found[-1] if found else None


def classifier_module(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the classifier: timm's `get_classifier()`; else the last Linear/Conv2d of the
    first torchvision head attribute (HEAD_ATTRS; squeezenet's head is a 1x1 conv); else the last Linear."""
    names = {id(m): n for n, m in model.named_modules()}
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Module) and id(head) in names:
        return names[id(head)], head
    for attr in HEAD_ATTRS:
        found = _last_layer(getattr(model, attr)) if isinstance(getattr(model, attr, None), nn.Module) else None
        if found is not None:
            return ".".join(p for p in (attr, found[0]) if p), found[1]
    last = next(((n, m) for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)
    if last is None:
        raise ModelError(f"{type(model).__name__}: cannot find the classifier (no get_classifier, no "
                         f"{'/'.join(HEAD_ATTRS)}, no Linear)")
    return last


def zero_init_classifier(model: nn.Module) -> None:
    """Start a freshly made Linear head on pretrained features at zero (BiT's fine-tuning recipe,
    Kolesnikov et al. 2020). Random heads give logits far from ln(classes) loss (timm's EfficientNet init,
    uniform +-1/sqrt(num_classes), makes logits of std ~5-15 on unit features), and those first large,
    random gradients flow into the backbone and erase what it learned. At zero the loss starts at
    ln(classes) and the backbone only moves once the head points somewhere. A conv head followed by a
    ReLU (squeezenet) keeps its small random init: at zero the ReLU would pass no gradient."""
    head = classifier_module(model)[1]
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


def classifier_param_names(model: nn.Module) -> set[str]:
    """Names of the classifier's parameters (the module `classifier_module` finds)."""
    head = classifier_module(model)[1]
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def stage_param_names(model: nn.Module) -> tuple[list[str], list[list[str]]]:
    """(stem parameter names, [names per stage]) in forward order; the classifier is in neither."""
    head = classifier_param_names(model)
    if hasattr(model, "group_matcher"):
        from timm.models import group_parameters

        matcher = model.group_matcher(coarse=True)
        groups = list(group_parameters(model, matcher).values())
        has_stem = isinstance(matcher, dict) and "stem" in matcher
    else:  # fallback: top-level children in registration order
        groups = [[f"{c}.{n}" for n, _ in child.named_parameters()]
                  for c, child in model.named_children()]
        has_stem = False
    groups = [g for g in groups if g and not head.intersection(g)]
    if has_stem and groups:
        return groups[0], groups[1:]
    return [], groups


def _pin_eval(module: nn.Module, args: Any) -> None:
    # Trick: a forward pre-hook re-pins a frozen BN to eval mode on every call, because model.train()
    # sets it back to train mode. Unlike swapping in FrozenBatchNorm2d, the state_dict keys stay
    # identical, so checkpoints load into an unfrozen model (export, serving) unchanged.
    module.training = False


def _freeze(model: nn.Module, names: set[str]) -> list[Any]:
    """requires_grad=False for `names`; pins the now fully frozen BatchNorms. Returns the hook handles."""
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad_(False)
    handles = []
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, _BatchNorm) and params and not any(p.requires_grad for p in params):
            handles.append(m.register_forward_pre_hook(_pin_eval))
    return handles


class BackboneWarmup:
    """`model.freeze_epochs`: the backbone (all but the classifier) frozen while epoch < N, then trainable.

    The phase is a function of the epoch number alone, so a run resumed at epoch >= N is unfrozen
    and one resumed earlier is frozen again. Parameters `model.freeze` froze stay frozen in both
    phases. Build the optimizer groups before the first `set_epoch` (they must hold the backbone)."""

    def __init__(self, model: nn.Module, epochs: int):
        head = classifier_param_names(model)
        self.model, self.epochs = model, epochs
        self.names = {n for n, p in model.named_parameters() if p.requires_grad and n not in head}
        self.frozen = False
        self._handles: list[Any] = []

    def set_epoch(self, epoch: int) -> bool:
        """Apply the phase of `epoch`; True when the set of trainable parameters changed."""
        want = epoch < self.epochs
        if want == self.frozen:
            return False
        if want:
            self._handles = _freeze(self.model, self.names)
        else:
            for n, p in self.model.named_parameters():
                if n in self.names:
                    p.requires_grad_(True)
            for h in self._handles:
                h.remove()
            self._handles = []
        self.frozen = want
        return True


def apply_freeze(model: nn.Module, freeze: str, freeze_stages: int = 0) -> nn.Module:
    """freeze: "none" | "backbone" (all but the classifier) | "stages" (stem + first freeze_stages)."""
    if freeze_stages and freeze != "stages":
        raise ModelError(f"model.freeze_stages={freeze_stages} only applies with model.freeze=stages "
                         f"(model.freeze={freeze})")
    if freeze == "none":
        return model
    if freeze == "backbone":
        head = classifier_param_names(model)
        _freeze(model, {n for n, _ in model.named_parameters() if n not in head})
    elif freeze == "stages":
        stem, stages = stage_param_names(model)
        if freeze_stages > len(stages):
            raise ModelError(f"model.freeze_stages={freeze_stages}, but {type(model).__name__} has "
                             f"{len(stages)} stages; use model.freeze=backbone to freeze them all")
        if freeze_stages:
            _freeze(model, set(stem).union(*stages[:freeze_stages]))
    else:
        raise ModelError(f"model.freeze: unknown value {freeze!r} (none, backbone, stages)")
    return model


def _stn_param_names(model: nn.Module) -> set[str]:
    """Names of the spatial transformer's parameters (the cnn family's `model.stn`), if it has one."""
    stn = getattr(model, "stn", None)
    return {n for n, _ in stn.named_parameters(prefix="stn")} if isinstance(stn, nn.Module) else set()


def param_groups(model: nn.Module, cfg_model: Any, lr: float, backbone_lr_scale: float,
                 stn_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer groups of trainable parameters: when fine-tuning loaded weights
    (model.pretrained or model.weights), the classifier at `lr` and the backbone at
    `lr * backbone_lr_scale`, so the pretrained features move slowly; otherwise one group at `lr`.
    A spatial transformer (model.stn) gets its own group at `stn_lr_scale` times the rate it would
    otherwise have: its warp feeds every later layer, so a large early step can swing it far from the
    identity and stall the stages behind it (the usual remedy in STN implementations: a lower rate).
    Each group carries "name" and its own "lr" (schedulers scale every group's lr alike)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ModelError("the model has no trainable parameters (everything is frozen)")
    tuning = bool(cfg_model.pretrained or cfg_model.weights)
    head = classifier_param_names(model) if tuning else set()
    stn = _stn_param_names(model)
    base = ("backbone", lr * backbone_lr_scale) if tuning else ("all", lr)
    rates = dict([("head", lr), base, ("stn", base[1] * stn_lr_scale)])  # group name -> lr, in order

    def group_of(name: str) -> str:
        return "head" if name in head else "stn" if name in stn else base[0]

    groups = [{"name": g, "params": [p for n, p in trainable if group_of(n) == g], "lr": glr}
              for g, glr in rates.items()]
    return [g for g in groups if g["params"]]

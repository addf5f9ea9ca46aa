"""Optimizers and learning-rate schedules, each built from its own config section."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from cnnsweep.config import OptimConfig, SchedConfig


def split_weight_decay(model: nn.Module, param_groups: Iterable[dict], weight_decay: float) -> list[dict]:
    """Each group in two: weight decay 0 for what timm's `param_groups_weight_decay` exempts (1-D
    parameters: normalisation scales/shifts and biases, plus the model's `no_weight_decay()` names),
    `weight_decay` for the rest. Decay pulls BatchNorm scales toward 0, which only fights the next
    layer's rescaling, and biases do not grow with the input, so decaying them is pure regularisation
    noise. The halves keep their group's name and lr."""
    from timm.optim import param_groups_weight_decay

    skip = getattr(model, "no_weight_decay", lambda: set())()
    exempt = {id(p) for g in param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
              if g["weight_decay"] == 0.0 for p in g["params"]}
    out = []
    for group in param_groups:
        params = list(group["params"])
        for decay, chosen in ((weight_decay, [p for p in params if id(p) not in exempt]),
                              (0.0, [p for p in params if id(p) in exempt])):
            if chosen:
                out.append({**group, "params": chosen, "weight_decay": decay})
    return out


def build_optimizer(param_groups: Iterable[dict], cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """param_groups: from `cnnsweep.models.param_groups` (backbone groups carry a smaller lr), split by
    `split_weight_decay` (groups that carry their own weight_decay keep it)."""
    groups = list(param_groups)
    for g in groups:
        g.setdefault("lr", lr)
        g["initial_lr"] = g["lr"]  # schedulers scale each group from its own base lr
    wd = cfg.weight_decay
    if cfg.name in ("sgd", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=wd,
                               nesterov=cfg.name == "nesterov")
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    return torch.optim.RMSprop(groups, lr=lr, momentum=cfg.momentum, weight_decay=wd)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedConfig, *, epochs: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimizer-step schedule (so it is independent of dataset size and accumulation)."""
    total = max(1, epochs * steps_per_epoch)
    if cfg.name == "onecycle":
        max_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total)
    if cfg.name == "step":
        step = cfg.step_epochs * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cfg.gamma ** (s // step))
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))

    def cosine(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        progress = (s - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)

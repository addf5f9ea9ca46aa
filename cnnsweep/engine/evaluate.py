"""Evaluation: loss, accuracy and macro precision/recall/F1 (scikit-learn) over a whole split."""

from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch import nn

from cnnsweep.engine.amp import AmpSettings
from cnnsweep.metrics import key

log = logging.getLogger(__name__)


@torch.no_grad()
def _predict_batches(model: nn.Module, images: torch.Tensor, normalize: Callable, batch_size: int,
                     amp: Optional[AmpSettings]) -> torch.Tensor:
    out = []
    for start in range(0, images.shape[0], batch_size):
        xb = normalize(images[start:start + batch_size])
        with amp.autocast() if amp else torch.autocast("cpu", enabled=False):
            out.append(model(xb).float())
    return torch.cat(out) if out else torch.empty(0, device=images.device)


def predict_logits(model: nn.Module, images: torch.Tensor, normalize: Callable, *, batch_size: int,
                   amp: Optional[AmpSettings] = None) -> torch.Tensor:
    """fp32 logits for uint8 `images` (N x C x H x W, on the model's device), in eval mode.
    On a CUDA out-of-memory error the batch is halved and the pass retried."""
    was_training = model.training
    model.eval()
    try:
        while True:
            try:
                return _predict_batches(model, images, normalize, batch_size, amp)
            except torch.OutOfMemoryError:
                if batch_size <= 1:
                    raise
                torch.cuda.empty_cache()
                batch_size //= 2
                log.warning("CUDA out of memory in evaluation: batch halved to %d", batch_size)
    finally:
        model.train(was_training)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                           prefix: str) -> dict[str, float]:
    labels = list(range(num_classes))
    p, r, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                                  zero_division=0)
    return {key(prefix, "acc"): float(accuracy_score(y_true, y_pred)),
            key(prefix, "precision_macro"): float(p), key(prefix, "recall_macro"): float(r),
            key(prefix, "f1_macro"): float(f1)}


def _gather(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """all_gather of equal-length 1-D tensors (callers pad with -1)."""
    parts = [torch.empty_like(t) for _ in range(world_size)]
    dist.all_gather(parts, t)
    return torch.stack(parts, 1).flatten()  # undo the rank::world_size interleaving


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize: Callable, *,
             num_classes: int, prefix: str, batch_size: int, amp: Optional[AmpSettings] = None,
             rank: int = 0, world_size: int = 1) -> dict[str, float]:
    """Metrics over the whole split. With several workers each evaluates the strided shard
    rank::world_size and the predictions are all-gathered, so every worker returns the same numbers."""
    n = labels.shape[0]
    per_rank = -(-n // world_size)
    idx = torch.arange(rank, per_rank * world_size, world_size, device=labels.device)
    valid = idx < n
    idx = idx.clamp(max=n - 1)  # pad the last shard by repeating a sample, then mask it out
    logits = predict_logits(model, images[idx], normalize, batch_size=batch_size, amp=amp)
    y = labels[idx]
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    pred = torch.where(valid, logits.argmax(1), -1)
    y = torch.where(valid, y, -1)
    losses = torch.where(valid, losses, torch.zeros_like(losses))
    if world_size > 1:
        pred, y, losses = (_gather(t, world_size) for t in (pred, y, losses))
    keep = y >= 0
    y_np, p_np = y[keep].cpu().numpy(), pred[keep].cpu().numpy()
    metrics = classification_metrics(y_np, p_np, num_classes, prefix)
    metrics[key(prefix, "loss")] = float(losses.sum().item() / max(1, int(keep.sum().item())))
    return metrics

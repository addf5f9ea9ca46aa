"""One optimizer step over a per-worker batch, split into micro-batches (gradient accumulation)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from cnnsweep.engine.amp import AmpSettings

log = logging.getLogger(__name__)


@dataclass
class StepState:
    """Everything a step mutates. `micro_batch` can shrink at run time after a CUDA OOM."""

    model: nn.Module  # possibly DDP-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: AmpSettings
    loss_fn: nn.Module
    micro_batch: int  # samples per forward/backward on this worker
    grad_clip: Optional[float] = None  # max global L2 norm
    num_oom_retries: int = 0


def _sync_context(model: nn.Module, sync: bool):
    # DDP all-reduces gradients in every backward(); on non-boundary micro-steps that traffic is
    # wasted because the optimizer does not step yet, so `no_sync` defers it to the last micro-step.
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _accumulate(state: StepState, x: torch.Tensor, y: torch.Tensor,
                prepare: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward every micro-batch; returns (sum of losses x samples, num correct) as device
    tensors: calling .item() here would stall the GPU pipeline once per micro-step."""
    n = x.shape[0]
    chunks = range(0, n, state.micro_batch)
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i, start in enumerate(chunks):
        xb, yb = prepare(x[start:start + state.micro_batch]), y[start:start + state.micro_batch]
        with _sync_context(state.model, sync=i == len(chunks) - 1):
            with state.amp.autocast():
                logits = state.model(xb)
                loss = state.loss_fn(logits.float(), yb)
            # Weight each micro-batch by its share of the batch, so the accumulated gradient equals
            # the gradient of the mean loss over the whole batch (exactly, for equal chunks).
            state.scaler.scale(loss * (yb.shape[0] / n)).backward()
        loss_sum += loss.detach() * yb.shape[0]
        correct += (logits.detach().argmax(1) == yb).sum()
    return loss_sum, correct


def _apply_update(state: StepState) -> None:
    if state.grad_clip is not None:
        # Unscale first: clipping fp16-scaled gradients would compare against a threshold
        # that is off by the (changing) loss scale.
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), state.grad_clip)
    state.scaler.step(state.optimizer)  # skips the step if fp16 gradients overflowed
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()


def train_step(state: StepState, x: torch.Tensor, y: torch.Tensor,
               prepare: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor | int]:
    """One optimizer step on this worker's batch `x` (uint8, prepared by `prepare` per micro-batch).

    On a CUDA out-of-memory error the micro-batch is halved (so accumulation steps double and the
    effective batch is unchanged), the partial gradients are dropped, and the step is retried.
    Returns {"loss": mean loss, "correct": count, "n": samples}; loss and correct stay on the device.
    """
    while True:
        try:
            loss_sum, correct = _accumulate(state, x, y, prepare)
            break
        except torch.OutOfMemoryError:
            if state.micro_batch <= 1:
                raise
            state.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            state.micro_batch //= 2
            state.num_oom_retries += 1
            log.warning("CUDA out of memory: micro-batch halved to %d (accumulation x2, same effective batch)",
                        state.micro_batch)
    _apply_update(state)
    n = x.shape[0]
    return {"loss": loss_sum / n, "correct": correct, "n": n}

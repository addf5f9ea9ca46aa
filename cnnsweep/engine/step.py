"""One optimizer step over a per-worker batch, split into micro-batches (gradient accumulation).

Under DDP, a CUDA out-of-memory error on one rank must not change what the others do: a rank that
halves its micro-batch and retries alone runs a different number of backward passes than the rest,
so the ranks' gradient all-reduces no longer line up (a hang, or "Expected to have finished
reduction"). So with several ranks every micro-step runs under `no_sync` (no collective inside the
forward/backward passes, where an OOM can strike), the ranks then all-reduce an OOM flag, and
either all retry with half the micro-batch or all average their gradients explicitly, in ~25 MiB
flattened buckets like DDP's. The cost: the gradient all-reduce no longer overlaps the last backward
pass (benchmarks/ddp_step.py measures what that costs; BENCHMARKS.md has the figures).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
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


def _is_distributed(model: nn.Module) -> bool:
    return (hasattr(model, "no_sync") and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def _accumulate(state: StepState, x: torch.Tensor, y: torch.Tensor, normalize: Callable,
                sync_last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward every micro-batch; returns (sum of losses x samples, num correct) as device
    tensors: calling .item() here would stall the GPU pipeline once per micro-step.
    `sync_last=False` keeps DDP from reducing gradients in the last backward too (see module doc)."""
    n = x.shape[0]
    chunks = range(0, n, state.micro_batch)
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i, start in enumerate(chunks):
        xb, yb = normalize(x[start:start + state.micro_batch]), y[start:start + state.micro_batch]
        with _sync_context(state.model, sync=sync_last and i == len(chunks) - 1):
            with state.amp.autocast():
                logits = state.model(xb)
                loss = state.loss_fn(logits.float(), yb)
            # Weight each micro-batch by its share of the batch, so the accumulated gradient equals
            # the gradient of the mean loss over the whole batch (exactly, for equal chunks).
            state.scaler.scale(loss * (yb.shape[0] / n)).backward()
        loss_sum += loss.detach() * yb.shape[0]
        correct += (logits.detach().argmax(1) == yb).sum()
    return loss_sum, correct


def _no_forward_collectives(model: nn.Module) -> None:
    """Stop DDP from broadcasting buffers at the start of the next forward. DDP clears this flag at the
    end of a no_sync forward; a forward that raised OOM never got there, so that rank alone would
    broadcast next time and the ranks' collectives would no longer match. `_average_gradients`
    broadcasts the buffers instead, once per step, on every rank."""
    if hasattr(model, "require_forward_param_sync"):
        model.require_forward_param_sync = False


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is True on any rank (one tiny all-reduce)."""
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


BUCKET_CAP_BYTES = 25 * 2**20  # DDP's default bucket_cap_mb: big enough to amortise a collective's latency


def _buckets(tensors: list[torch.Tensor], cap_bytes: int) -> list[list[torch.Tensor]]:
    """Consecutive runs of same-dtype, same-device tensors of at most `cap_bytes` (a larger tensor alone)."""
    out: list[list[torch.Tensor]] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        last = out[-1] if out else None
        if last is None or size + nbytes > cap_bytes or (last[0].dtype, last[0].device) != (t.dtype, t.device):
            out.append([])
            size = 0
        out[-1].append(t)
        size += nbytes
    return out


def _flat_collective(tensors: list[torch.Tensor], collective: Callable, cap_bytes: int) -> None:
    """Run `collective(flat, async_op=True)` once per bucket, all buckets in flight, then copy back."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    flats = [(bucket, _flatten_dense_tensors(bucket)) for bucket in _buckets(tensors, cap_bytes)]
    for work in [collective(flat, async_op=True) for _, flat in flats]:
        work.wait()
    for bucket, flat in flats:
        for t, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            t.copy_(reduced)


def _average_gradients(model: nn.Module, cap_bytes: int = BUCKET_CAP_BYTES) -> None:
    """What DDP's backward would have done: every rank ends with the mean gradient over ranks, reduced
    in ~25 MiB buckets (one all-reduce each, not one per parameter: each collective has a fixed cost).
    Then rank 0's buffers (BatchNorm statistics) are broadcast, as DDP does before a synced forward."""
    world = dist.get_world_size()
    grads = []
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:  # unused on this step: contributes zeros, like DDP
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    for g in grads:
        g.div_(world)  # before the sum: fp16 gradients would overflow sooner after it
    _flat_collective(grads, dist.all_reduce, cap_bytes)
    _flat_collective(list(model.buffers()), lambda t, async_op: dist.broadcast(t, 0, async_op=async_op),
                     cap_bytes)


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


def _shrink_after_oom(state: StepState, where: str) -> None:
    """Drop the partial gradients and halve the micro-batch (accumulation x2, same effective batch)."""
    state.optimizer.zero_grad(set_to_none=True)
    if state.micro_batch <= 1:
        raise torch.OutOfMemoryError(f"CUDA out of memory {where} with a micro-batch of 1 sample")
    torch.cuda.empty_cache()
    state.micro_batch //= 2
    state.num_oom_retries += 1
    log.warning("CUDA out of memory %s: micro-batch halved to %d (accumulation x2, same effective batch)",
                where, state.micro_batch)


def train_step(state: StepState, x: torch.Tensor, y: torch.Tensor,
               normalize: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor | int]:
    """One optimizer step on this worker's batch `x` (uint8, already prepared; `normalize` turns each micro-batch into float model input, e.g. `Preprocess.normalize`).

    On a CUDA out-of-memory error the micro-batch is halved (so accumulation steps double and the
    effective batch is unchanged), the partial gradients are dropped, and the step is retried; under
    DDP all ranks agree first, so they halve together (see the module docstring).
    Returns {"loss": mean loss, "correct": count, "n": samples}; loss and correct stay on the device.
    """
    distributed = _is_distributed(state.model)
    while True:
        oom = False
        if distributed:
            _no_forward_collectives(state.model)
        try:
            loss_sum, correct = _accumulate(state, x, y, normalize, sync_last=not distributed)
        except torch.OutOfMemoryError:
            if not distributed and state.micro_batch <= 1:
                raise
            oom = True
        if distributed and _any_rank(oom, x.device):
            _shrink_after_oom(state, "on this rank" if oom else "on another rank")
        elif oom:
            _shrink_after_oom(state, "in training")
        else:
            break
    if distributed:
        _average_gradients(state.model)
    _apply_update(state)
    n = x.shape[0]
    return {"loss": loss_sum / n, "correct": correct, "n": n}

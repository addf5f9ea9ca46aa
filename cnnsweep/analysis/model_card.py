"""Model card: parameters, FLOPs and memory for one prediction and for training a batch of 50.

How each number is derived:
- parameters, forward FLOPs per image, weight bytes (parameters + buffers), gradient bytes and optimizer
  state: `cnnsweep.summary.summarize` (FLOPs = 2 x multiply-adds of convs and matmuls, counted by
  torch's FlopCounterMode; optimizer state = slots x trainable bytes, e.g. 2 for Adam/AdamW);
- prediction activations: summarize's forward hooks on every layer, the largest (layer input + layer
  output) pair, fp32: without autograd only one layer's input and output need to be alive at once;
- training activations: MEASURED, with `torch.autograd.graph.saved_tensors_hooks` on a train-mode
  forward pass: the bytes of every distinct tensor autograd keeps for the backward pass (parameters
  excluded: they are the weights). Measured at batches 2 and 4 and extrapolated linearly to the batch
  (saved activations grow linearly with the batch), so a 224 px timm model is not run on 50 images;
- training FLOPs: MEASURED with FlopCounterMode over forward + backward at batch 2, x batch / 2 (conv
  and matmul FLOPs are exactly linear in the batch). The optimizer update is elementwise and not counted.
Not included: the CUDA context, allocator slack, and the data batch itself (uint8, small).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnsweep.models.summary import format_bytes, summarize

TRAIN_BATCH = 50  # the course's question: memory to train a batch of 50


def _train_copy(model: nn.Module) -> nn.Module:
    """A train-mode copy: a train-mode forward updates BN running stats, which must not touch `model`."""
    return copy.deepcopy(model).train()


def saved_activation_bytes(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves in one train-mode forward pass."""
    m = _train_copy(model)
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:  # views of one tensor share a storage: counted once
            storages[s.data_ptr()] = s.nbytes()
        return t

    device = next(m.parameters()).device
    x = torch.randn(batch, *input_shape, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = m(x)
    del out  # the graph (and the saved tensors) go with it
    return sum(storages.values())


def training_activation_bytes(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> int:
    """saved_activation_bytes extrapolated from batches 2 and 4 (batch 1 fails BN on 1x1 maps)."""
    b2, b4 = (saved_activation_bytes(model, input_shape, b) for b in (2, 4))
    per_image = (b4 - b2) / 2
    return int(round(b2 - 2 * per_image + batch * per_image))


def training_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> int:
    """Forward + backward FLOPs (2 x MACs) of one training step on `batch` images."""
    m = _train_copy(model)
    x = torch.randn(2, *input_shape, device=next(m.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        m(x).float().sum().backward()
    return int(counter.get_total_flops() * batch / 2)


def _note(weights: int, total: int, batch: int) -> str:
    return (f"Counting only the weights (as the course's own answer does) gives {format_bytes(weights)}; "
            f"training a batch of {batch} needs about {format_bytes(total)} ({total / max(weights, 1):.1f}x), "
            "because gradients, optimizer state and the activations kept for backpropagation also take memory.")


def build_model_card(model: nn.Module, input_shape: tuple[int, int, int], *, batch_size: int = TRAIN_BATCH,
                     optimizer: str = "adamw", momentum: float = 0.9) -> dict[str, Any]:
    """JSON-able card: params, FLOPs, memory (bytes) for one prediction and for a training batch."""
    s = summarize(model, input_shape, batch_size=batch_size, optimizer=optimizer, momentum=momentum)
    act = training_activation_bytes(model, input_shape, batch_size)
    train = {"weights": s.weight_bytes, "gradients": s.grad_bytes, "optimizer_state": s.optimizer_bytes,
             "activations": act}
    train["total"] = sum(train.values())
    predict = {"weights": s.weight_bytes, "activations": s.inference_activation_bytes}
    predict["total"] = sum(predict.values())
    return {"input_shape": list(input_shape), "params": {"total": s.total_params, "trainable": s.trainable_params},
            "flops": {"predict_one": s.flops, "train_batch": training_flops(model, input_shape, batch_size)},
            "batch_size": batch_size, "optimizer": optimizer,
            "memory_bytes": {"predict_one": predict, "train_batch": train,
                             "train_activations_summary_estimate": batch_size * s.activation_bytes_per_image},
            "note": _note(s.weight_bytes, train["total"], batch_size)}

"""Model summary: per-layer table, forward FLOPs, memory estimates and a micro-batch that fits.

FLOPs: counted by `torch.utils.flop_counter.FlopCounterMode` on one image, which counts convolutions
and matrix multiplies (linear, attention) as 2 FLOPs per multiply-add (FLOPs = 2 x MACs). Batch
norm, activations and pooling are elementwise, a few percent of a conv net's work, and not counted
(batch norm folds into the previous conv at export anyway).

Memory (estimates, in bytes, fp32 weights):
- inference, one image: weights + buffers + the largest (layer input + layer output) pair;
- training, a mini-batch: weights + buffers + gradients (trainable params) + optimizer state
  (adam/adamw 2 slots per trainable param, sgd with momentum / nesterov 1, plain sgd 0, rmsprop 1
  plus 1 with momentum) + the moving average's copy of weights and buffers (`train.ema_decay`)
  + activations kept for backward ~ the sum of every layer's output x batch,
  halved under AMP (fp16/bf16 activations).
Not included: the CUDA context (~0.3-0.5 GiB) and allocator slack; `suggest_micro_batch` keeps
`headroom` for them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from cnnsweep.models.tta import single_view
from torch.utils.flop_counter import FlopCounterMode

FP32_BYTES = 4
AMP_ACTIVATION_FACTOR = 0.5  # fp16/bf16 activations take half the bytes of fp32


@dataclass
class LayerRow:
    name: str  # dotted module path
    type: str  # class name
    output_shape: tuple[int, ...]  # one image's output (no batch dimension)
    params: int  # own parameters (not counting children)
    flops: int  # forward FLOPs for one image (2 x MACs), all calls of this module


@dataclass
class ModelSummary:
    model_name: str
    input_shape: tuple[int, int, int]  # C, H, W
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    flops: int  # forward FLOPs per image (2 x MACs; conv + matmul only)
    weight_bytes: int  # parameters + buffers (BN running stats)
    grad_bytes: int  # one gradient per trainable parameter
    optimizer_bytes: int  # optimizer state for the trainable parameters
    average_bytes: int  # train.ema_decay: the averaged copy of weights + buffers (0 without)
    activation_bytes_per_image: int  # kept for backward (AMP-scaled)
    inference_activation_bytes: int  # peak live activations, one image, fp32
    batch_size: int  # mini-batch of the training estimate (per worker, per micro-step)
    optimizer: str = "adamw"
    amp: bool = False
    memory_budget: Optional[int] = None  # bytes, when a suggestion was asked for
    suggestion: Optional[tuple[int, int]] = None  # (micro_batch_size, accum_steps)
    notes: list[str] = field(default_factory=list)

    @property
    def inference_bytes(self) -> int:
        return self.weight_bytes + self.inference_activation_bytes

    def training_bytes_for(self, batch_size: int) -> int:
        return (self.weight_bytes + self.grad_bytes + self.optimizer_bytes + self.average_bytes
                + batch_size * self.activation_bytes_per_image)

    @property
    def training_bytes(self) -> int:
        return self.training_bytes_for(self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(inference_bytes=self.inference_bytes, training_bytes=self.training_bytes)
        return d

    def print(self, console: Any = None) -> None:
        print_summary(self, console)


# ------------------------------------------------------------------------------ measuring


def optimizer_slots(optimizer: str, momentum: float = 0.9) -> int:
    """Optimizer state tensors per trainable parameter."""
    slots = {"adam": 2, "adamw": 2, "nesterov": 1, "sgd": 1 if momentum > 0 else 0,
             "rmsprop": 1 + (momentum > 0)}
    if optimizer not in slots:
        raise ValueError(f"optimizer: unknown {optimizer!r}; choose from {', '.join(slots)}")
    return slots[optimizer]


def _row_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that get a row: leaves, plus any module holding its own parameters (so the rows'
    params add up to the total). nn.Identity is skipped: it computes and stores nothing."""
    return [(n, m) for n, m in model.named_modules()
            if n and not isinstance(m, nn.Identity)
            and (not any(True for _ in m.children()) or any(True for _ in m.parameters(recurse=False)))]


def _numel(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)):
        return sum(_numel(t) for t in x)
    return 0


def _first_shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape[1:])
    if isinstance(x, (tuple, list)) and x:
        return _first_shape(x[0])
    return ()


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict, list[tuple[int, int]], int]:
    """Run one image through the model: ({name: LayerRow}, [(in, out) numel per call], total FLOPs)."""
    rows: dict[str, LayerRow] = {}
    calls: list[tuple[int, int]] = []

    def hook(name: str, module: nn.Module):
        def fn(_m: nn.Module, inputs: Any, output: Any) -> None:
            calls.append((_numel(inputs), _numel(output)))
            if name not in rows:  # a module called twice keeps its first shape
                own = sum(p.numel() for p in module.parameters(recurse=False))
                rows[name] = LayerRow(name, type(module).__name__, _first_shape(output), own, 0)
        return fn

    modules = _row_modules(model)
    handles = [m.register_forward_hook(hook(n, m)) for n, m in modules]
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    for key, ops in counter.get_flop_counts().items():
        name = key.partition(".")[2]  # keys are "<RootClass>.<module path>"
        if name in rows:
            rows[name].flops = int(sum(ops.values()))
    # Registration order, not hook order: a post-hook fires for BatchNormAct2d after its child act.
    ordered = {n: rows[n] for n, _ in modules if n in rows}
    return ordered, calls, int(counter.get_total_flops())


def summarize(model: nn.Module, input_shape: tuple[int, int, int], *, batch_size: int,
              optimizer: str = "adamw", momentum: float = 0.9, amp: bool = False,
              model_name: str = "", weight_average: bool = False) -> ModelSummary:
    """Per-layer table, parameter counts, FLOPs per image and memory estimates (see module doc)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()  # BN uses running stats, dropout is off: no state changes
    try:
        with single_view(model):  # what training runs: one view per image
            rows, calls, flops = _trace(model, tuple(input_shape))
    finally:
        model.train(was_training)
    params = list(model.parameters())
    trainable_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    weight_bytes = sum(t.numel() * t.element_size() for t in [*params, *model.buffers()])
    saved = (math.prod(input_shape) + sum(out for _, out in calls)) * FP32_BYTES
    return ModelSummary(
        model_name=model_name or type(model).__name__, input_shape=tuple(input_shape),
        rows=list(rows.values()), total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad), flops=flops,
        weight_bytes=weight_bytes, grad_bytes=trainable_bytes,
        optimizer_bytes=optimizer_slots(optimizer, momentum) * trainable_bytes,
        average_bytes=weight_bytes if weight_average else 0,
        activation_bytes_per_image=int(saved * (AMP_ACTIVATION_FACTOR if amp else 1.0)),
        inference_activation_bytes=max((i + o for i, o in calls), default=0) * FP32_BYTES,
        batch_size=batch_size, optimizer=optimizer, amp=amp)


def suggest_micro_batch(summary: ModelSummary, memory_bytes: int, batch_size: int, *,
                        headroom: float = 0.9) -> tuple[int, int]:
    """(micro_batch_size, accum_steps) for a per-worker `batch_size` whose training estimate fits in
    `headroom` x `memory_bytes` (the rest is left for the CUDA context and allocator slack).
    Tries the whole batch, then the largest power of two dividing it, halving down to 1."""
    from cnnsweep.models import ModelError

    budget = int(memory_bytes * headroom)
    candidates = [batch_size] + [2**k for k in range(int(math.log2(batch_size)), -1, -1)
                                 if 2**k < batch_size and batch_size % 2**k == 0]
    for micro in candidates:
        if summary.training_bytes_for(micro) <= budget:
            return micro, batch_size // micro
    raise ModelError(f"the model does not fit in {format_bytes(memory_bytes)} even with micro-batch 1: "
                     f"training needs ~{format_bytes(summary.training_bytes_for(1))} "
                     f"(weights, gradients and optimizer state alone "
                     f"{format_bytes(summary.training_bytes_for(0))}); "
                     "use a smaller model, freeze layers, or more memory")


_UNITS = {"": 1, "b": 1, "k": 2**10, "ki": 2**10, "kib": 2**10, "kb": 10**3,
          "m": 2**20, "mi": 2**20, "mib": 2**20, "mb": 10**6, "g": 2**30, "gi": 2**30, "gib": 2**30,
          "gb": 10**9, "t": 2**40, "ti": 2**40, "tib": 2**40, "tb": 10**12}


def parse_memory(text: str | int) -> int:
    """'8GiB' / '512MB' / '1.5G' / '1024' -> bytes. KB/MB/GB are decimal (SI); KiB/MiB/GiB and the
    bare letters K/M/G are binary, as in `free -g` and docker."""
    from cnnsweep.config import ConfigError

    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"--memory {text!r}: expected a size like 8GiB, 512MB or 1.5G")
        value, unit = float(m.group(1)), m.group(2).lower()
    if value <= 0:
        raise ConfigError(f"--memory {text!r}: must be > 0")
    return int(value * _UNITS[unit])


# ------------------------------------------------------------------------------ rendering


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_count(n: float, suffix: str = "") -> str:
    """1234567 -> '1.23M' (decimal prefixes); with suffix 'FLOPs' -> '1.23 MFLOPs'."""
    sep = " " if suffix else ""
    for unit in ("", "K", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{sep}{unit}{suffix}" if not unit else f"{n:.2f}{sep}{unit}{suffix}"
        n /= 1000
    return f"{n:.2f}{sep}T{suffix}"


def _layer_table(s: ModelSummary) -> Any:
    from rich.table import Table

    table = Table(title=f"{s.model_name}: input {'x'.join(map(str, s.input_shape))}", title_justify="left")
    for col, justify in (("layer", "left"), ("type", "left"), ("output", "right"),
                         ("params", "right"), ("FLOPs", "right")):
        table.add_column(col, justify=justify)
    for r in s.rows:
        table.add_row(r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}",
                      format_count(r.flops) if r.flops else "")
    return table


def _totals_table(s: ModelSummary) -> Any:
    from rich.table import Table

    table = Table(show_header=False, title="totals (memory: estimates)", title_justify="left")
    table.add_column(justify="left")
    table.add_column(justify="right")
    amp = "AMP" if s.amp else "fp32"
    act = s.batch_size * s.activation_bytes_per_image
    for k, v in [
        ("parameters (trainable)", f"{s.total_params:,} ({s.trainable_params:,})"),
        ("forward FLOPs / image (2 x MACs)", format_count(s.flops, "FLOPs")),
        ("inference, 1 image", format_bytes(s.inference_bytes)),
        ("  weights + activations",
         f"{format_bytes(s.weight_bytes)} + {format_bytes(s.inference_activation_bytes)}"),
        (f"training, batch {s.batch_size} ({s.optimizer}, {amp})", format_bytes(s.training_bytes)),
        ("  weights + gradients", f"{format_bytes(s.weight_bytes)} + {format_bytes(s.grad_bytes)}"),
        ("  optimizer state", format_bytes(s.optimizer_bytes)),
        *([("  weight average (train.ema_decay)", format_bytes(s.average_bytes))] if s.average_bytes else []),
        ("  activations for backward", format_bytes(act)),
    ]:
        table.add_row(k, v)
    if s.suggestion:
        micro, accum = s.suggestion
        table.add_row(f"fits in {format_bytes(s.memory_budget or 0)}",
                      f"train.micro_batch_size={micro} (x{accum} accum)")
    return table


def render_summary(summary: ModelSummary) -> Any:
    """A rich renderable: the per-layer table, then the totals."""
    from rich.console import Group

    return Group(_layer_table(summary), _totals_table(summary), *summary.notes)


def print_summary(summary: ModelSummary, console: Any = None) -> None:
    from rich.console import Console

    (console or Console()).print(render_summary(summary))


# ------------------------------------------------------------------------------ from a config


def summarize_config(cfg: Any, memory: str | int | None = None) -> ModelSummary:
    """`cnnsweep summary CONFIG`: load the data (for shapes and classes), build the model without
    pretrained weights (counts do not depend on them), summarize, and fit a micro-batch to `memory`."""
    from cnnsweep.data import load_dataset
    from cnnsweep.models import build_model
    from cnnsweep.transforms import Preprocess

    budget = parse_memory(memory) if memory is not None else None  # bad --memory fails before data loads
    dataset = load_dataset(cfg.data)
    data_cfg = cfg.data.model_copy(update={"normalize": False})  # shapes only: skip measuring mean/std
    shape = Preprocess.fit(data_cfg, dataset.train.images).input_shape
    model_cfg = cfg.model.model_copy(update={"pretrained": False, "weights": None})
    model = build_model(model_cfg, dataset.num_classes, shape[0], shape[1])
    summary = summarize(model, shape, batch_size=cfg.micro_batch, optimizer=cfg.optim.name,
                        momentum=cfg.optim.momentum, amp=cfg.train.amp != "off", model_name=cfg.model.name,
                        weight_average=cfg.train.ema_decay is not None)
    per_worker = cfg.train.batch_size // cfg.scaling.num_workers
    if budget is not None:
        summary.memory_budget = budget
        summary.suggestion = suggest_micro_batch(summary, budget, per_worker)
    if cfg.scaling.num_workers > 1:
        summary.notes.append(f"memory is per worker: batch {per_worker} = train.batch_size / "
                             f"{cfg.scaling.num_workers} workers")
    return summary

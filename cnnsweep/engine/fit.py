"""`fit`: the whole training of one candidate, in plain PyTorch.

The loop knows nothing about Ray: distribution, reporting and resuming come in through `FitHooks`.
Data stays on the training device as uint8 for the whole run; augmentation and normalization run
on whole batches there.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from cnnsweep.checkpoint import CheckpointError, CheckpointState, ModelArgs
from cnnsweep.config import RunConfig, config_to_dict
from cnnsweep.data import DeviceBatches, ImageDataset, build_epoch_indices, class_weights
from cnnsweep.engine.amp import build_scaler, resolve_amp
from cnnsweep.engine.ema import WeightAverage, build_weight_average
from cnnsweep.engine.evaluate import evaluate
from cnnsweep.engine.hooks import FitHooks
from cnnsweep.engine.optim import build_optimizer, build_scheduler, split_weight_decay
from cnnsweep.engine.seed import seed_everything, seed_rank_stream
from cnnsweep.engine.step import StepState, train_step
from cnnsweep.models import BackboneWarmup, build_model, param_groups
from cnnsweep.transforms import Preprocess, build_augment, default_balance_augment
from cnnsweep import metrics as M


@dataclass
class FitResult:
    metrics: dict[str, float]  # the last epoch's report (with test/* when there is a test split)
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0


@dataclass
class _Run:
    """The state `fit` threads through its helpers."""

    cfg: RunConfig
    hooks: FitHooks
    preprocess: Preprocess
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (prepared uint8 images, labels) on device
    class_names: list[str]
    model: nn.Module  # unwrapped, for state_dict
    step: StepState
    batches: DeviceBatches
    augment: Any
    balance_augment: Any
    warmup: Optional[BackboneWarmup] = None  # model.freeze_epochs
    average: Optional[WeightAverage] = None  # train.ema_decay: evaluated and saved in the model's place
    start_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _prepare_splits(cfg: RunConfig, dataset: ImageDataset, device: torch.device):
    """Move each split to the device once, run the deterministic preprocessing there (once: CLAHE is
    costly), and measure the normalization statistics on the prepared training split."""
    preprocess, train_x = Preprocess.fit_prepare(cfg.data, dataset.train.images.to(device))
    out = {"train": (train_x, dataset.train.labels.to(device))}
    for name in ("valid", "test"):
        split = getattr(dataset, name)
        if split is not None and len(split):
            out[name] = (preprocess.prepare(split.images.to(device)), split.labels.to(device))
    return preprocess, out


def _build_batches(cfg: RunConfig, images: torch.Tensor, labels: torch.Tensor, hooks: FitHooks) -> DeviceBatches:
    # every rank draws the same epoch order (balanced or not) and takes its own shard of it
    indices_fn = functools.partial(build_epoch_indices, labels.cpu(), cfg.data.balance)
    return DeviceBatches(images, labels, batch_size=cfg.train.batch_size // cfg.scaling.num_workers,
                         seed=cfg.train.seed, rank=hooks.rank, world_size=hooks.world_size,
                         indices_fn=indices_fn)


def _build_run(cfg: RunConfig, dataset: ImageDataset, hooks: FitHooks) -> _Run:
    device = hooks.device
    seed_everything(cfg.train.seed, cfg.train.deterministic)  # same init on every rank
    preprocess, splits = _prepare_splits(cfg, dataset, device)
    num_classes = len(dataset.class_names)
    model = build_model(cfg.model, num_classes, preprocess.in_channels, preprocess.image_size).to(device)
    batches = _build_batches(cfg, *splits["train"], hooks)
    groups = param_groups(model, cfg.model, cfg.train.lr, cfg.optim.backbone_lr_scale, cfg.optim.stn_lr_scale)
    optimizer = build_optimizer(split_weight_decay(model, groups, cfg.optim.weight_decay), cfg.optim, cfg.train.lr)
    scheduler = build_scheduler(optimizer, cfg.sched, epochs=cfg.train.epochs, steps_per_epoch=len(batches))
    amp = resolve_amp(cfg.train.amp, device)
    weight = class_weights(splits["train"][1], num_classes) if cfg.data.balance == "class_weights" else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.train.label_smoothing)
    step = StepState(hooks.wrap_model(model), optimizer, scheduler, build_scaler(amp), amp, loss_fn,
                     micro_batch=cfg.micro_batch, grad_clip=cfg.train.grad_clip)
    seed_rank_stream(cfg.train.seed, hooks.rank)  # after the (shared) init: each rank its own dropout masks
    augment = build_augment(cfg.augment)
    balance_augment = (augment or default_balance_augment()) if cfg.data.balance == "oversample_augment" else None
    # after the optimizer: its groups hold the backbone, which gets gradients again once unfrozen
    warmup = BackboneWarmup(model, cfg.model.freeze_epochs) if cfg.model.freeze_epochs else None
    return _Run(cfg, hooks, preprocess, splits, list(dataset.class_names), model, step, batches,
                augment, balance_augment, warmup, build_weight_average(model, cfg.train.ema_decay))


_RESUME_PARTS = ("optimizer", "scheduler", "scaler", "epoch")  # optional in a checkpoint, needed to resume


def _resume(run: _Run) -> None:
    state = run.hooks.load_resume_state()
    if state is None:
        return
    missing = [name for name in _RESUME_PARTS if getattr(state, name) is None]
    if missing:  # e.g. a checkpoint written for inference only
        raise CheckpointError(f"the checkpoint to resume from has no {', '.join(missing)}: it cannot continue "
                              "a training run")
    # with an average, `model` holds the average and `training_model` the optimizer's weights; a
    # checkpoint from before the average was turned on has only `model`: both start from it
    run.model.load_state_dict(state.training_model if state.training_model is not None else state.model)
    if run.average is not None:
        run.average.module.load_state_dict(state.model)
    run.step.optimizer.load_state_dict(state.optimizer)
    run.step.scheduler.load_state_dict(state.scheduler)
    run.step.scaler.load_state_dict(state.scaler)
    run.start_epoch = state.epoch + 1
    # The micro-batch an OOM shrank to: restarting with the configured one would only OOM again.
    if state.micro_batch_size is not None:
        run.step.micro_batch = min(run.step.micro_batch, state.micro_batch_size)
    run.history = list(state.history)


def _train_epoch(run: _Run, epoch: int) -> dict[str, float]:
    device = run.hooks.device
    gen = torch.Generator(device=device)
    gen.manual_seed(run.cfg.train.seed * 100_003 + epoch * 1_009 + run.hooks.rank)  # distinct per rank/epoch
    run.batches.set_epoch(epoch)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for x, y, mask in run.batches.batches_with_mask():
        if run.augment is not None:
            x = run.augment(x, generator=gen)
        if run.balance_augment is not None and mask is not None and bool(mask.any()):
            x = run.balance_augment(x, generator=gen, mask=mask)  # oversampled duplicates: always augmented
        out = train_step(run.step, x, y, run.preprocess.normalize)
        if run.average is not None:
            run.average.update(run.model, num_steps=run.step.scheduler.last_epoch)  # counts optimizer steps
        loss_sum, correct, seen = loss_sum + out["loss"] * out["n"], correct + out["correct"], seen + out["n"]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {M.TRAIN_LOSS: loss_sum.item() / max(1, seen), M.TRAIN_ACC: correct.item() / max(1, seen),
            M.IMAGES_PER_S: seen * run.hooks.world_size / max(seconds, 1e-9), M.TRAIN_SECONDS: seconds,
            M.LR: run.step.optimizer.param_groups[0]["lr"], "micro_batch_size": run.step.micro_batch}


def _evaluate_split(run: _Run, name: str, prefix: str) -> dict[str, float]:
    if name not in run.splits:
        return {}
    images, labels = run.splits[name]
    model = run.average.module if run.average is not None else run.step.model
    return evaluate(model, images, labels, run.preprocess.normalize,
                    num_classes=len(run.class_names), prefix=prefix, batch_size=run.cfg.train.eval_batch_size,
                    amp=run.step.amp, rank=run.hooks.rank, world_size=run.hooks.world_size)


def checkpoint_state(run: _Run, epoch: int, metrics: dict[str, float]) -> CheckpointState:
    """Everything needed to resume training or to rebuild the model for inference and export."""
    return CheckpointState(
        config=config_to_dict(run.cfg), epoch=epoch,
        model=(run.average.module if run.average is not None else run.model).state_dict(),
        training_model=run.model.state_dict() if run.average is not None else None,
        optimizer=run.step.optimizer.state_dict(), scheduler=run.step.scheduler.state_dict(),
        scaler=run.step.scaler.state_dict(), preprocess=run.preprocess.to_dict(), class_names=run.class_names,
        model_args=ModelArgs(num_classes=len(run.class_names), in_channels=run.preprocess.in_channels,
                             image_size=run.preprocess.image_size),
        micro_batch_size=run.step.micro_batch,  # after any OOM halving, so a resume starts there
        metrics=metrics, history=run.history)


def _enter_phase(run: _Run, epoch: int) -> dict[str, float]:
    """model.freeze_epochs: freeze or unfreeze the backbone for `epoch` (a resumed run lands in its phase)."""
    if run.warmup is None:
        return {}
    if run.warmup.set_epoch(epoch):
        # DDP fixes the parameters it all-reduces when it wraps the model: wrap again after a change
        run.step.model = run.hooks.wrap_model(run.model)
    return {M.BACKBONE_FROZEN: int(run.warmup.frozen)}


def _run_epoch(run: _Run, epoch: int) -> dict[str, float]:
    metrics: dict[str, float] = {"epoch": epoch}
    metrics.update(_enter_phase(run, epoch))
    metrics.update(_train_epoch(run, epoch))
    metrics.update(_evaluate_split(run, "valid", "val"))
    if epoch == run.cfg.train.epochs - 1:
        metrics.update(_evaluate_split(run, "test", "test"))  # the final model, once
    return metrics


def fit(cfg: RunConfig, dataset: ImageDataset, hooks: Optional[FitHooks] = None) -> FitResult:
    """Train one candidate from `cfg` on `dataset`; report and checkpoint through `hooks` each epoch."""
    hooks = hooks or FitHooks()
    start = time.perf_counter()
    run = _build_run(cfg, dataset, hooks)
    _resume(run)
    metrics: dict[str, float] = run.history[-1] if run.history else {}
    for epoch in range(run.start_epoch, cfg.train.epochs):
        metrics = _run_epoch(run, epoch)
        run.history.append(metrics)
        save = (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs - 1
        metrics[M.EPOCH_END_TIME] = time.time()  # wall clock (s): epoch-to-epoch times include reporting
        # after the time is in: the state holds copies of metrics and history, as the file always held it
        state = checkpoint_state(run, epoch, metrics) if save and hooks.rank == 0 else None
        hooks.report(metrics, state)
    return FitResult(metrics, run.history, len(run.history), time.perf_counter() - start)

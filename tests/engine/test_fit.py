"""fit: the bare engine loop end to end on real (embedded) digits."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from cnnsweep.checkpoint import load_checkpoint, load_model_from_checkpoint
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import FitHooks, LocalHooks, fit, predict_logits, resolve_amp
from cnnsweep import metrics as M

BASE = {"data": {"name": "digits"}, "model": {"num_stages": 2, "width": 16, "convs_per_stage": 1},
        "sched": {"name": "onecycle"}, "train": {"epochs": 3, "lr": 5e-3, "batch_size": 64}}


def _cfg(**sections):
    raw = {k: dict(v) for k, v in BASE.items()}
    for k, v in sections.items():
        another_model = k == "model" and v.get("name", "cnn") != "cnn"  # its own family's section, not BASE's
        raw[k] = dict(v) if another_model else raw.get(k, {}) | v
    return validate_config(raw)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(validate_config(BASE).data)


@pytest.mark.parametrize("ema_decay", [None, 0.99])
def test_fit_learns_and_checkpoints(digits, tmp_path, ema_decay):
    cfg = _cfg(train={"epochs": 6, "micro_batch_size": 32, "ema_decay": ema_decay})
    result = fit(cfg, digits, LocalHooks(output=tmp_path, num_to_keep=2))
    assert result.epochs == 6 and result.metrics["val/acc"] > 0.85  # chance is 0.10
    assert {"train/loss", "val/loss", "val/acc", "val/f1_macro", "images_per_s"} <= result.metrics.keys()
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["epoch_0004", "epoch_0005"]
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 6
    ends = [h[M.EPOCH_END_TIME] for h in result.history]  # not "timestamp": Tune overwrites that key
    assert "timestamp" not in result.history[0] and ends == sorted(ends) and ends[-1] > ends[0]
    loaded = load_model_from_checkpoint(tmp_path / "checkpoints" / "epoch_0005")
    amp = resolve_amp(cfg.train.amp, torch.device("cpu"))  # validation ran under this autocast setting
    logits = predict_logits(loaded.model, digits.valid.images, loaded.preprocess, batch_size=256, amp=amp)
    acc = (logits.argmax(1) == digits.valid.labels).float().mean().item()
    assert acc == pytest.approx(result.metrics["val/acc"], abs=1e-6)  # same preprocessing, same model
    state = load_checkpoint(tmp_path / "checkpoints" / "epoch_0005")
    if ema_decay is None:
        assert state.training_model is None
    else:  # the saved, evaluated model is the average, not the last step's weights
        assert any(not torch.equal(state.model[k], state.training_model[k]) for k in state.model)


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_continues_where_it_stopped(digits, tmp_path, ema_decay):
    cfg = _cfg(train={"epochs": 4, "ema_decay": ema_decay}, augment={"rotation": 5})
    full = fit(cfg, digits, LocalHooks(output=tmp_path / "full"))
    with pytest.raises(_Interrupted):  # killed after epoch 1's checkpoint
        fit(cfg, digits, _StopAfter(LocalHooks(output=tmp_path / "a"), epochs=2))
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == ["epoch_0000", "epoch_0001"]
    resumed = fit(cfg, digits, LocalHooks(output=tmp_path / "b", resume_from=tmp_path / "a" / "checkpoints"))
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    # deterministic CPU training: resuming gives exactly the uninterrupted run's final weights
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "epoch_0003")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "epoch_0003")
    parts = ("model",) if ema_decay is None else ("model", "training_model")  # the average and what it averages
    for part in parts:
        for k in getattr(a, part):
            torch.testing.assert_close(getattr(a, part)[k], getattr(b, part)[k], msg=f"{part}.{k}")
    assert resumed.metrics["val/acc"] == pytest.approx(full.metrics["val/acc"])


def test_a_checkpoint_without_training_state_cannot_resume(digits, tmp_path):
    from cnnsweep.checkpoint import CheckpointError, save_checkpoint

    cfg = _cfg(train={"epochs": 1})
    fit(cfg, digits, LocalHooks(output=tmp_path / "a"))
    state = load_checkpoint(tmp_path / "a" / "checkpoints")
    save_checkpoint(state.model_copy(update={"optimizer": None, "scaler": None}), tmp_path / "inference")
    with pytest.raises(CheckpointError, match="has no optimizer, scaler: it cannot continue"):
        fit(cfg, digits, LocalHooks(resume_from=tmp_path / "inference"))


class _StopAfter(LocalHooks):
    """Simulates an interruption: raises after `epochs` reports (the checkpoint is already saved)."""

    def __init__(self, inner: LocalHooks, epochs: int):
        self.__dict__.update(inner.__dict__)
        self.stop_after = epochs

    def report(self, metrics, checkpoint_state):
        super().report(metrics, checkpoint_state)
        if metrics["epoch"] + 1 >= self.stop_after:
            raise _Interrupted


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("balance", ["class_weights", "sampler", "oversample", "undersample", "oversample_augment"])
def test_every_balancing_method_trains(digits, balance):
    result = fit(_cfg(data={"balance": balance}, train={"epochs": 2}), digits)
    assert result.metrics["val/acc"] > 0.2 and torch.isfinite(torch.tensor(result.metrics["train/loss"]))


@pytest.mark.parametrize("optim,sched", [("sgd", "step"), ("nesterov", "cosine"), ("adam", "none"),
                                         ("rmsprop", "cosine"), ("adamw", "onecycle")])
def test_optimizers_and_schedules(digits, optim, sched):
    cfg = _cfg(optim={"name": optim}, sched={"name": sched, "step_epochs": 1},
               train={"epochs": 2, "lr": 0.05 if "sgd" in optim or optim == "nesterov" else 3e-3,
                      "label_smoothing": 0.1, "grad_clip": 5.0})
    assert fit(cfg, digits).metrics["val/acc"] > 0.2


def test_test_split_is_evaluated_once_at_the_end(digits):
    with_test = dataclasses.replace(digits, test=digits.valid)
    result = fit(_cfg(train={"epochs": 2}), with_test)
    assert "test/acc" not in result.history[0]
    assert {"test/acc", "test/precision_macro", "test/recall_macro", "test/f1_macro"} <= result.metrics.keys()
    assert result.metrics["test/acc"] == pytest.approx(result.metrics["val/acc"])  # same images


class _OomAbove(torch.nn.Module):
    """Raises CUDA OOM for micro-batches above `limit`, counting them (a too-big micro-batch)."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit, self.num_ooms = inner, limit, 0

    def forward(self, x):
        if self.training and x.shape[0] > self.limit:
            self.num_ooms += 1
            raise torch.OutOfMemoryError("simulated")
        return self.inner(x)


def test_checkpoint_keeps_the_micro_batch_an_oom_shrank_to(digits, tmp_path, monkeypatch):
    fit_module = importlib.import_module("cnnsweep.engine.fit")  # the package re-exports fit() under that name

    built = []
    real_build = fit_module.build_model
    monkeypatch.setattr(fit_module, "build_model",
                        lambda *a, **k: built.append(_OomAbove(real_build(*a, **k), limit=16)) or built[-1])
    cfg = _cfg(train={"epochs": 2})
    with pytest.raises(_Interrupted):  # killed after epoch 0's checkpoint
        fit(cfg, digits, _StopAfter(LocalHooks(output=tmp_path / "a"), epochs=1))
    assert built[0].num_ooms == 2  # 64 -> 32 -> 16
    assert load_checkpoint(tmp_path / "a" / "checkpoints").micro_batch_size == 16
    resumed = fit(cfg, digits, LocalHooks(output=tmp_path / "b", resume_from=tmp_path / "a" / "checkpoints"))
    assert resumed.metrics["micro_batch_size"] == 16 and built[1].num_ooms == 0  # no OOM again on restart


# ---------------------------------------------------------------------------- two-phase fine-tuning

TIMM = "timm/test_resnet"  # timm's tiny test net; its "pretrained" weights are written by the test


class _Snapshots(LocalHooks):
    """Keeps each epoch's weights (from the checkpoint state the engine hands over)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weights: list[dict[str, torch.Tensor]] = []

    def report(self, metrics, checkpoint_state):
        super().report(metrics, checkpoint_state)
        self.weights.append({k: v.clone() for k, v in checkpoint_state.model.items()})


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory):
    from safetensors.torch import save_file
    from cnnsweep.models import create_model

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    save_file(create_model(TIMM, 10, 1, 8).state_dict(), str(path))
    return path


def _fine_tune(pretrained_file, **train):
    return _cfg(model={"name": TIMM, "pretrained": True, "weights": str(pretrained_file), "freeze_epochs": 1},
                optim={"backbone_lr_scale": 0.1}, train={"epochs": 2, "lr": 3e-3} | train)


def _changed(before: dict, after: dict, head: bool) -> set[str]:
    return {k for k in before if k.startswith("fc.") == head and not torch.equal(before[k], after[k])}


def test_freeze_epochs_trains_only_the_head_then_everything(digits, pretrained_file):
    from safetensors.torch import load_file

    hooks = _Snapshots()
    result = fit(_fine_tune(pretrained_file), digits, hooks)
    loaded = load_file(str(pretrained_file))  # saved for 1 channel and 10 classes: loads unchanged
    first, second = hooks.weights
    assert not _changed(loaded, first, head=False)  # backbone (incl. BN running stats) untouched in epoch 0
    assert _changed(loaded, first, head=True)
    assert _changed(first, second, head=False)  # unfrozen in epoch 1
    assert [h["backbone_frozen"] for h in result.history] == [1, 0]


def test_unfrozen_backbone_learns_at_the_scaled_lr(digits, pretrained_file):
    from cnnsweep.engine.fit import _build_run

    run = _build_run(_fine_tune(pretrained_file), digits, LocalHooks())
    lrs = {g["name"]: g["max_lr"] for g in run.step.optimizer.param_groups}  # one-cycle peaks
    assert lrs == pytest.approx({"head": 3e-3, "backbone": 3e-4})
    for g in run.step.optimizer.param_groups:  # norm and bias parameters are never decayed
        assert all(p.ndim > 1 for p in g["params"]) if g["weight_decay"] else all(p.ndim <= 1 for p in g["params"])


@pytest.mark.parametrize("resume_epoch, backbone_moves", [(0, False), (1, True)])
def test_resumed_run_lands_in_its_phase(digits, pretrained_file, tmp_path, resume_epoch, backbone_moves):
    cfg = _fine_tune(pretrained_file, epochs=3, num_to_keep=None)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"freeze_epochs": 2})})
    fit(cfg, digits, LocalHooks(output=tmp_path))
    ckpt = tmp_path / "checkpoints" / f"epoch_{resume_epoch:04d}"
    hooks = _Snapshots(resume_from=ckpt)
    fit(cfg, digits, hooks)
    before = load_checkpoint(ckpt).model
    assert bool(_changed(before, hooks.weights[0], head=False)) == backbone_moves


class _Rank(FitHooks):
    def __init__(self, rank: int):
        super().__init__("cpu")
        self.rank, self.world_size = rank, 2


def test_ranks_share_the_initial_weights_but_not_the_dropout_stream(digits):
    from cnnsweep.engine.fit import _build_run

    cfg = _cfg(model={"dropout": 0.3})
    runs, draws = [], []
    for hooks in (FitHooks("cpu"), _Rank(0), _Rank(1)):
        runs.append(_build_run(cfg, digits, hooks))
        draws.append(torch.rand(8))  # the next draw of the global stream, which dropout uses
    single, rank0, rank1 = (r.model.state_dict() for r in runs)
    assert all(torch.equal(single[k], rank0[k]) and torch.equal(single[k], rank1[k]) for k in single)
    assert torch.equal(draws[0], draws[1])  # rank 0 of 2 draws what one process draws
    assert not torch.equal(draws[1], draws[2])  # rank 1 drops other units than rank 0

"""train_step: accumulation equals one big batch, AMP on CPU, clipping, OOM fallback."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnsweep.config import OptimConfig, SchedConfig
from cnnsweep.engine import StepState, build_optimizer, build_scaler, build_scheduler, resolve_amp, train_step


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def _state(model, micro_batch, amp="off", grad_clip=None, optim="sgd") -> StepState:
    opt = build_optimizer([{"params": list(model.parameters())}], OptimConfig(name=optim, weight_decay=0), 0.1)
    sched = build_scheduler(opt, SchedConfig(name="none"), epochs=1, steps_per_epoch=10)
    amp_s = resolve_amp(amp, torch.device("cpu"))
    return StepState(model, opt, sched, build_scaler(amp_s), amp_s, nn.CrossEntropyLoss(), micro_batch,
                     grad_clip=grad_clip)


def _batch(n=32):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g), torch.randint(0, 5, (n,), generator=g)


def _norm(x):
    return x.float() / 255


def _grads_after_accumulation(micro_batch):
    model = _model()
    state = _state(model, micro_batch)
    # capture gradients just before the optimizer consumes them
    grads = {}
    orig_step = state.optimizer.step

    def spy(*a, **k):
        grads.update({n: p.grad.clone() for n, p in model.named_parameters()})
        return orig_step(*a, **k)

    state.optimizer.step = spy
    model.eval()  # BatchNorm batch statistics differ per micro-batch; eval-mode BN isolates accumulation
    train_step(state, *_batch(), _norm)
    return grads, model


def test_accumulation_gives_the_same_gradients_as_one_large_batch():
    big, model_big = _grads_after_accumulation(32)
    acc, model_acc = _grads_after_accumulation(8)  # 4 micro-steps
    assert big.keys() == acc.keys()
    for name in big:
        torch.testing.assert_close(acc[name], big[name], rtol=1e-5, atol=1e-6, msg=name)
    for p, q in zip(model_big.parameters(), model_acc.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_uneven_last_micro_batch_is_weighted_by_size():
    big, _ = _grads_after_accumulation(32)
    uneven, _ = _grads_after_accumulation(12)  # 12 + 12 + 8
    for name in big:
        torch.testing.assert_close(uneven[name], big[name], rtol=1e-5, atol=1e-6)


def test_auto_is_bf16_only_on_a_cpu_with_bf16_math(monkeypatch):
    from cnnsweep.engine import amp as amp_module

    for has, name in ((True, "bf16"), (False, "off")):
        monkeypatch.setattr(amp_module, "cpu_has_bf16_math", lambda has=has: has)
        assert resolve_amp("auto", torch.device("cpu")).name == name
    assert resolve_amp("bf16", torch.device("cpu")).name == "bf16"  # asked for by name: always


def test_bf16_autocast_on_cpu_trains():
    model = _model()
    state = _state(model, 16, amp="bf16", optim="adamw")
    assert state.amp.name == "bf16" and not state.amp.use_scaler
    x, y = _batch(64)
    first = train_step(state, x, y, _norm)["loss"]
    for _ in range(30):
        last = train_step(state, x, y, _norm)["loss"]
    assert last < first * 0.7
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_fp16_is_refused_on_cpu():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_amp("fp16", torch.device("cpu"))


def test_gradient_clipping_bounds_the_update():
    model = _model()
    before = copy.deepcopy(model)
    state = _state(model, 32, grad_clip=1e-3)
    train_step(state, *_batch(), _norm)
    delta = torch.cat([(p - q).flatten() for p, q in zip(model.parameters(), before.parameters())])
    assert delta.norm() <= 0.1 * 1e-3 * 1.01  # lr x max grad norm


class _OomAbove(nn.Module):
    """Raises CUDA OOM for micro-batches larger than `limit` (simulates a too-big batch)."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("simulated")
        return self.inner(x)


def test_oom_halves_micro_batch_and_keeps_effective_batch():
    ref_grads, _ = _grads_after_accumulation(32)
    inner = _model()
    inner.eval()
    model = _OomAbove(inner, limit=8)
    state = _state(model, 32)
    grads = {}
    orig = state.optimizer.step
    state.optimizer.step = lambda *a, **k: (grads.update({n: p.grad.clone() for n, p in inner.named_parameters()}),
                                            orig(*a, **k))[1]
    out = train_step(state, *_batch(), _norm)
    assert state.micro_batch == 8 and state.num_oom_retries == 2 and out["n"] == 32
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-6)

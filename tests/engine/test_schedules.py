"""The learning-rate schedules step by step, against their definitions (not just "training works")."""

from __future__ import annotations

import math

import pytest
import torch

from cnnsweep.config import SchedConfig
from cnnsweep.engine.optim import build_scheduler

LR = 0.1
EPOCHS, STEPS = 4, 10  # 40 optimizer steps


def _lrs(cfg: SchedConfig, epochs: int = EPOCHS, steps: int = STEPS) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR)
    for g in opt.param_groups:
        g.setdefault("initial_lr", g["lr"])
    sched = build_scheduler(opt, cfg, epochs=epochs, steps_per_epoch=steps)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_onecycle_warms_up_to_the_peak_then_anneals_far_below_the_start():
    lrs = _lrs(SchedConfig(name="onecycle"))
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(LR / 25)  # torch's div_factor
    assert lrs[peak] == pytest.approx(LR, rel=1e-3) and peak == round(0.3 * 40) - 1  # pct_start 0.3
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # rising
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # falling
    assert lrs[-1] < LR / 25 / 100  # final_div_factor 1e4 below the start


def test_step_decays_by_gamma_every_step_epochs():
    lrs = _lrs(SchedConfig(name="step", step_epochs=1, gamma=0.5))
    for s, lr in enumerate(lrs):
        assert lr == pytest.approx(LR * 0.5 ** (s // STEPS))


def test_cosine_with_warmup_matches_its_formula():
    lrs = _lrs(SchedConfig(name="cosine", warmup_epochs=1))
    warm = STEPS
    for s, lr in enumerate(lrs):
        if s < warm:
            expected = LR * (s + 1) / (warm + 1)
        else:
            expected = LR * 0.5 * (1 + math.cos(math.pi * (s - warm) / (EPOCHS * STEPS - warm)))
        assert lr == pytest.approx(expected), s
    assert lrs[warm] == pytest.approx(LR) and lrs[-1] < 0.01 * LR


def test_none_is_constant_after_its_warmup():
    assert _lrs(SchedConfig(name="none")) == pytest.approx([LR] * (EPOCHS * STEPS))
    warm = _lrs(SchedConfig(name="none", warmup_epochs=0.5))
    assert warm[:5] == pytest.approx([LR * (s + 1) / 6 for s in range(5)]) and warm[5:] == pytest.approx([LR] * 35)

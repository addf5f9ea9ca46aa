"""train_step under DDP (2 gloo processes): an OOM on one rank only is agreed on by all ranks, and the
bucketed gradient reduction leaves every rank with the mean of the ranks' gradients.

Before: each rank halved its own micro-batch, so the ranks ran different micro-steps; an OOM inside
the synced backward left DDP's reducer mid-reduction ("Expected to have finished reduction in the
prior iteration") while the other rank waited in its all-reduce.
"""

from __future__ import annotations

import datetime
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cnnsweep.config import OptimConfig, SchedConfig
from cnnsweep.engine import StepState, build_optimizer, build_scaler, build_scheduler, resolve_amp, train_step
from cnnsweep.engine.step import _average_gradients

WORLD = 2
OOM_RANK, OOM_ABOVE = 1, 8  # rank 1 runs out of memory for micro-batches above 8 samples
PER_RANK = 32  # samples per rank per step


class _RaiseInBackward(torch.autograd.Function):
    """Identity whose backward raises CUDA OOM for batches above `limit` (memory runs out in backward)."""

    @staticmethod
    def forward(ctx, x, limit):
        ctx.limit = limit
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        if grad.shape[0] > ctx.limit:
            raise torch.OutOfMemoryError("simulated OOM in backward")
        return grad, None


class _Net(nn.Module):
    def __init__(self, oom_limit: int | None, where: str):
        super().__init__()
        torch.manual_seed(0)  # identical initial weights on every rank (and in the reference)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.rest = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(8, 5))
        self.oom_limit, self.where = oom_limit, where

    def forward(self, x):
        h = self.conv(x)
        if self.oom_limit is not None:
            if self.where == "forward" and x.shape[0] > self.oom_limit:
                raise torch.OutOfMemoryError("simulated OOM in forward")
            if self.where == "backward":
                h = _RaiseInBackward.apply(h, self.oom_limit)
        return self.rest(h)


def _batch(rank: int):
    g = torch.Generator().manual_seed(100 + rank)  # different data per rank: averaging matters
    return (torch.randint(0, 256, (PER_RANK, 3, 8, 8), dtype=torch.uint8, generator=g),
            torch.randint(0, 5, (PER_RANK,), generator=g))


def _norm(x):
    return x.float() / 255


def _state(model, micro_batch) -> StepState:
    opt = build_optimizer([{"params": list(model.parameters())}], OptimConfig(name="sgd", weight_decay=0), 0.1)
    sched = build_scheduler(opt, SchedConfig(name="none"), epochs=1, steps_per_epoch=10)
    amp = resolve_amp("off", torch.device("cpu"))
    return StepState(model, opt, sched, build_scaler(amp), amp, nn.CrossEntropyLoss(), micro_batch)


WHERE = ("forward", "backward")  # where the memory runs out; one spawn runs both scenarios
CAPS = (1, 25 * 2**20)  # bucket caps in bytes: every tensor in a bucket of its own; all in one bucket
UNUSED = "conv.bias"  # left without a gradient on rank 1: it must count as zeros there, as in DDP


def _reduced_gradients(rank: int) -> dict:
    """Per cap: this rank's own gradients, then what `_average_gradients` made of them."""
    out = {}
    for cap in CAPS:
        net = _Net(None, "none")
        x, y = _batch(rank)
        nn.functional.cross_entropy(net(_norm(x)), y).backward()
        if rank == 1:
            net.conv.bias.grad = None
        own = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        _average_gradients(net, cap_bytes=cap)
        out[cap] = {"own": own, "reduced": {n: p.grad.clone() for n, p in net.named_parameters()},
                    "buffers": {n: b.clone() for n, b in net.named_buffers()}}
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=30))
    try:
        for where in WHERE:
            net = _Net(OOM_ABOVE if rank == OOM_RANK else None, where)
            net.rest[0].eval()  # fixed BN statistics: the reference below is then exact
            state = _state(nn.parallel.DistributedDataParallel(net), micro_batch=PER_RANK)
            for _ in range(2):
                train_step(state, *_batch(rank), _norm)
            torch.save({"micro_batch": state.micro_batch, "retries": state.num_oom_retries,
                        "params": {k: v.detach().clone() for k, v in net.state_dict().items()}},
                       os.path.join(out_dir, f"{where}_rank{rank}.pt"))
        torch.save(_reduced_gradients(rank), os.path.join(out_dir, f"grads_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory, timeout_s: float = 120):
    tmp = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"DDP workers hung for {timeout_s} s (mismatched collectives)")
    return {w: [torch.load(tmp / f"{w}_rank{r}.pt", weights_only=True) for r in range(WORLD)]
            for w in (*WHERE, "grads")}


def _reference_params():
    """One process, the two ranks' batches concatenated, no OOM: what DDP training must reproduce."""
    net = _Net(None, "none")
    net.rest[0].eval()
    state = _state(net, micro_batch=WORLD * PER_RANK)
    batches = [_batch(r) for r in range(WORLD)]
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    for _ in range(2):
        train_step(state, x, y, _norm)
    return net.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("where", WHERE)
def test_oom_on_one_rank_is_agreed_by_all_ranks(ddp_results, where):
    results = ddp_results[where]
    # both ranks halved together 32 -> 16 -> 8 and finished both steps
    assert [r["micro_batch"] for r in results] == [OOM_ABOVE] * WORLD
    assert [r["retries"] for r in results] == [2] * WORLD
    ref = _reference_params()
    for name, value in results[0]["params"].items():
        torch.testing.assert_close(results[1]["params"][name], value, msg=name)  # same model on both ranks
        torch.testing.assert_close(value, ref[name], rtol=1e-5, atol=1e-6, msg=name)  # = mean gradient


@pytest.mark.slow
@pytest.mark.parametrize("cap", CAPS)
def test_bucketed_reduction_gives_the_mean_gradient(ddp_results, cap):
    ranks = [r[cap] for r in ddp_results["grads"]]
    for name, reduced in ranks[0]["reduced"].items():
        own = [r["own"].get(name, torch.zeros_like(reduced)) for r in ranks]  # no gradient counts as 0
        mean = sum(own) / WORLD
        assert not torch.equal(own[0], own[1]), name  # the ranks saw different data
        for r in ranks:
            torch.testing.assert_close(r["reduced"][name], mean, rtol=1e-6, atol=1e-7, msg=name)
    for name, buf in ranks[0]["buffers"].items():  # rank 0's BatchNorm statistics on every rank
        assert torch.equal(ranks[1]["buffers"][name], buf), name

"""One DDP training step, 2 gloo workers on this CPU: gradient averaging one all-reduce per parameter
(the old engine) vs flattened ~25 MiB buckets (the engine now) vs torch DDP's own reducer (gradients
reduced inside the last backward, overlapped, and no out-of-memory agreement between the ranks).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ddp_step.py --rounds 5 --steps 20

Modes, all through `cnnsweep.engine.train_step` on a DDP-wrapped GTSRB-sized model from the registry
(`cnn`: 43 classes, 3x32x32, 3 stages x 2 convs, width 32), fp32, SGD:
  per_param   the old `_average_gradients` (copied below): one all_reduce per parameter, one
              broadcast per buffer, after every micro-step ran under no_sync (the OOM agreement)
  bucketed    the engine as it is: the same agreement, gradients flattened into 25 MiB buckets
  bucketed_noflag  bucketed, minus the one-element OOM-flag all_reduce (isolates the flag's cost)
  ddp         DDP's own path: last micro-step synced in backward, no flag, no explicit averaging
Modes run interleaved, in a rotated order each round, so load from other work on the machine hits
all of them alike; the figure is the median step time over every timed step of all rounds (rank 0,
after a barrier before each step so both ranks start together), and the median time spent in the
explicit averaging itself (gradients and buffers; DDP's own path does it inside the backward).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from cnnsweep.config import OptimConfig, SchedConfig
from cnnsweep.engine import StepState, build_optimizer, build_scaler, build_scheduler, resolve_amp, train_step
from cnnsweep.engine import step as step_module
from cnnsweep.models import create_model

MODES = ("per_param", "bucketed", "bucketed_noflag", "ddp")


def per_param_average(model: nn.Module) -> None:
    """The engine's gradient averaging before buckets: one collective per tensor."""
    world = dist.get_world_size()
    grads = []
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    for work in [dist.all_reduce(g, async_op=True) for g in grads]:
        work.wait()
    for g in grads:
        g.div_(world)
    for work in [dist.broadcast(b, 0, async_op=True) for b in model.buffers()]:
        work.wait()


REDUCE_MS: list[float] = []  # time inside the explicit averaging (gradients + buffers), per step


def _timed(fn):
    def wrapper(model):
        start = time.perf_counter()
        fn(model)
        REDUCE_MS.append((time.perf_counter() - start) * 1e3)
    return wrapper


def _patches(mode: str) -> list:
    if mode == "per_param":
        return [mock.patch.object(step_module, "_average_gradients", _timed(per_param_average))]
    if mode == "ddp":  # train_step then leaves the reduction to DDP's reducer (see _accumulate)
        return [mock.patch.object(step_module, "_is_distributed", lambda model: False)]
    patches = [mock.patch.object(step_module, "_average_gradients", _timed(step_module._average_gradients))]
    if mode == "bucketed_noflag":
        patches.append(mock.patch.object(step_module, "_any_rank", lambda flag, device: flag))
    return patches


def _state(micro_batch: int) -> StepState:
    torch.manual_seed(0)  # same initial weights on both ranks
    model = nn.parallel.DistributedDataParallel(create_model("cnn", 43, 3, 32))
    opt = build_optimizer([{"params": list(model.parameters())}], OptimConfig(name="sgd"), 0.01)
    sched = build_scheduler(opt, SchedConfig(name="none"), epochs=1, steps_per_epoch=1000)
    amp = resolve_amp("off", torch.device("cpu"))
    return StepState(model, opt, sched, build_scaler(amp), amp, nn.CrossEntropyLoss(), micro_batch)


def _time_mode(mode: str, args, x, y) -> tuple[list[float], list[float]]:
    state = _state(args.micro_batch)
    times = []
    REDUCE_MS.clear()
    with ExitStack() as stack:
        for patch in _patches(mode):
            stack.enter_context(patch)
        for i in range(args.warmup + args.steps):
            dist.barrier()
            start = time.perf_counter()
            train_step(state, x, y, lambda b: b.float() / 255)
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1e3)  # ms
    return times, REDUCE_MS[args.warmup:]


def _worker(rank: int, args, init_file: str, out: str) -> None:
    torch.set_num_threads(1)  # 2 processes on 2 cores: more threads only contend
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=120))
    g = torch.Generator().manual_seed(rank)
    x = torch.randint(0, 256, (args.batch // 2, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 43, (args.batch // 2,), generator=g)
    results = {m: [] for m in MODES}
    reduce_ms = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
            step_ms, averaging_ms = _time_mode(mode, args, x, y)
            results[mode].append(step_ms)
            reduce_ms[mode] += averaging_ms
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"step": results, "reduce": reduce_ms}, f)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="global batch (half per worker)")
    parser.add_argument("--micro-batch", type=int, default=64, help="per forward/backward on a worker")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the per-step times here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        mp.spawn(_worker, args=(args, os.path.join(tmp, "init"), out), nprocs=2)
        with open(out) as f:
            both = json.load(f)
    results, reduce_ms = both["step"], both["reduce"]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "ms": both}, f)
    base = statistics.median(t for rnd in results["ddp"] for t in rnd)
    print(f"global batch {args.batch}, micro-batch {args.micro_batch}, {args.rounds} rounds x {args.steps} steps")
    print(f"{'mode':<16} {'median ms':>9} {'vs ddp':>7} {'averaging ms':>12}  per-round medians")
    for mode, rounds in results.items():
        med = statistics.median(t for rnd in rounds for t in rnd)
        avg = f"{statistics.median(reduce_ms[mode]):.2f}" if reduce_ms[mode] else "(in backward)"
        per_round = ", ".join(f"{statistics.median(rnd):.1f}" for rnd in rounds)
        print(f"{mode:<16} {med:>9.1f} {med / base:>7.3f} {avg:>12}  {per_round}")


if __name__ == "__main__":
    main()

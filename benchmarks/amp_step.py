"""bf16 autocast vs fp32 per training step on this CPU, for the custom CNN of each shipped recipe.

    .venv/bin/python benchmarks/amp_step.py [--threads 2] [--rounds 2] [--steps 10]

One forward + backward + AdamW step on random input of the recipe's image size and micro-batch, the two
precisions alternated round by round; prints milliseconds per step (mean of --steps, after one warm-up step)
for every round, and whether the CPU has bf16 math (what `train.amp: auto` looks at).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cnnsweep.config import load_config
from cnnsweep.engine.amp import cpu_has_bf16_math
from cnnsweep.models import build_model

# (sweep file, channels, side, classes, images per step): each recipe's input and micro-batch
RECIPES = [("sweeps/mnist.yaml", 1, 28, 10, 128), ("sweeps/gtsrb.yaml", 3, 32, 43, 32),
           ("sweeps/ahe.yaml", 3, 64, 10, 64)]


def step_ms(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            bf16: bool, steps: int) -> float:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bf16 math on this CPU: {cpu_has_bf16_math()}; {args.threads} threads")
    for path, channels, side, classes, batch in RECIPES:
        torch.manual_seed(0)
        model = build_model(load_config(path).model, classes, channels, side)
        opt = torch.optim.AdamW(model.parameters())
        x, y = torch.randn(batch, channels, side, side), torch.randint(0, classes, (batch,))
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for name in times:
                times[name].append(step_ms(model, opt, x, y, name == "bf16", args.steps))
        print(f"{path}: batch {batch}, ms per step " + ", ".join(
            f"{k} {' / '.join(f'{v:.1f}' for v in vs)}" for k, vs in times.items()))


if __name__ == "__main__":
    main()

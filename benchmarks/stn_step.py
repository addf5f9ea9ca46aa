"""The training-step cost of `model.stn`: the shipped GTSRB model with and without its spatial transformer.

Forward + backward + AdamW step on batches of 32 RGB 32x32 images (the recipe's micro-batch), one
process, alternating the two models for several rounds so that both see the same machine state.
Prints the median milliseconds per step of each and their ratio.

    .venv/bin/python benchmarks/stn_step.py --threads 2 --rounds 3 --steps 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from cnnsweep.config import load_config
from cnnsweep.models import build_model

REPO = Path(__file__).resolve().parents[1]


def build(stn: bool) -> torch.nn.Module:
    cfg = load_config(REPO / "sweeps" / "gtsrb.yaml", [f"model.stn={str(stn).lower()}"])
    return build_model(cfg.model, num_classes=43, in_channels=3, image_size=32)


def step_ms(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 43, (args.batch,))
    runs = {}
    for name, stn in (("plain", False), ("stn", True)):
        model = build(stn).train()
        runs[name] = {"model": model, "opt": torch.optim.AdamW(model.parameters(), 1e-3), "ms": [],
                      "params": sum(p.numel() for p in model.parameters())}
        step_ms(model, runs[name]["opt"], x, y, 5)  # warm-up: allocator, oneDNN kernels
    for _ in range(args.rounds):
        for run in runs.values():
            run["ms"].append(round(step_ms(run["model"], run["opt"], x, y, args.steps), 2))
    out = {name: {"median_ms": statistics.median(r["ms"]), "rounds_ms": r["ms"], "params": r["params"]}
           for name, r in runs.items()}
    out["ratio_stn_to_plain"] = round(out["stn"]["median_ms"] / out["plain"]["median_ms"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""bf16 autocast vs fp32 for a whole training run on this CPU: the bare engine (`fit`, one process, the
README's notebook block) on sweeps/quickstart.yaml for 3 epochs, the two settings alternated.

    .venv/bin/python benchmarks/amp_quickstart.py [--rounds 2] [--epochs 3]
"""

import argparse
import time

from cnnsweep.config import load_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.engine.amp import cpu_has_bf16_math


def seconds(amp: str, epochs: int) -> float:
    cfg = load_config("sweeps/quickstart.yaml", [f'train.amp="{amp}"', f"train.epochs={epochs}"])
    start = time.perf_counter()
    fit(cfg, load_dataset(cfg.data), LocalHooks())
    return time.perf_counter() - start


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    print(f"bf16 math on this CPU: {cpu_has_bf16_math()}")
    for _ in range(args.rounds):
        for amp in ("bf16", "off"):
            print(f"amp {amp:<4} {seconds(amp, args.epochs):6.1f} s for {args.epochs} epochs", flush=True)

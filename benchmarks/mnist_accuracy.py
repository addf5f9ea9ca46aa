"""sweeps/mnist.yaml with `--set`-style overrides, trained by the bare engine in one process (`fit`,
LocalHooks, 2 torch threads), scored on the official t10k test digits.

    .venv/bin/python benchmarks/mnist_accuracy.py [override ...]
    .venv/bin/python benchmarks/mnist_accuracy.py model.width=32 train.epochs=1
"""

import json
import sys
import time

import torch

from cnnsweep.config import load_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit


def main(overrides: list[str]) -> None:
    torch.set_num_threads(2)
    cfg = load_config("sweeps/mnist.yaml", ["data.root=../shared/data/mnist", *overrides])
    start = time.perf_counter()
    history: list[dict] = []

    def on_report(m: dict) -> None:
        history.append(m)
        keep = ("epoch", "train/loss", "train/seconds", "val/acc", "test/acc")
        print(json.dumps({k: round(v, 4) for k, v in m.items() if k in keep}), flush=True)

    fit(cfg, load_dataset(cfg.data), LocalHooks(on_report=on_report))
    print("RESULT", json.dumps({"overrides": overrides, "seconds": round(time.perf_counter() - start, 1),
                                "test_acc": history[-1].get("test/acc"), "val_acc": history[-1].get("val/acc")}))


if __name__ == "__main__":
    main(sys.argv[1:])

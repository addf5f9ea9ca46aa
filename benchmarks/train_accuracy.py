"""Accuracy of a sweep file's base config as `cnnsweep train` would train it, by the bare engine in one
process (`fit`, LocalHooks, 2 torch threads): val/acc per epoch, and test/acc at the end where the dataset
has a test split (MNIST's official t10k digits). `--set`-style overrides follow the sweep file; the data
root defaults to the dataset's folder in ../shared/data. The one process trains on the whole effective batch
(scaling.num_workers=1 unless overridden), as `cnnsweep train`'s workers do together.

    .venv/bin/python benchmarks/train_accuracy.py sweeps/mnist.yaml
    .venv/bin/python benchmarks/train_accuracy.py sweeps/mnist.yaml model.width=32 train.epochs=1
    .venv/bin/python benchmarks/train_accuracy.py sweeps/ahe_finetune.yaml \
        model.weights=../shared/weights/tf_efficientnet_lite0.in1k.pth
"""

import json
import sys
import time

import torch

from cnnsweep.config import load_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit

DATA_ROOTS = {"image_folder": "../shared/data/ahe64", "gtsrb_pickle": "../shared/data/gtsrb",
              "mnist": "../shared/data/mnist"}
SHOWN = ("epoch", "train/loss", "train/seconds", "val/acc", "val/loss", "test/acc")


def main(path: str, overrides: list[str]) -> None:
    torch.set_num_threads(2)
    root = DATA_ROOTS.get(load_config(path).data.name)
    cfg = load_config(path, ([f"data.root={root}"] if root else []) + ["scaling.num_workers=1"] + overrides)
    start = time.perf_counter()
    history: list[dict] = []

    def on_report(m: dict) -> None:
        history.append(m)
        print(json.dumps({k: round(v, 4) for k, v in m.items() if k in SHOWN}), flush=True)

    fit(cfg, load_dataset(cfg.data), LocalHooks(on_report=on_report))
    print("RESULT", json.dumps({"config": path, "overrides": overrides,
                                "seconds": round(time.perf_counter() - start, 1),
                                "best_val_acc": max(h.get("val/acc", 0.0) for h in history),
                                "val_acc": history[-1].get("val/acc"), "test_acc": history[-1].get("test/acc")}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

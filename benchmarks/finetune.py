"""Fine-tuning vs from scratch, trained by the bare engine in one process (`fit`, LocalHooks, 2 torch
threads): a sweep file plus `--set`-style overrides; prints val/acc and seconds per epoch.

    .venv/bin/python benchmarks/finetune.py sweeps/ahe_finetune.yaml [override ...]
    .venv/bin/python benchmarks/finetune.py sweeps/ahe.yaml model.name=timm/tf_efficientnet_lite0 \
        model.pretrained=true model.weights=../shared/weights/tf_efficientnet_lite0.in1k.pth train.epochs=3

Runs without the weights files are from scratch; the weight paths are the ones in ../shared/weights.
"""

import json
import sys
import time

import torch

from cnnsweep.config import load_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit

DATA_ROOTS = {"ahe": "../shared/data/ahe64", "gtsrb": "../shared/data/gtsrb", "mnist": "../shared/data/mnist"}


def main(path: str, overrides: list[str]) -> None:
    torch.set_num_threads(2)
    cfg = load_config(path)
    root = next((r for k, r in DATA_ROOTS.items() if cfg.name.startswith(k)), None)
    cfg = load_config(path, ([f"data.root={root}"] if root else []) + overrides)
    start = time.perf_counter()
    history: list[dict] = []

    def on_report(m: dict) -> None:
        history.append(m)
        keep = ("epoch", "train/loss", "train/seconds", "val/acc", "val/loss")
        print(json.dumps({k: round(v, 4) for k, v in m.items() if k in keep}), flush=True)

    fit(cfg, load_dataset(cfg.data), LocalHooks(on_report=on_report))
    print("RESULT", json.dumps({"config": path, "overrides": overrides,
                                "seconds": round(time.perf_counter() - start, 1),
                                "best_val_acc": max(h.get("val/acc", 0.0) for h in history),
                                "val_acc": history[-1].get("val/acc")}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

"""Ray Train overhead: the same model, data and epochs trained by the bare engine loop and by a
TorchTrainer with one worker, in one run on the same machine.

Prints the steady-state epoch time of each (epochs after the first, which pays for warm-up), the
ratio Ray / bare (goal: <= 1.05), and images per second.

    .venv/bin/python benchmarks/train_overhead.py --data ../shared/data/gtsrb --epochs 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep import metrics as M


def build_cfg(args):
    data = ({"name": "gtsrb_pickle", "root": args.data, "max_train_samples": args.max_train}
            if args.data else {"name": "digits"})
    return validate_config({
        "name": "overhead", "data": data,
        "model": {"num_stages": 3, "width": 32, "convs_per_stage": 2},
        "augment": {"rotation": 10, "translate": 0.1},
        "train": {"epochs": args.epochs, "lr": 3e-3, "batch_size": 128, "amp": "bf16", "eval_batch_size": 1024},
        "scaling": {"num_workers": 1, "cpus_per_worker": args.threads}})


def steady(history, num_train):
    """Median wall time between consecutive epoch reports (training + validation + checkpoint +
    reporting), skipping epoch 0, which pays one-off warm-up; and images/s over that time."""
    stamps = [h[M.EPOCH_END_TIME] for h in history]
    times = [b - a for a, b in zip(stamps[1:], stamps[2:])] or [stamps[-1] - stamps[0]]
    epoch_s = statistics.median(times)
    return epoch_s, num_train / epoch_s


def run_bare(cfg, dataset):
    torch.set_num_threads(int(cfg.scaling.cpus_per_worker))
    with tempfile.TemporaryDirectory() as out:  # a checkpoint per epoch, as under Ray
        return fit(cfg, dataset, LocalHooks(output=out, num_to_keep=2)).history


def run_ray(cfg, dataset):
    from cnnsweep.distributed import train as ray_train
    from cnnsweep.distributed.cluster import start_ray

    start_ray(num_cpus=int(cfg.scaling.cpus_per_worker) + 1)
    with tempfile.TemporaryDirectory() as out:
        ray_train.run_candidate(cfg, out, dataset)
        with open(f"{out}/{ray_train.HISTORY_FILE}") as f:
            return [json.loads(line) for line in f]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="GTSRB pickle folder (default: embedded digits)")
    p.add_argument("--max-train", type=int, default=None, help="stratified training subset")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both runs")
    p.add_argument("--repeats", type=int, default=2, help="alternate bare/Ray runs this many times")
    args = p.parse_args()
    cfg = build_cfg(args)
    dataset = load_dataset(cfg.data)
    n = len(dataset.train)
    runs = {"bare engine ": [], "TorchTrainer": []}
    for _ in range(args.repeats):  # alternating, so background load hits both alike
        runs["bare engine "].append(steady(run_bare(cfg, dataset), n))
        runs["TorchTrainer"].append(steady(run_ray(cfg, dataset), n))
    print(f"train images: {n}, epochs: {args.epochs}, threads: {args.threads}, repeats: {args.repeats}")
    best = {}
    for name, results in runs.items():
        best[name] = min(t for t, _ in results)
        per_run = ", ".join(f"{t:.2f}" for t, _ in results)
        print(f"{name}: best {best[name]:6.2f} s/epoch  {n / best[name]:7.0f} img/s   (each run: {per_run})")
    ratio = best["TorchTrainer"] / best["bare engine "]
    print(f"ratio Ray/bare (best steady-state epoch time): {ratio:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()

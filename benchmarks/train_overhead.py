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
import time

import torch

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit


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
    stamps = [h["timestamp"] for h in history]
    times = [b - a for a, b in zip(stamps[1:], stamps[2:])] or [stamps[-1] - stamps[0]]
    epoch_s = statistics.median(times)
    return epoch_s, num_train / epoch_s


def run_bare(cfg, dataset):
    torch.set_num_threads(int(cfg.scaling.cpus_per_worker))
    with tempfile.TemporaryDirectory() as out:  # a checkpoint per epoch, as under Ray
        return fit(cfg, dataset, LocalHooks(output=out, num_to_keep=2)).history


def run_ray(cfg, dataset):
    from cnnsweep import ray_train
    from cnnsweep.ray_cluster import start_ray

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
    args = p.parse_args()
    cfg = build_cfg(args)
    dataset = load_dataset(cfg.data)
    t0 = time.perf_counter()
    n = len(dataset.train)
    bare_t, bare_ips = steady(run_bare(cfg, dataset), n)
    t1 = time.perf_counter()
    ray_t, ray_ips = steady(run_ray(cfg, dataset), n)
    t2 = time.perf_counter()
    print(f"train images: {n}, epochs: {args.epochs}, threads: {args.threads}")
    print(f"bare engine : {bare_t:7.2f} s/epoch  {bare_ips:9.0f} img/s  (wall {t1 - t0:.0f} s)")
    print(f"TorchTrainer: {ray_t:7.2f} s/epoch  {ray_ips:9.0f} img/s  (wall {t2 - t1:.0f} s, incl. Ray start)")
    print(f"ratio Ray/bare (steady-state epoch time): {ray_t / bare_t:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()

"""The actors a Ray Train run starts besides its workers, and whether dropping one (the preemption watcher,
which a single machine without spot instances does not need) shortens a run.

One private Ray instance; one-report TorchTrainer runs (1 worker), alternating
RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1 / 0 (Ray Train's controller reads it from the driver's environment).
Prints each run's wall seconds, the medians, and how many actors of each class the runs created.

    .venv/bin/python benchmarks/train_side_actors.py --repeats 4
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import tempfile
import time

import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.state import list_actors

WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def one_report(config: dict) -> None:
    ray.train.report({"x": 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    from cnnsweep.distributed.cluster import start_ray, stop_ray
    from cnnsweep.distributed.train import TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S

    start_ray()  # the private instance `cnnsweep train` starts (its dashboard serves the state API)
    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S)  # as build_trainer sets it
    storage, seconds = tempfile.mkdtemp(), {"1": [], "0": []}
    try:
        for i in range(args.repeats):
            for flag in seconds:
                os.environ[WATCHER_ENV] = flag
                start = time.perf_counter()
                TorchTrainer(one_report, scaling_config=ScalingConfig(num_workers=1),
                             run_config=RunConfig(storage_path=storage, name=f"run{i}_{flag}")).fit()
                seconds[flag].append(time.perf_counter() - start)
                print(f"watcher={flag} run {i}: {seconds[flag][-1]:.2f} s", flush=True)
        for flag, values in seconds.items():
            print(f"watcher={flag}: median {statistics.median(values):.2f} s of {[round(v, 1) for v in values]}")
        print(dict(collections.Counter(a.class_name for a in list_actors(limit=10_000))))
    finally:
        stop_ray()


if __name__ == "__main__":
    main()

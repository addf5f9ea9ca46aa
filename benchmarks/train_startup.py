"""What a Ray Train run's start-up pays for the modules its processes import.

Ray Train's controller unpickles the training function, which imports the module that defines it; the
worker runs it. Two one-report training functions, alternating on one Ray instance:
- `eager`: defined in a module that imports the engine at its top (as cnnsweep.distributed.train did),
- `lazy`: the same function importing the engine inside its body (as cnnsweep.distributed.train does now),
so only the controller's imports differ. Also prints, each in a fresh process, the seconds to import
cnnsweep.distributed.train after ray.train.torch (what a controller or a Tune trial pays on top of Ray).

    .venv/bin/python benchmarks/train_startup.py --repeats 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EAGER = '''import cnnsweep.engine.fit  # noqa: F401  (the engine, at import time)


def train(config):
    import ray.train

    ray.train.report({"x": 1})
'''
LAZY = '''def train(config):
    import ray.train

    import cnnsweep.engine.fit  # noqa: F401  (the engine, in the worker only)

    ray.train.report({"x": 1})
'''
IMPORT_TIME = ("import time, ray.train.torch; t = time.perf_counter(); import cnnsweep.distributed.train; "
               "print(time.perf_counter() - t)")


def import_seconds(runs: int) -> list[float]:
    return [float(subprocess.run([sys.executable, "-c", IMPORT_TIME], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(runs)]


def fit_seconds(module, storage: str) -> float:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    start = time.perf_counter()
    TorchTrainer(module.train, scaling_config=ScalingConfig(num_workers=1),
                 run_config=RunConfig(storage_path=storage, name=f"run{time.time_ns()}")).fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    from cnnsweep.distributed.train import TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S

    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S)  # as cnnsweep's build_trainer sets it
    mods = Path(tempfile.mkdtemp(prefix="train_startup_"))
    (mods / "startup_eager.py").write_text(EAGER)
    (mods / "startup_lazy.py").write_text(LAZY)
    sys.path.insert(0, str(mods))
    import ray
    import startup_eager
    import startup_lazy

    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(mods)}})
    seconds: dict[str, list[float]] = {"eager": [], "lazy": []}
    try:
        for i in range(args.repeats):  # alternate the order, so neither always runs on a warmer machine
            order = [("eager", startup_eager), ("lazy", startup_lazy)][:: 1 if i % 2 == 0 else -1]
            for name, module in order:
                seconds[name].append(round(fit_seconds(module, str(mods / "storage")), 2))
    finally:
        ray.shutdown()
    result = {name: {"median_s": statistics.median(v), "runs_s": v} for name, v in seconds.items()}
    result["import_cnnsweep_distributed_train_s"] = [round(s, 2) for s in import_seconds(3)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

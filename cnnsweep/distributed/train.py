"""Ray Train V2 layer: run one candidate (`engine.fit`) as a `TorchTrainer` with DDP.

Part of `cnnsweep.distributed`, the only package that imports ray.
Every point where the code touches Ray is marked `# Ray:`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import ray
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from cnnsweep import metrics as M
from cnnsweep.checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from cnnsweep.config import ConfigError, RunConfig, config_to_dict, validate_config
from cnnsweep.data import ImageDataset, load_dataset
from cnnsweep.engine.hooks import FitHooks  # not the whole engine: see train_loop_per_worker

HISTORY_FILE = "history.jsonl"
RUN_NAME = "train"  # the Ray Train run's folder under a `cnnsweep train` output
CRASH_ENV = "CNNSWEEP_TEST_CRASH_ONCE"  # test hook: path of a marker file; see _maybe_crash_once

# Ray Train's controller collects a worker's report when it polls the workers, and the worker's next
# report waits until the last one was collected (a result queue of one): so every epoch lasts at least
# one polling interval, Ray's default 2 s. Tiny datasets (the quickstart's 1,437 digits train in ~0.8 s
# per epoch) spent most of their time waiting. Ray reads the interval from this environment variable in
# the process that starts a run and passes it on to the controller; a value the user set wins.
TRAIN_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
TRAIN_POLL_INTERVAL_S = "0.5"  # seconds: a poll is one small remote call per worker


class RayTrainHooks(FitHooks):
    """FitHooks for a Ray Train worker: device, DDP, report + checkpoint, resume."""

    def __init__(self, history_path: Optional[str] = None):
        ctx = ray.train.get_context()  # Ray: rank and world size of this worker
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()  # Ray: the GPU Ray assigned, or cpu
        self.history_path = history_path

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        # Ray: wraps in DistributedDataParallel when world_size > 1 (process group set up by TorchTrainer)
        return ray.train.torch.prepare_model(model, move_to_device=False)

    def load_resume_state(self) -> Optional[CheckpointState]:
        ckpt = ray.train.get_checkpoint()  # Ray: latest registered checkpoint after a worker restart
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return load_checkpoint(d)

    def report(self, metrics: dict[str, float], checkpoint_state: Optional[CheckpointState]) -> None:
        _maybe_crash_once(int(metrics["epoch"]), self.rank)
        if self.rank == 0 and self.history_path:
            with open(self.history_path, "a") as f:  # the CLI's progress bar follows this file
                f.write(json.dumps(metrics) + "\n")
        # Every rank must call report the same number of times (it is a barrier); only rank 0
        # passes a checkpoint. Ray registers the checkpoint only after it is fully persisted, so a
        # crash while writing leaves the previous checkpoint as the latest one.
        if checkpoint_state is None:
            ray.train.report(metrics)  # Ray
            return
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(checkpoint_state, d)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))  # Ray


def _maybe_crash_once(epoch: int, rank: int) -> None:
    """Fault injection for the resume test: kill rank 0 once, at the end of epoch 1 before it reports
    (epoch 0's checkpoint is registered by then), so the run must resume from epoch 0's checkpoint."""
    marker = os.environ.get(CRASH_ENV)
    if marker and epoch == 1 and rank == 0 and not os.path.exists(marker):
        Path(marker).write_text("crashed once\n")
        # The controller collects reports when it polls the workers (every 2 s by default,
        # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S); wait past that so epoch 0's checkpoint is registered.
        time.sleep(5)
        os._exit(1)  # a hard death, like an OOM kill: no exception handling, no cleanup


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point of each Ray Train worker process."""
    # imported here, not at the top: Ray Train's controller and a Tune trial import this module too (to
    # unpickle this function, to build the trainer), and neither needs the engine's seconds of imports
    from cnnsweep.engine.fit import fit

    cfg = validate_config(loop_config["config"])
    threads = max(1, int(cfg.scaling.cpus_per_worker))
    torch.set_num_threads(threads)  # one intra-op thread per reserved CPU: no oversubscription
    dataset: ImageDataset = ray.get(loop_config["dataset"])  # Ray: loaded once by the driver, shared
    fit(cfg, dataset, RayTrainHooks(loop_config.get("history_path")))


def build_scaling_config(cfg_scaling) -> ScalingConfig:
    resources = {"CPU": cfg_scaling.cpus_per_worker}
    if cfg_scaling.use_gpu:
        resources["GPU"] = cfg_scaling.gpus_per_worker  # < 1 packs several workers onto one GPU
    return ScalingConfig(num_workers=cfg_scaling.num_workers, use_gpu=cfg_scaling.use_gpu,
                         resources_per_worker=resources)


def build_trainer(cfg: RunConfig, dataset_ref: Any, *, storage_path: str, name: str,
                  history_path: Optional[str] = None, callbacks: Optional[list] = None,
                  worker_env: Optional[dict[str, str]] = None, metric: str = M.DEFAULT_METRIC) -> TorchTrainer:
    """A TorchTrainer for one candidate. `dataset_ref` is `ray.put(ImageDataset)`;
    `worker_env` adds environment variables to the worker processes (e.g. NCCL settings);
    `metric` ranks the kept checkpoints (a sweep passes its `search.metric`, so `best/` follows it)."""
    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S)  # Ray: read when the trainer's run starts
    run_config = RayRunConfig(  # Ray
        name=name, storage_path=storage_path, callbacks=callbacks,
        worker_runtime_env={"env_vars": worker_env} if worker_env else None,
        failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep,
                                           checkpoint_score_attribute=metric, checkpoint_score_order=M.MODES[metric]))
    return TorchTrainer(  # Ray: gloo on CPU, nccl on GPU
        train_loop_per_worker,
        train_loop_config={"config": config_to_dict(cfg), "dataset": dataset_ref, "history_path": history_path},
        scaling_config=build_scaling_config(cfg.scaling),
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        run_config=run_config)


@dataclass
class TrainOutcome:
    metrics: dict[str, Any]
    checkpoint: Optional[str]  # the last checkpoint
    best_checkpoint: Optional[str]  # best by the default metric (val/acc) among those kept
    output: str


def _outcome(result: Any, output: Path) -> TrainOutcome:
    best = result.get_best_checkpoint(M.DEFAULT_METRIC, M.MODES[M.DEFAULT_METRIC]) if result.best_checkpoints else None
    return TrainOutcome(dict(result.metrics or {}), result.checkpoint.path if result.checkpoint else None,
                        best.path if best else None, str(output))


def load_finished_run(cfg: RunConfig, output: str | Path) -> Optional[TrainOutcome]:
    """The outcome of the Ray Train run under `output` when its latest registered checkpoint is its last
    epoch, read from the run's checkpoint index on disk (no Ray instance needed); None when there is no
    such run or it has epochs left. A resumed run that has nothing left to train answers from this."""
    out = Path(output).resolve()
    if not (out / RUN_NAME).is_dir():
        return None
    train_logger = logging.getLogger("ray.train")  # it tells, at INFO, how to start afresh instead: not asked here
    level = train_logger.level
    train_logger.setLevel(logging.WARNING)
    try:
        result = ray.train.Result.from_path(str(out / RUN_NAME))  # Ray: reads the run's checkpoint index
    except (RuntimeError, ValueError, OSError, KeyError, TypeError):  # no index yet, or one we cannot read
        return None
    finally:
        train_logger.setLevel(level)
    if result.checkpoint is None or int((result.metrics or {}).get(M.EPOCH, -1)) + 1 < cfg.train.epochs:
        return None
    return _outcome(result, out)


def run_candidate(cfg: RunConfig, output: str | Path, dataset: Optional[ImageDataset] = None,
                  worker_env: Optional[dict[str, str]] = None, resume: bool = False) -> TrainOutcome:
    """Train one candidate with Ray Train on the connected Ray cluster; outputs go under `output`.

    Ray Train continues a run with the same name and storage from its latest checkpoint, whatever the
    config: so an existing run under `output` is continued only with `resume`, else refused."""
    out = Path(output).resolve()
    if not resume and (out / RUN_NAME).exists():
        raise ConfigError(f"{out} already holds a Ray Train run ({RUN_NAME}/): pass resume=True (--resume) to "
                          "continue it, or choose another output")
    out.mkdir(parents=True, exist_ok=True)
    dataset = dataset if dataset is not None else load_dataset(cfg.data)  # fail fast, before any worker starts
    history = out / HISTORY_FILE
    history.unlink(missing_ok=True)
    trainer = build_trainer(cfg, ray.put(dataset), storage_path=str(out), name=RUN_NAME,  # Ray: object store
                            history_path=str(history), worker_env=worker_env)
    return _outcome(trainer.fit(), out)  # Ray: fit raises TrainingFailedError when retries are exhausted

"""`cnnsweep train`: one candidate on Ray Train, with a progress bar and a JSON summary."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from cnnsweep import metrics as M
from cnnsweep.atomic import atomic_write_json
from cnnsweep.config import ConfigError, RunConfig, check_resumed_config, save_config
from cnnsweep.lockfile import folder_entries, hold_output_lock

CONFIG_FILE = "config.yaml"
RESULT_FILE = "result.json"


def default_output(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _follow(path: Path, on_line: Callable[[dict], None], stop: threading.Event) -> None:
    """Tail a JSON-lines file written by rank 0 (works for local and shared-filesystem output)."""
    seen = 0
    while not stop.wait(0.5):
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        for line in lines[seen:]:
            on_line(json.loads(line))
        seen = len(lines)


def prepare_output(cfg: RunConfig, out: Path, resume: bool) -> None:
    """Refuse a folder that already holds something unless resuming; on --resume, refuse a changed
    config. Call with the folder's lock held (so no other run can fill it in between)."""
    entries = folder_entries(out)
    if not resume and entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(f"{out} is not empty (holds {shown}): pass --resume to continue the run there from "
                          "its last checkpoint, or choose another --output")
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise ConfigError(f"--resume: no run to continue in {out} (no {CONFIG_FILE}); run without --resume "
                              "to start one")
        check_resumed_config(cfg, out / CONFIG_FILE)


def save_result(out: Path, summary: dict[str, Any]) -> Path:
    """result.json, replaced atomically: a kill mid-write leaves the previous file or the new one."""
    return atomic_write_json(out / RESULT_FILE, summary, indent=2, default=str)


def run_train_job(cfg: RunConfig, output: Optional[str] = None, address: Optional[str] = None,
                  on_epoch: Optional[Callable[[dict], None]] = None, resume: bool = False) -> dict[str, Any]:
    """Run one candidate end to end (with `resume`, continue the run in `output` from its last
    checkpoint); returns the summary that `--json` prints. The output folder stays locked throughout."""
    from cnnsweep.data import load_dataset

    out = Path(output) if output else default_output(cfg)
    with hold_output_lock(out):
        prepare_output(cfg, out, resume)
        dataset = load_dataset(cfg.data)  # data errors surface here, before Ray starts (nothing written yet)
        _check_model(cfg)
        if not resume:
            save_config(cfg, out / CONFIG_FILE)  # the resolved config, next to the results
        summary = _train(cfg, out, address, dataset, on_epoch, resume)
        save_result(out, summary)
    return summary


def _check_model(cfg: RunConfig) -> None:
    """A model that cannot be built here (unknown name, a missing weights file, no reachable pretrained
    weights) is refused before Ray starts, not by every training worker after it."""
    from cnnsweep.models import ModelError
    from cnnsweep.models.availability import model_problem

    problem = model_problem(cfg.model.name, cfg.model.pretrained, cfg.model.weights)
    if problem is not None:
        raise ModelError(problem)


def _train(cfg: RunConfig, out: Path, address: Optional[str], dataset: Any,
           on_epoch: Optional[Callable[[dict], None]], resume: bool) -> dict[str, Any]:
    from cnnsweep.distributed import train as ray_train
    from cnnsweep.distributed.cluster import start_ray

    finished = ray_train.load_finished_run(cfg, out) if resume else None
    if finished is not None:  # every epoch is done: answer from its checkpoints, without starting Ray
        notes = [*dataset.notes, f"{out}: all {cfg.train.epochs} epochs were already done; nothing was trained"]
        return _summary(finished, notes, time.perf_counter())
    start_ray(address)
    start = time.perf_counter()  # training time: Ray's start-up is not counted
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(out.resolve() / ray_train.HISTORY_FILE,
                                                      on_epoch or (lambda m: None), stop), daemon=True)
    follower.start()
    try:
        outcome = ray_train.run_candidate(cfg, out, dataset, resume=resume)
    finally:
        stop.set()
        follower.join()
    return _summary(outcome, dataset.notes, start)


def _summary(outcome: Any, notes: list[str], start: float) -> dict[str, Any]:
    m = outcome.metrics
    return {"val_acc": m.get(M.VAL_ACC), "val_f1_macro": m.get(M.VAL_F1), "test_acc": m.get(M.TEST_ACC),
            "checkpoint": outcome.checkpoint, "best_checkpoint": outcome.best_checkpoint,
            "epochs": int(m.get(M.EPOCH, -1)) + 1, "seconds": round(time.perf_counter() - start, 2),
            "output": str(Path(outcome.output)), "notes": notes, "metrics": m}

"""`cnnsweep train`: one candidate on Ray Train, with a progress bar and a JSON summary."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from cnnsweep.config import RunConfig, save_config
from cnnsweep import metrics as M


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


def run_train_job(cfg: RunConfig, output: Optional[str] = None, address: Optional[str] = None,
          on_epoch: Optional[Callable[[dict], None]] = None) -> dict[str, Any]:
    """Run one candidate end to end; returns the summary that `--json` prints."""
    from cnnsweep.distributed import train as ray_train
    from cnnsweep.data import load_dataset
    from cnnsweep.distributed.cluster import start_ray

    out = Path(output) if output else default_output(cfg)
    save_config(cfg, out / "config.yaml")  # the resolved config, next to the results
    dataset = load_dataset(cfg.data)  # data errors surface here, before Ray starts
    start_ray(address)
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(out.resolve() / ray_train.HISTORY_FILE,
                                                      on_epoch or (lambda m: None), stop), daemon=True)
    start = time.perf_counter()
    follower.start()
    try:
        outcome = ray_train.run_candidate(cfg, out, dataset)
    finally:
        stop.set()
        follower.join()
    m = outcome.metrics
    summary = {"val_acc": m.get(M.VAL_ACC), "val_f1_macro": m.get(M.VAL_F1), "test_acc": m.get(M.TEST_ACC),
               "checkpoint": outcome.checkpoint, "best_checkpoint": outcome.best_checkpoint,
               "epochs": int(m.get(M.EPOCH, -1)) + 1, "seconds": round(time.perf_counter() - start, 2),
               "output": str(Path(outcome.output)), "notes": dataset.notes, "metrics": m}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    return summary

"""What differs between a bare process and a distributed worker, behind one small interface.

`fit` calls only these methods, so the same loop runs in a notebook, on a GPU box with no Ray,
or inside a Ray Train worker (see `cnnsweep.distributed.train.RayTrainHooks`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from cnnsweep.checkpoint import CheckpointState, load_checkpoint, save_checkpoint_dir


class FitHooks:
    """Single-process defaults: one device, no DDP, no reporting."""

    rank: int = 0
    world_size: int = 1

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def load_resume_state(self) -> Optional[CheckpointState]:
        return None

    def report(self, metrics: dict[str, float], checkpoint_state: Optional[CheckpointState]) -> None:
        pass


class LocalHooks(FitHooks):
    """Bare-engine runs: checkpoints under `output/checkpoints/epoch_NNNN`, plus `history.jsonl`."""

    def __init__(self, output: str | Path | None = None, device: str | torch.device | None = None,
                 resume_from: str | Path | None = None, num_to_keep: Optional[int] = None,
                 on_report: Optional[Callable[[dict], None]] = None):
        super().__init__(device)
        self.output = Path(output) if output else None
        self.resume_from = resume_from
        self.num_to_keep = num_to_keep
        self.on_report = on_report
        self.last_checkpoint: Optional[Path] = None

    def load_resume_state(self) -> Optional[CheckpointState]:
        return load_checkpoint(self.resume_from) if self.resume_from else None

    def report(self, metrics: dict[str, float], checkpoint_state: Optional[CheckpointState]) -> None:
        if self.on_report:
            self.on_report(metrics)
        if self.output is None:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / "history.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if checkpoint_state is not None:
            self.last_checkpoint = self._save(checkpoint_state, int(metrics["epoch"]))

    def _save(self, state: CheckpointState, epoch: int) -> Path:
        root = self.output / "checkpoints"
        # a kill leaves the previous epoch_* (a resumed run rewrites one) or the complete new one
        final = save_checkpoint_dir(state, root / f"epoch_{epoch:04d}")
        if self.num_to_keep:
            for old in sorted(root.glob("epoch_*"))[:-self.num_to_keep]:
                shutil.rmtree(old, ignore_errors=True)
        return final

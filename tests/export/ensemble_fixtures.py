"""Tiny real GTSRB members (seconds each) and a sweep-style folder with their leaderboard."""

from __future__ import annotations

import csv
from pathlib import Path

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep import metrics as M


def tiny_gtsrb(root: Path, seed: int, grayscale: bool, equalize: str = "none") -> dict:
    return {"name": "tiny", "data": {"name": "gtsrb_pickle", "root": str(root), "max_train_samples": 800,
                                     "max_val_samples": 300, "grayscale": grayscale, "equalize": equalize},
            "model": {"num_stages": 2, "width": 6, "convs_per_stage": 1},
            "train": {"epochs": 1, "batch_size": 64, "lr": 3e-3, "amp": "off", "seed": seed}}


def train_member(cfg_dict: dict, out: Path) -> tuple[Path, float]:
    cfg = validate_config(cfg_dict)
    hooks = LocalHooks(output=out, device="cpu")
    result = fit(cfg, load_dataset(cfg.data), hooks)
    return hooks.last_checkpoint, result.metrics[M.VAL_ACC]


def make_sweep(folder: Path, root: Path, members: list[tuple[int, bool, str]]) -> Path:
    """members: (seed, grayscale, equalize) each -> trained, ranked by val/acc into leaderboard.csv."""
    rows = []
    for seed, gray, eq in members:
        trial = f"t{seed}_{'gray' if gray else 'rgb'}_{eq}"
        ckpt, acc = train_member(tiny_gtsrb(root, seed, gray, eq), folder / trial)
        rows.append({"trial_id": trial, M.VAL_ACC: acc, "checkpoint": str(ckpt)})
    rows.sort(key=lambda r: -r[M.VAL_ACC])
    with open(folder / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["rank", "trial_id", M.VAL_ACC, "checkpoint"])
        w.writeheader()
        w.writerows({"rank": i, **r} for i, r in enumerate(rows, start=1))
    return folder

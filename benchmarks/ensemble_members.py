"""Train the small GTSRB members that benchmarks/ensemble.py ensembles, and write a sweep-style folder.

    PYTHONPATH=. python benchmarks/ensemble_members.py --out /work/runs/ens_gtsrb [--epochs 3]

Plain engine (`fit` + LocalHooks, one process, one thread: the machine is shared), one member per
(seed, width, grayscale) below; then `leaderboard.csv` (rank, trial_id, val/acc, checkpoint: the
columns `cnnsweep tune` writes) so `cnnsweep export OUT --top K --ensemble` reads it like a sweep.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from cnnsweep.config import load_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep import metrics as M

# (trial id, seed, width, grayscale): widths and colour differ so the members make different mistakes.
# Small on purpose (one conv per stage, 15k training images): the 2-core machine is shared.
MEMBERS = [("m0_w24", 0, 24, False), ("m1_w24_gray", 1, 24, True), ("m2_w16", 2, 16, False),
           ("m3_w16_gray", 3, 16, True), ("m4_w24", 4, 24, False)]
NUM_TRAIN = 15000


def member_config(seed: int, width: int, gray: bool, epochs: int, root: str):
    overrides = [f"data.root={root}", f"train.seed={seed}", f"model.width={width}",
                 f"data.grayscale={str(gray).lower()}", f"train.epochs={epochs}",
                 "scaling.num_workers=1", "train.amp='off'", "model.convs_per_stage=1",
                 f"data.max_train_samples={NUM_TRAIN}",
                 "train.batch_size=64", "model.dropout=0.0"]  # more, smaller steps: 3 epochs of 15k images
    return load_config("sweeps/gtsrb.yaml", overrides=overrides)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/runs/ens_gtsrb")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--root", default="../shared/data/gtsrb")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out, rows = Path(args.out), []
    for trial, seed, width, gray in MEMBERS:
        cfg = member_config(seed, width, gray, args.epochs, args.root)
        hooks = LocalHooks(output=out / trial, device="cpu", num_to_keep=1)
        start = time.perf_counter()
        result = fit(cfg, load_dataset(cfg.data), hooks)
        rows.append({"trial_id": trial, M.VAL_ACC: result.metrics[M.VAL_ACC],
                     "checkpoint": str(hooks.last_checkpoint), "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    rows.sort(key=lambda r: -r[M.VAL_ACC])
    with open(out / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["rank", *rows[0]])
        writer.writeheader()
        writer.writerows({"rank": i, **r} for i, r in enumerate(rows, start=1))


if __name__ == "__main__":
    main()

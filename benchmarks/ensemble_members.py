"""Train the GTSRB members that benchmarks/ensemble.py ensembles, and write a sweep-style folder.

    PYTHONPATH=. python benchmarks/ensemble_members.py --out /work/runs/ens_strong [--epochs 2] [--parallel 2]
    PYTHONPATH=. python benchmarks/ensemble_members.py --members small --out /work/runs/ens_gtsrb --epochs 3

`--members strong` (default): the shipped recipe (`sweeps/gtsrb.yaml`, all 34,799 training images), one
member per (seed, grayscale) below, so the members are of near-equal, high accuracy, as in the
committee papers. `--members small`: the earlier, deliberately weak members (one conv per stage,
widths 16/24, 15,000 images). Plain engine (`fit` + LocalHooks), one thread per member, `--parallel`
members at a time (one per core); then `leaderboard.csv` (rank, trial_id, val/acc, checkpoint: the
columns `cnnsweep tune` writes) so `cnnsweep export OUT --top K --ensemble` reads it like a sweep.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cnnsweep import metrics as M

# (trial id, seed, overrides): seeds and colour differ so the members make different mistakes.
SMALL = [("m0_w24", 0, ["model.width=24"]), ("m1_w24_gray", 1, ["model.width=24", "data.grayscale=true"]),
         ("m2_w16", 2, ["model.width=16"]), ("m3_w16_gray", 3, ["model.width=16", "data.grayscale=true"]),
         ("m4_w24", 4, ["model.width=24"])]
SMALL_COMMON = ["model.convs_per_stage=1", "data.max_train_samples=15000", "train.batch_size=64",
                "model.dropout=0.0"]  # more, smaller steps: 3 epochs of 15k images
STRONG = [("s0", 0, []), ("s1_gray", 1, ["data.grayscale=true"]), ("s2", 2, []),
          ("s3_gray", 3, ["data.grayscale=true"]), ("s4", 4, [])]
MEMBERS = {"small": (SMALL, SMALL_COMMON), "strong": (STRONG, [])}


def member_config(seed: int, extra: list[str], epochs: int, root: str):
    from cnnsweep.config import load_config

    overrides = [f"data.root={root}", f"train.seed={seed}", f"train.epochs={epochs}",
                 "scaling.num_workers=1", "train.amp='off'", *extra]
    return load_config("sweeps/gtsrb.yaml", overrides=overrides)


def train_member(trial: str, seed: int, extra: list[str], epochs: int, root: str, out: str) -> dict:
    """One member in this (worker) process, on one thread."""
    import torch

    from cnnsweep.data import load_dataset
    from cnnsweep.engine import LocalHooks, fit

    torch.set_num_threads(1)
    cfg = member_config(seed, extra, epochs, root)
    hooks = LocalHooks(output=Path(out) / trial, device="cpu", num_to_keep=1)
    start = time.perf_counter()
    result = fit(cfg, load_dataset(cfg.data), hooks)
    row = {"trial_id": trial, M.VAL_ACC: result.metrics[M.VAL_ACC], "checkpoint": str(hooks.last_checkpoint),
           "seconds": round(time.perf_counter() - start, 1), "overrides": " ".join(extra)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/runs/ens_strong")
    ap.add_argument("--members", choices=sorted(MEMBERS), default="strong")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2, help="members trained at once, one thread each")
    ap.add_argument("--root", default="../shared/data/gtsrb")
    args = ap.parse_args()
    members, common = MEMBERS[args.members]
    with ProcessPoolExecutor(args.parallel, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(train_member, t, s, common + extra, args.epochs, args.root, args.out)
                   for t, s, extra in members]
        rows = sorted((f.result() for f in futures), key=lambda r: -r[M.VAL_ACC])
    with open(Path(args.out) / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["rank", *rows[0]])
        writer.writeheader()
        writer.writerows({"rank": i, **r} for i, r in enumerate(rows, start=1))


if __name__ == "__main__":
    main()

"""GTSRB recipes compared on held-out tracks: cross-validation by track over train + valid.

`valid.pickle` holds 4,320 images, but they are only ~144 tracks (a track is ~30 frames of one physical
sign), so one recipe's validation accuracy moves by a few tenths of a point with the tracks that happen to
be in it, and a recipe picked on it is partly picked for those tracks. This script pools `train.pickle` and
`valid.pickle` (39,209 images, ~1,307 tracks), deals each class's tracks into `--num-folds` folds at random
(seeded), and for each fold in `--folds` trains on every other fold and scores the held-out one. With 9
folds each run trains on ~34,850 images, as many as the shipped split does, so a fold run costs what a
shipped run costs; 3 folds hold out ~13,000 images of ~435 tracks, about the size of the official test set.
Recipes are paired: the same folds for each `--recipe`, so their difference per fold is what is compared.

    .venv/bin/python benchmarks/gtsrb_track_cv.py sweeps/gtsrb.yaml --folds 0 1 2 \
        --recipe base= --recipe wide=model.width=48 --recipe aug=augment.rotation=12,augment.translate=0.1

Tracks: both pickles are sorted by class and each class's images come as consecutive 30-frame tracks (the
official training set's layout; one class has a track of 29, so its last track is short). The boundaries
were checked on the files: the mean absolute pixel change between consecutive images is ~15 grey levels
inside a track and ~58-71 across a boundary at every 30th image.
Appends one JSON line per (recipe, fold) to benchmarks/results/gtsrb_track_cv.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cnnsweep.config import load_config
from cnnsweep.data import load_dataset
from cnnsweep.data.dataset import ImageDataset, ImageSplit
from cnnsweep.engine import FitHooks, fit
from cnnsweep.engine.amp import resolve_amp

from accuracy import machine_description  # benchmarks/ is the script's folder, first on sys.path

RESULTS = Path(__file__).parent / "results" / "gtsrb_track_cv.jsonl"
TRACK_LEN = 30  # frames per GTSRB track in the official training set


def track_ids(labels: np.ndarray) -> np.ndarray:
    """A track id per image of a class-sorted split: (class, index within the class // 30)."""
    ids = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        ids[where] = c * 10_000 + np.arange(len(where)) // TRACK_LEN
    return ids


def fold_of_each_image(labels: np.ndarray, tracks: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """Deals each class's tracks round-robin into folds after a seeded shuffle (stratified by class)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        ts = np.unique(tracks[labels == c])
        rng.shuffle(ts)
        for i, t in enumerate(ts):
            fold[tracks == t] = (i + offset) % num_folds
        offset += len(ts)  # the next class starts where this one left off, so fold sizes stay even
    return fold


def pooled(dataset: ImageDataset) -> tuple[ImageSplit, np.ndarray]:
    """train + valid as one split, and a track id per image (valid's ids kept apart from train's)."""
    parts = [s for s in (dataset.train, dataset.valid) if s is not None]
    tracks = [track_ids(s.labels.numpy()) + k * 1_000_000 for k, s in enumerate(parts)]
    split = ImageSplit(torch.cat([s.images for s in parts]), torch.cat([s.labels for s in parts]))
    return split, np.concatenate(tracks)


class Quiet(FitHooks):
    def __init__(self, label: str):
        super().__init__("cpu")
        self.label = label

    def report(self, metrics, checkpoint_state) -> None:
        print(f"[{self.label}] epoch {int(metrics['epoch']) + 1}: held-out acc {metrics['val/acc']:.4f} "
              f"train {metrics['train/seconds']:.0f} s", flush=True)


def run_fold(config: str, overrides: list[str], all_images: ImageSplit, fold: np.ndarray, k: int,
             class_names: list[str], label: str) -> dict:
    cfg = load_config(config, overrides + ["scaling.num_workers=1"])
    held = torch.from_numpy(np.flatnonzero(fold == k))
    kept = torch.from_numpy(np.flatnonzero(fold != k))
    data = ImageDataset(all_images.subset(kept), all_images.subset(held), None, list(class_names))
    start = time.perf_counter()
    hooks = Quiet(f"{label} fold {k}")
    result = fit(cfg, data, hooks)
    return {"recipe": label, "overrides": overrides, "fold": k, "train_images": len(kept),
            "held_out_images": len(held),
            "acc": result.metrics["val/acc"], "loss": result.metrics["val/loss"],
            "per_epoch": [m["val/acc"] for m in result.history],
            "seconds": round(time.perf_counter() - start, 1), "amp": resolve_amp(cfg.train.amp, hooks.device).name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--data", default="../shared/data/gtsrb")
    parser.add_argument("--num-folds", type=int, default=9)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--recipe", action="append", default=[],
                        help="NAME=key=value,key=value (NAME= for the file as it is); repeatable")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="for every recipe")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = [f"data.root={args.data}"] + args.overrides
    dataset = load_dataset(load_config(args.config, base).data)
    images, tracks = pooled(dataset)
    fold = fold_of_each_image(images.labels.numpy(), tracks, args.num_folds, args.split_seed)
    machine = machine_description()
    for k in args.folds:  # fold-major: every recipe's fold k before fold k+1, so a cut-short run stays paired
        for spec in args.recipe or ["base="]:
            name, _, sets = spec.partition("=")
            record = run_fold(args.config, base + [s for s in sets.split(",") if s], images, fold, k,
                              dataset.class_names, name)
            record.update(held_out_tracks=int(len(np.unique(tracks[fold == k]))), split_seed=args.split_seed,
                          num_folds=args.num_folds, config=args.config, threads=args.threads, machine=machine,
                          date=time.strftime("%Y-%m-%d %H:%M"))
            Path(args.results).parent.mkdir(parents=True, exist_ok=True)
            with open(args.results, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps({k2: record[k2] for k2 in ("recipe", "fold", "acc", "seconds")}), flush=True)


if __name__ == "__main__":
    main()

"""Are the class images recognizable? Images made from model A, judged by an independently trained model B.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/class_images.py --max-train 4000 --epochs 2

Trains (once, cached under --output) two small GTSRB models with the project's engine: A is
sweeps/gtsrb.yaml's architecture (3 stages x 2 convs, width 32, ReLU, max pooling, flatten + FC head, seed 0);
B differs in seed (1), width (24), activation (ELU) and hidden FC width (128). (A first B with 1 conv per
stage, GELU, average pooling and a global-average-pool head reached only 12% val/acc in this budget: too
weak a judge.) Then makes the 43 class images from A with the old settings (pixel-space
optimization, Yosinski-style) and the new defaults (Fourier/colour-decorrelated, transformation-robust), and
prints for each: B's top-1 recognition rate (the image's class is B's top-1 class; chance 1/43), A's own
top-1 rate and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit

AUGMENT = {"rotation": 8, "translate": 0.0625, "scale": 0.08, "brightness": 0.2, "contrast": 0.2}
MODELS = {
    "a": ({"num_stages": 3, "width": 32, "convs_per_stage": 2, "activation": "relu", "pooling": "max",
           "head": "flatten", "head_hidden": 256, "dropout": 0.3, "stage_dropout": 0.0}, 0),
    "b": ({"num_stages": 3, "width": 24, "convs_per_stage": 2, "activation": "elu", "pooling": "max",
           "head": "flatten", "head_hidden": 128, "dropout": 0.3, "stage_dropout": 0.0}, 1),
}


def train_config(name: str, data_root: str, epochs: int, max_train: int | None) -> dict:
    model, seed = MODELS[name]
    return {"name": f"class-images-{name}", "augment": AUGMENT,
            "data": {"name": "gtsrb_pickle", "root": data_root, "max_train_samples": max_train},
            "model": {"name": "cnn", **model}, "optim": {"name": "adamw", "weight_decay": 5e-4},
            "sched": {"name": "onecycle"},
            "train": {"epochs": epochs, "seed": seed, "lr": 3e-3, "batch_size": 128, "amp": "off", "eval_batch_size": 1024}}


def ensure_model(name: str, data_root: str, output: Path, epochs: int, max_train: int | None) -> Path:
    """Train model `name` unless its checkpoint exists; the checkpoint folder."""
    run = output / name
    done = sorted((run / "checkpoints").glob("epoch_*"))
    if done:
        return done[-1]
    cfg = validate_config(train_config(name, data_root, epochs, max_train))
    hooks = LocalHooks(output=run, num_to_keep=1, on_report=lambda m: print(
        f"model {name} epoch {int(m['epoch']) + 1}: val/acc {m['val/acc']:.4f}", flush=True))
    fit(cfg, load_dataset(cfg.data), hooks)
    return hooks.last_checkpoint


def top1_rate(model, preprocess, images: torch.Tensor, classes: list[int]) -> tuple[float, list[int]]:
    """Share of images whose top-1 class under `model` is their own class; the predicted classes."""
    with torch.no_grad():
        pred = model(preprocess.normalize(images)).argmax(1).tolist()
    return sum(p == c for p, c in zip(pred, classes)) / len(classes), pred


def measure(a, b, settings, label: str, seed: int, out: Path) -> dict:
    """Class images of every class from A (timed), judged by B; the grid is saved to look at."""
    from cnnsweep.analysis.class_images import generate_class_images, save_class_image_grid

    classes = list(range(len(a.class_names)))
    start = time.perf_counter()
    images, probs = generate_class_images(a.model, a.preprocess, classes, settings=settings, seed=seed)
    seconds = time.perf_counter() - start
    rate_b, pred_b = top1_rate(b.model, b.preprocess, images, classes)
    rate_a, _ = top1_rate(a.model, a.preprocess, images, classes)
    name = label.split()[0] + ("_" + settings.objective if hasattr(settings, "tv") else "")
    save_class_image_grid(images, probs, classes, a.class_names, out / f"{name}_seed{seed}.png")
    return {"method": label, "seed": seed, "steps": settings.steps, "objective": settings.objective, "seconds": round(seconds, 1),
            "recognized_by_b": round(rate_b, 4), "top1_of_a": round(rate_a, 4),
            "mean_p_a": round(float(probs.mean()), 4), "b_predicted": pred_b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/gtsrb")
    parser.add_argument("--output", default="runs/bench-class-images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=None, help="stratified training subset (slow CPUs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--skip-old", action="store_true", help="only the new method (the old one is slow here)")
    parser.add_argument("--steps", type=int, default=None, help="new method's steps (default: its default)")
    parser.add_argument("--copies", type=int, default=None, help="new method's random copies per step")
    parser.add_argument("--objectives", nargs="+", default=["logit", "log_prob"],
                        help="new method's objectives to compare: logit (score before softmax), log_prob")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    paths = {n: ensure_model(n, args.data, out, args.epochs, args.max_train) for n in MODELS}
    if args.train_only:
        return
    from cnnsweep.analysis.class_images import ClassImageSettings, PixelSettings

    a, b = (load_model_from_checkpoint(paths[n]) for n in ("a", "b"))
    changed = {k: v for k, v in (("steps", args.steps), ("copies", args.copies)) if v is not None}
    methods = [("old (pixel space)", PixelSettings())] * (not args.skip_old)
    methods += [(f"new (Fourier, robust, {o})", ClassImageSettings(objective=o, **changed)) for o in args.objectives]
    for seed in args.seeds:
        for label, s in methods:
            print(json.dumps(measure(a, b, s, label, seed, out)), flush=True)


if __name__ == "__main__":
    main()

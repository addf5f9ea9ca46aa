"""Validation accuracy per epoch (and wall time) of run configs, trained with the bare engine (no Ray);
test accuracy too where the dataset has a test split (MNIST's official t10k digits).

    .venv/bin/python benchmarks/accuracy.py sweeps/gtsrb_peer.yaml sweeps/gtsrb.yaml
    .venv/bin/python benchmarks/accuracy.py sweeps/gtsrb_long.yaml --tta
    .venv/bin/python benchmarks/accuracy.py sweeps/ahe.yaml --set train.epochs=4
    .venv/bin/python benchmarks/accuracy.py sweeps/mnist.yaml
    .venv/bin/python benchmarks/accuracy.py sweeps/ahe_finetune.yaml \
        --set model.weights=../shared/weights/tf_efficientnet_lite0.in1k.pth
    .venv/bin/python benchmarks/accuracy.py --checkpoint runs/gtsrb_long [--data ../shared/data/gtsrb]

Each config is trained in this one process on `--threads` CPU threads with `scaling.num_workers=1`
but the same effective batch and micro-batch as its file says: `sweeps/gtsrb.yaml`'s 2 Ray workers x
2 micro-steps x 32 become 4 micro-steps x 32 here, so BatchNorm sees the same 32 images per forward
and the optimizer the same 128 per step. Appends one JSON line per run to
benchmarks/results/accuracy.jsonl (config, overrides, per-epoch val/acc, val/loss, seconds, machine)
and prints a line per epoch. `--tta` also scores the final model on the validation split with
test-time augmentation to see whether it pays: softmax averaged over the image and its 1 px shifts
(`val_acc_tta`), on top of whatever the model itself averages (`model.tta`). A saved run of the custom CNN
trained with `augment.hflip` but without `model.tta` is also scored with `model.tta: hflip` switched on
(`val_acc_tta_flip`): what the mirror average would have read.
With `train.ema_decay` the record also has `val_acc_last_step` (and `test_acc_last_step`): the same run's
last-step weights, so one run compares the moving average with the weights it averages.
`--checkpoint RUN_OR_FILE` trains nothing: it scores a saved model (e.g. a `cnnsweep train` run) on the
validation split, plain and with TTA, and appends that record instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from cnnsweep.checkpoint import CheckpointState
from cnnsweep.config import AugmentConfig, ConfigError, load_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import FitHooks, fit, predict_logits
from cnnsweep.engine.amp import cpu_has_bf16_math, resolve_amp
from cnnsweep.transforms import AugmentParams, BatchAugment, Preprocess

RESULTS = Path(__file__).parent / "results" / "accuracy.jsonl"
DATA_ROOTS = {"gtsrb_pickle": "../shared/data/gtsrb", "image_folder": "../shared/data/ahe64",
              "mnist": "../shared/data/mnist"}  # --data's default, by the config's data.name
TTA_SHIFTS_PX = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]  # (dx, dy) in pixels


def machine_description() -> str:
    """What a result line records of the machine: architecture, cores, bf16 math, torch build."""
    bf16 = ", bf16 math" if cpu_has_bf16_math() else ""
    return f"{platform.machine()} {os.cpu_count()} cores{bf16}, torch {torch.__version__}"


class KeepLast(FitHooks):
    """Prints each epoch and keeps the unwrapped model and the last checkpoint state in memory."""

    def __init__(self, label: str, start: float):
        super().__init__("cpu")
        self.label, self.start, self.state, self.model = label, start, None, None

    def wrap_model(self, model):
        self.model = model
        return model

    def report(self, metrics, checkpoint_state) -> None:
        self.state = checkpoint_state or self.state
        metrics["wall_s"] = time.perf_counter() - self.start
        print(f"[{self.label}] epoch {int(metrics['epoch']) + 1}: val/acc {metrics['val/acc']:.4f} "
              f"val/loss {metrics['val/loss']:.4f} train {metrics['train/seconds']:.0f} s "
              f"wall {metrics['wall_s']:.0f} s", flush=True)


def tta_accuracy(model, state: CheckpointState, images: torch.Tensor, labels: torch.Tensor,
                 shifts: list[tuple[int, int]] = TTA_SHIFTS_PX) -> float:
    """Validation accuracy with softmax averaged over `shifts` (border padding, like training)."""
    pre = Preprocess.from_dict(state.preprocess)
    x = pre.prepare(images)
    side = x.shape[-1]
    shifter = BatchAugment(AugmentConfig())
    amp = resolve_amp(state.config["train"]["amp"], torch.device("cpu"))
    probs = torch.zeros(len(x), len(state.class_names))
    for dx, dy in shifts:
        t = torch.tensor([[dx / side, dy / side]]).expand(len(x), 2)
        shifted = shifter.apply(x, AugmentParams(translate=t)) if (dx or dy) else x
        probs += predict_logits(model, shifted, pre.normalize, batch_size=1024, amp=amp).softmax(1)
    return float((probs.argmax(1) == labels).float().mean())


def run_one(path: str, overrides: list[str], tta: bool, threads: int) -> dict:
    cfg = load_config(path, overrides + ["scaling.num_workers=1"])
    micro = cfg.micro_batch
    shown = [o for o in overrides if not o.startswith("data.root=")]
    label = f"{Path(path).stem}{' ' + ' '.join(shown) if shown else ''}"
    dataset = load_dataset(cfg.data)
    start = time.perf_counter()
    hooks = KeepLast(label, start)
    result = fit(cfg, dataset, hooks)
    record = {"config": path, "overrides": overrides, "name": cfg.name, "epochs": cfg.train.epochs,
              "batch_size": cfg.train.batch_size, "micro_batch_size": micro,
              "train_images": len(dataset.train), "val_images": len(dataset.valid),
              "val_acc": result.metrics["val/acc"], "val_loss": result.metrics["val/loss"],
              "val_f1_macro": result.metrics["val/f1_macro"], "test_acc": result.metrics.get("test/acc"),
              "seconds": round(result.seconds, 1),
              "per_epoch": [{"epoch": int(m["epoch"]) + 1, "val_acc": m["val/acc"], "val_loss": m["val/loss"],
                             "train_s": round(m["train/seconds"], 1), "wall_s": round(m["wall_s"], 1)}
                            for m in result.history],
              "threads": threads, "amp": resolve_amp(cfg.train.amp, hooks.device).name,
              "machine": machine_description(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    if hooks.state is not None and hooks.state.training_model is not None:  # train.ema_decay: the same run's
        # last-step weights (hooks.model: what the optimizer trained) against the average (val_acc, test_acc)
        splits = {"val": dataset.valid, "test": dataset.test}
        for prefix, split in splits.items():
            if split is not None and len(split):
                acc = tta_accuracy(hooks.model, hooks.state, split.images, split.labels, shifts=[(0, 0)])
                record[f"{prefix}_acc_last_step"] = acc
                print(f"[{label}] last step's weights, no average: {prefix}/acc {acc:.4f}", flush=True)
    if tta:
        record.update(score_tta(hooks.model, hooks.state, dataset.valid, label))
    return record


def score_tta(model, state: CheckpointState, valid, label: str) -> dict:
    """Shift TTA over the model's own output."""
    out = {"val_acc_tta": tta_accuracy(model, state, valid.images, valid.labels), "tta_views": len(TTA_SHIFTS_PX)}
    print(f"[{label}] TTA ({len(TTA_SHIFTS_PX)} shifts): val/acc {out['val_acc_tta']:.4f}", flush=True)
    return out


def score_mirror_average(model, state: CheckpointState, valid, label: str) -> dict:
    """A custom CNN trained on mirrored images but saved without `model.tta`: its accuracy with it."""
    if getattr(model, "tta", None) != "none":
        return {}
    model.tta = "hflip"
    try:
        acc = tta_accuracy(model, state, valid.images, valid.labels, [(0, 0)])
    finally:
        model.tta = "none"
    print(f"[{label}] with model.tta=hflip (image + mirror): val/acc {acc:.4f}", flush=True)
    return {"val_acc_tta_flip": acc}


def score_checkpoint(path: str, data_root: str | None) -> dict:
    """Plain and TTA validation accuracy of a saved model (weights-only load), no training."""
    from cnnsweep.checkpoint import load_checkpoint, load_model_from_checkpoint

    loaded = load_model_from_checkpoint(path)
    state = load_checkpoint(loaded.path)
    data = loaded.config.data.model_copy(update={"root": _data_root(data_root, loaded.config.data.name)})
    valid = load_dataset(data).valid
    plain = tta_accuracy(loaded.model, state, valid.images, valid.labels, shifts=[(0, 0)])
    print(f"[{path}] val/acc {plain:.4f}", flush=True)
    record = {"checkpoint": str(loaded.path), "name": loaded.config.name, "epochs": loaded.config.train.epochs,
              "val_images": len(valid), "val_acc": plain,
              **score_tta(loaded.model, state, valid, path),
              **(score_mirror_average(loaded.model, state, valid, path) if loaded.config.augment.hflip else {}),
              "machine": machine_description(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="run/sweep YAML files, trained one after the other")
    parser.add_argument("--checkpoint", help="score this saved run/checkpoint instead of training")
    parser.add_argument("--data", help="data.root for every config [the dataset's folder in ../shared/data]")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="dotted.key=value")
    parser.add_argument("--tta", action="store_true", help="also score the final model with shift TTA")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        with open(out, "a") as f:
            f.write(json.dumps(score_checkpoint(args.checkpoint, args.data)) + "\n")
        return
    for path in args.configs:
        try:
            root = _data_root(args.data, load_config(path).data.name)
            load_config(path, [f"data.root={root}"] + args.overrides)  # fail before training, one line
        except ConfigError as err:
            print(f"{path}: {err}".replace("\n", "; "), file=sys.stderr)
            raise SystemExit(2) from None
        record = run_one(path, [f"data.root={root}"] + args.overrides, args.tta, args.threads)
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: record[k] for k in ("config", "overrides", "val_acc", "test_acc", "seconds")}),
              flush=True)


def _data_root(given: str | None, dataset: str) -> str:
    root = given or DATA_ROOTS.get(dataset, "")
    if not Path(root).exists():
        raise SystemExit(f"--data {root or '(none)'}: not found (see ../shared/data/README.md)")
    return root


if __name__ == "__main__":
    main()

"""What `model.tta: hflip` buys and costs once exported: one saved custom-CNN run, exported twice to ONNX
(as trained, and with the mirror average switched on), each file scored on the run's validation split
through OnnxRunner (what `predict` and serving run) and timed at batch 1 and 64.

    .venv/bin/python benchmarks/tta_cost.py RUN_OR_CHECKPOINT [--data ../shared/data/ahe64] [--threads 2]

Appends one JSON line per variant to benchmarks/results/tta_cost.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import machine_description  # noqa: E402

from cnnsweep.checkpoint import load_model_from_checkpoint  # noqa: E402
from cnnsweep.export import OnnxRunner, export_onnx  # noqa: E402
from cnnsweep.export.pipeline import build_info, load_export_data, nhwc  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "tta_cost.jsonl"


def timed(runner: OnnxRunner, pixels: np.ndarray, batch: int, rounds: int) -> float:
    """Median seconds of one `logits` call on `batch` images, over `rounds` calls after 3 warm-ups."""
    x = pixels[:batch]
    for _ in range(3):
        runner.logits(x)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        runner.logits(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def score(lm, tta: str, pixels: np.ndarray, labels: np.ndarray, threads: int, folder: Path) -> dict:
    lm.model.tta = tta
    path = export_onnx(lm.model, build_info(lm), folder / f"{tta}.onnx")
    runner = OnnxRunner.load(path, num_threads=threads)
    logits = np.concatenate([runner.logits(pixels[i:i + 256]) for i in range(0, len(pixels), 256)])
    one, many = timed(runner, pixels, 1, 200), timed(runner, pixels, 64, 20)
    return {"checkpoint": str(lm.path), "tta": tta, "val_images": len(labels),
            "val_acc_onnx": float((logits.argmax(1) == labels).mean()),
            "ms_batch1": round(one * 1e3, 3), "images_per_s_batch64": round(64 / many, 1),
            "threads": threads, "machine": machine_description(), "date": time.strftime("%Y-%m-%d %H:%M")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="../shared/data/ahe64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model_from_checkpoint(args.checkpoint)
    if not hasattr(lm.model, "tta"):
        raise SystemExit(f"{args.checkpoint}: not a custom CNN (model.tta is the cnn family's)")
    valid = load_export_data(lm, args.data).valid
    pixels, labels = nhwc(valid.images), valid.labels.numpy()
    with tempfile.TemporaryDirectory() as tmp, open(args.results, "a") as out:
        for tta in ("none", "hflip"):
            record = score(lm, tta, pixels, labels, args.threads, Path(tmp))
            out.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()

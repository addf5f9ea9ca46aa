"""Inference speed of one GTSRB model, in one run on the same cores: PyTorch eager vs ONNX Runtime
fp32 vs ONNX Runtime int8, at batch 1 and 64; plus validation accuracy of each.

    .venv/bin/python benchmarks/inference.py --data ../shared/data/gtsrb --threads 2

Goals (issue 4): ORT >= 3x PyTorch eager at batch 1; int8 >= 1.5x ORT fp32 with <= 0.3 points lost.
The model is benchmarks/gtsrb_model.py's (trained and exported once, then reused).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.data import load_dataset
from cnnsweep.export import OnnxRunner
from cnnsweep.export.onnx_export import pixel_classifier
from gtsrb_model import ensure_model


def measure(runners: dict, x: np.ndarray, seconds: float, rounds: int = 20) -> dict:
    """Median latency per call and images/s of each runner on `x`.

    The runners take turns (`rounds` slices of seconds/rounds each) instead of running one after
    another: on a shared machine the background load drifts, and interleaving spreads that drift
    over all of them instead of penalizing whichever ran at the bad moment.
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    for fn in runners.values():
        for _ in range(5):  # warm-up: allocations, ORT's first-run kernel selection
            fn(x)
    for _ in range(rounds):
        for name, fn in runners.items():
            end = time.perf_counter() + seconds / rounds
            while time.perf_counter() < end:
                t = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t)
    return {name: {"median_ms": 1000 * statistics.median(ts), "images_per_s": len(x) / statistics.median(ts),
                   "calls": len(ts)} for name, ts in times.items()}


def build_runners(report: dict, threads: int):
    lm = load_model_from_checkpoint(report["checkpoint"])
    model = pixel_classifier(lm.model.float(), lm.preprocess)  # what the .onnx holds: preprocessing + network

    @torch.inference_mode()
    def torch_eager(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    fp32 = OnnxRunner.load(report["onnx"], num_threads=threads, device="cpu")
    int8 = OnnxRunner.load(report["int8"]["onnx"], num_threads=threads, device="cpu")
    runners = {"pytorch_eager": torch_eager, "ort_fp32": fp32.logits, "ort_int8": int8.logits}
    return lm, runners, {"ort_fp32": fp32, "ort_int8": int8}


def accuracies(lm, runners, onnx_runners, x: np.ndarray, y: np.ndarray) -> dict:
    """Top-1 of every runner on the same raw pixels."""
    out = {}
    for name, run in runners.items():
        pred = np.concatenate([run(x[i:i + 512]).argmax(1) for i in range(0, len(x), 512)])
        out[name] = float((pred == y).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/gtsrb")
    parser.add_argument("--model-dir", default="runs/bench-gtsrb")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=3.0, help="per runner and batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # PyTorch and ORT get the same cores
    report = ensure_model(args.data, args.model_dir)
    lm, runners, sessions = build_runners(report, args.threads)
    valid = load_dataset(lm.config.data).valid
    x, y = valid.images.permute(0, 2, 3, 1).contiguous().numpy(), valid.labels.numpy()  # raw uint8 pixels
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "threads": args.threads, "torch": torch.__version__,
               "onnxruntime": __import__("onnxruntime").__version__, "speed": {}}
    for bs in args.batch_sizes:
        batch = x[:bs]
        results["speed"][bs] = measure(runners, batch, args.seconds * len(runners))
    results["val_acc"] = accuracies(lm, runners, sessions, x, y)
    results["num_val"] = int(len(y))
    print_table(results)
    print(json.dumps(results))


def print_table(r: dict) -> None:
    print(f"machine: {r['machine']}; threads: {r['threads']}; torch {r['torch']}, onnxruntime {r['onnxruntime']}")
    for bs, row in r["speed"].items():
        base, fp32 = row["pytorch_eager"]["images_per_s"], row["ort_fp32"]["images_per_s"]
        for name, m in row.items():
            print(f"batch {bs:>3}  {name:<14} {m['median_ms']:8.3f} ms/call {m['images_per_s']:10.0f} img/s  "
                  f"x{m['images_per_s'] / base:5.2f} vs eager  x{m['images_per_s'] / fp32:5.2f} vs ORT fp32")
    acc = r["val_acc"]
    print(f"val/acc on {r['num_val']} images: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items())
          + f"; int8 loses {100 * (acc['ort_fp32'] - acc['ort_int8']):.2f} points")


if __name__ == "__main__":
    main()

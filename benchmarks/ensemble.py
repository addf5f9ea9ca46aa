"""Top-3 / top-5 ensembles vs the best single model: validation accuracy and ORT latency (1 thread).

    PYTHONPATH=. python benchmarks/ensemble_members.py --out /work/runs/ens_gtsrb   # members (once)
    PYTHONPATH=. python benchmarks/ensemble.py /work/runs/ens_gtsrb [--repeats 200]

Every model is exported with the project's own code (`export_checkpoint`, `export_ensemble`: verified
against PyTorch), then run here the way the server runs it: the metadata's Preprocess, then ONNX
Runtime with intra-op threads = 1. Accuracy: the whole validation split. Latency: median of
`--repeats` timed session.run calls at batch 1 and batch 64 (preprocessing excluded), after warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from cnnsweep.data import load_dataset
from cnnsweep.export import OnnxRunner, export_checkpoint
from cnnsweep.export.ensemble_export import export_ensemble
from cnnsweep.export.sources import resolve_sources
from cnnsweep.checkpoint import load_model_from_checkpoint


def median_ms(runner: OnnxRunner, x: np.ndarray, repeats: int) -> float:
    for _ in range(5):
        runner.logits(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        runner.logits(x)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def measure(path: Path, valid, repeats: int) -> dict:
    runner = OnnxRunner.load(path, num_threads=1)
    x = valid.images.permute(0, 2, 3, 1).contiguous().numpy()  # raw pixels: the graph preprocesses
    return {"onnx": str(path), "val_acc": runner.accuracy(valid),
            "ms_batch1": round(median_ms(runner, x[:1], repeats), 3),
            "ms_batch64": round(median_ms(runner, x[:64], max(20, repeats // 10)), 3),
            "size_kib": round(path.stat().st_size / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    best = resolve_sources(args.sweep, 1)[0]
    valid = load_dataset(load_model_from_checkpoint(best.checkpoint).config.data).valid
    out = args.sweep / "bench"
    rows = {"best single": measure(Path(export_checkpoint(best.checkpoint, out / "single.onnx").onnx), valid, args.repeats)}
    for k in (3, 5):
        report = export_ensemble(args.sweep, out / f"ensemble_top{k}.onnx", top=k)
        rows[f"top-{k} ensemble"] = measure(Path(report.onnx), valid, args.repeats) | {
            "verified_max_prob_diff": report.verification["max_abs_diff"]}
    for name, r in rows.items():
        print(json.dumps({"model": name, **r}), flush=True)


if __name__ == "__main__":
    main()

"""`cnnsweep analyze` time on the GTSRB valid split (4,320 images) vs a plain loop of the same model,
and the same analysis with its inference on 2 Ray workers; one process, same cores, one after another.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/analyze_speed.py /work/runs/report-gtsrb \
        --data-root ../shared/data/gtsrb --threads 2

TARGET is any `cnnsweep analyze` target (a run folder of `cnnsweep train sweeps/gtsrb.yaml --set
train.epochs=1` here). Prints one JSON object: seconds of the plain loop (preprocess + forward over the
split, batches of the analysis's size, no_grad), of the whole analysis (every plot, Grad-CAM, data analysis,
and with --explain the feature maps / deconvolution / class images), of its prediction step alone, and the
ratios. Ray's start-up is timed apart (it is paid once per process, not per analysis).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch

from cnnsweep.analysis.run import analyze_target
from cnnsweep.analysis.predictions import BATCH_SIZE
from cnnsweep.analysis.split import choose_split, load_analysis_data
from cnnsweep.analysis.target import load_target


def plain_loop(target: str, data_root: str) -> dict:
    """The baseline: the same model and preprocessing, a bare batched loop over the same images."""
    cand = load_target(target, 1).candidates[0]
    _, split, _ = choose_split(load_analysis_data(cand.config.data, data_root), "valid")
    with torch.no_grad():
        cand.model(cand.preprocess(split.images[:BATCH_SIZE]))  # warm-up: first-call allocations
    start = time.perf_counter()
    with torch.no_grad():
        logits = [cand.model(cand.preprocess(split.images[i:i + BATCH_SIZE]))
                  for i in range(0, len(split.images), BATCH_SIZE)]
    seconds = time.perf_counter() - start
    acc = float((torch.cat(logits).argmax(1) == split.labels).float().mean())
    return {"seconds": round(seconds, 3), "num_images": len(split.labels), "accuracy": acc}


def timed_analysis(target: str, data_root: str, explain: bool, predict=None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        m = analyze_target(target, split="valid", data_root=data_root, output=out, explain=explain,
                           predict=predict)
        total = time.perf_counter() - start
    s = m.models[0].summary
    return {"seconds": round(total, 2), "predict_seconds": s.seconds, "accuracy": s.accuracy}


def ray_analysis(target: str, data_root: str, explain: bool, workers: int) -> dict:
    from cnnsweep.distributed.analysis_tasks import ray_predict
    from cnnsweep.distributed.cluster import start_ray

    start = time.perf_counter()
    start_ray(num_cpus=workers)  # Ray: a private local instance
    startup = time.perf_counter() - start
    out = timed_analysis(target, data_root, explain, ray_predict(workers))
    return out | {"ray_start_seconds": round(startup, 2), "workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--data-root", default="../shared/data/gtsrb")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the local runs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--explain", action="store_true", help="include feature maps, deconvolution, class images")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    plain = plain_loop(a.target, a.data_root)
    local = timed_analysis(a.target, a.data_root, a.explain)
    ray_run = ray_analysis(a.target, a.data_root, a.explain, a.workers)
    print(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the end",
        "torch_threads": a.threads, "explain": a.explain, "plain_loop": plain, "analyze_local": local,
        "analyze_ray": ray_run,
        "ratio_analyze_vs_plain": round(local["seconds"] / plain["seconds"], 1),
        "ratio_predict_step_vs_plain": round(local["predict_seconds"] / plain["seconds"], 2),
        "ratio_ray_predict_vs_local_predict": round(ray_run["predict_seconds"] / local["predict_seconds"], 2),
    }, indent=1))


if __name__ == "__main__":
    main()

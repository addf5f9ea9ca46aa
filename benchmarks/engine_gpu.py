"""The pure-PyTorch engine on a CUDA GPU (no Ray needed): AMP fp16 + GradScaler vs bf16 vs fp32.

For each AMP mode, trains the same CNN on the same GTSRB data with the bare engine and prints
steady-state training images/s, validation accuracy and peak GPU memory. Then demonstrates the
CUDA out-of-memory fallback: with the process capped to a small memory fraction, a too-large
micro-batch is halved (accumulation doubled) until it fits, and training carries on.

    python benchmarks/engine_gpu.py --data ../shared/data/gtsrb --epochs 4
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import FitHooks, fit


def build_cfg(root: str, amp: str, epochs: int, *, batch: int = 512, micro: int | None = None, width: int = 64):
    return validate_config({
        "name": f"gpu-{amp}", "data": {"name": "gtsrb_pickle", "root": root},
        "augment": {"rotation": 10, "translate": 0.1, "scale": 0.1, "brightness": 0.2, "contrast": 0.2},
        "model": {"num_stages": 3, "width": width, "convs_per_stage": 2, "dropout": 0.2},
        "sched": {"name": "onecycle"},
        "train": {"epochs": epochs, "lr": 3e-3, "batch_size": batch, "micro_batch_size": micro, "amp": amp,
                  "eval_batch_size": 2048},
        "scaling": {"use_gpu": True}})


def run_mode(root: str, amp: str, epochs: int, dataset) -> dict:
    torch.cuda.reset_peak_memory_stats()
    result = fit(build_cfg(root, amp, epochs), dataset, FitHooks("cuda"))
    ips = statistics.median(h["images_per_s"] for h in result.history[1:])  # epoch 0: cudnn autotune, warm-up
    return {"amp": amp, "img_per_s": ips, "val_acc": result.metrics["val/acc"],
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20, "seconds": result.seconds}


def oom_demo(root: str, dataset) -> None:
    """Cap the process at ~1 GiB of GPU memory and ask for an 8192-image micro-batch of a wide CNN."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(2**30 / total)
    cfg = build_cfg(root, "fp16", 1, batch=8192, micro=8192, width=128)
    start = time.perf_counter()
    result = fit(cfg, dataset, FitHooks("cuda"))
    m = result.metrics
    print(f"OOM fallback: asked micro-batch 8192 under a 1 GiB cap -> trained with micro-batch "
          f"{m['micro_batch_size']} (accumulation {8192 // m['micro_batch_size']}), effective batch 8192; "
          f"val/acc {m['val/acc']:.4f} after 1 epoch, {time.perf_counter() - start:.1f} s")
    torch.cuda.set_per_process_memory_fraction(1.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with train.pickle / valid.pickle")
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    dataset = load_dataset(build_cfg(args.data, "off", 1).data)
    print(f"train images: {len(dataset.train)}, valid: {len(dataset.valid)}")
    rows = [run_mode(args.data, amp, args.epochs, dataset) for amp in ("off", "bf16", "fp16")]
    print(f"{'amp':6} {'img/s':>10} {'val/acc':>8} {'peak MiB':>9} {'total s':>8}")
    for r in rows:
        print(f"{r['amp']:6} {r['img_per_s']:10.0f} {r['val_acc']:8.4f} {r['peak_mib']:9.0f} {r['seconds']:8.1f}")
    oom_demo(args.data, dataset)


if __name__ == "__main__":
    main()

"""The GTSRB model the inference and serving benchmarks use: trained once with the bare engine, exported.

    .venv/bin/python benchmarks/gtsrb_model.py --data ../shared/data/gtsrb --output runs/bench-gtsrb

Writes <output>/run/checkpoints/epoch_NNNN/, <output>/model.onnx and <output>/model_int8.onnx
(the export verifies against PyTorch and reports int8 vs fp32 validation accuracy). Reuses them if present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.export import export_checkpoint


def gtsrb_config(data_root: str, epochs: int, max_train: int | None) -> dict:
    """sweeps/gtsrb.yaml's model (3 stages x 2 convs, width 32), one process, bf16 autocast on CPU.
    No augmentation: in a few CPU epochs it converges faster, and the benchmarks only need a good
    classifier with the real architecture, not the best one."""
    return {"name": "bench-gtsrb", "data": {"name": "gtsrb_pickle", "root": data_root, "max_train_samples": max_train},
            "model": {"num_stages": 3, "width": 32, "convs_per_stage": 2, "dropout": 0.2},
            "sched": {"name": "onecycle"},
            "train": {"epochs": epochs, "lr": 3e-3, "batch_size": 128, "amp": "bf16", "eval_batch_size": 1024}}


def ensure_model(data_root: str, output: str | Path, epochs: int = 4, max_train: int | None = None) -> dict:
    """Train (if needed) and export (if needed); returns paths and the export report."""
    out = Path(output)
    report_file = out / "export.json"
    if report_file.is_file() and (out / "model_int8.onnx").is_file():
        return json.loads(report_file.read_text())
    cfg = validate_config(gtsrb_config(data_root, epochs, max_train))
    hooks = LocalHooks(output=out / "run", num_to_keep=1,
                       on_report=lambda m: print(f"epoch {int(m['epoch']) + 1}: val/acc {m['val/acc']:.4f}", flush=True))
    fit(cfg, load_dataset(cfg.data), hooks)
    report = export_checkpoint(hooks.last_checkpoint, out / "model.onnx", int8=True).to_dict()
    report_file.write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/gtsrb")
    parser.add_argument("--output", default="runs/bench-gtsrb")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-train", type=int, default=None, help="stratified training subset (slow CPUs)")
    args = parser.parse_args()
    print(json.dumps(ensure_model(args.data, args.output, args.epochs, args.max_train), indent=2))


if __name__ == "__main__":
    main()

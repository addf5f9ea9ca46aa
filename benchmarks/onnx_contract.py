"""What putting the preprocessing inside the .onnx file costs: raw uint8 pixels into the exported graph
(the current contract) against the previous path, PyTorch `Preprocess` in Python then ONNX Runtime on the
normalized float32 input, for the GTSRB network (untrained: speed only) at several preprocessing settings.

    .venv/bin/python benchmarks/onnx_contract.py [--threads 2] [--seconds 3] [--rounds 3]

Both paths compute the same numbers (checked here: max |logit difference| is printed); this measures
milliseconds per call, alternating the two paths in rounds so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cnnsweep.config import validate_config
from cnnsweep.export import OnnxModelInfo, OnnxRunner, export_onnx
from cnnsweep.export.runtime import ort_session
from cnnsweep.models import build_model
from cnnsweep.transforms import Preprocess

SETTINGS = {"rgb": {}, "gray": {"grayscale": True}, "gray+global": {"grayscale": True, "equalize": "global"}}


def float_input_session(model: torch.nn.Module, pre: Preprocess, threads: int):
    """The previous contract: the network alone, normalized float32 N x C x H x W in."""
    example = torch.zeros(2, *pre.input_shape)
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), (example,), input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 20)},),
                                    dynamo=True, external_data=False, optimize=True, verbose=False)
    return ort_session(program.model_proto.SerializeToString(), threads, "cpu", True)


def time_call(fn, seconds: float) -> float:
    """Median ms per call over `seconds` (after a warm-up)."""
    for _ in range(5):
        fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def measure(name: str, kw: dict, args, tmp: Path) -> dict:
    cfg = validate_config({"model": json.load(open(args.model_json)) if args.model_json else {
        "num_stages": 3, "width": 32, "convs_per_stage": 2, "head": "flatten", "head_hidden": 256}})
    c = 1 if kw.get("grayscale") else 3
    pre = Preprocess(source_size=(32, 32), source_channels=3, mean=(0.5,) * c, std=(0.25,) * c, **kw)
    torch.manual_seed(0)
    model = build_model(cfg.model, 43, c, 32).eval()
    runner = OnnxRunner.load(export_onnx(model, OnnxModelInfo([str(i) for i in range(43)], pre), tmp / f"{name}.onnx"),
                             num_threads=args.threads)
    old = float_input_session(model, pre, args.threads)
    pixels = np.random.default_rng(0).integers(0, 256, (max(args.batch_sizes), 32, 32, 3), dtype=np.uint8)

    def old_path(x):  # decode -> torch Preprocess -> ORT on floats (what the server did before)
        with torch.inference_mode():
            inp = pre(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
        return old.run(["logits"], {"input": inp})[0]

    diff = float(np.abs(runner.logits(pixels) - old_path(pixels)).max())
    row = {"max_abs_logit_diff": diff}
    for bs in args.batch_sizes:
        x = pixels[:bs]
        new_ms, old_ms = [], []
        for _ in range(args.rounds):
            new_ms.append(time_call(lambda: runner.logits(x), args.seconds))
            old_ms.append(time_call(lambda: old_path(x), args.seconds))
        row[bs] = {"graph_ms": [round(v, 3) for v in new_ms], "python_then_ort_ms": [round(v, 3) for v in old_ms]}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=2.0, help="per path, batch size and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--model-json", default=None, help="a model section as JSON (default: sweeps/gtsrb.yaml's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "threads": args.threads,
           "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in SETTINGS.items():
            out["results"][name] = measure(name, kw, args, Path(tmp))
            print(name, json.dumps(out["results"][name]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

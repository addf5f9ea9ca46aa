"""MODEL of `cnnsweep predict` -> a verified ONNX file, and the session + serving preprocessing around it.

An `.onnx` file is used as it is. A checkpoint, run folder or sweep folder is exported on the fly
(`cnnsweep export`'s own code, so the temporary file is verified against PyTorch before any
prediction is made) into a temporary folder, unless a sweep already has `best/model.onnx`. Every
prediction therefore runs through ONNX Runtime with the server's preprocessing: the CSV matches what
`cnnsweep serve` would answer for the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cnnsweep.export import ExportError, OnnxRunner
from cnnsweep.export.sources import BEST_DIR, MODEL_FILE, is_sweep_dir
from cnnsweep.errors import PredictError
from cnnsweep.serving.model import ServedModel


@dataclass
class Predictor:
    model: ServedModel  # what `cnnsweep serve` would run for the same file
    exported_from: Optional[str] = None  # the checkpoint/run/sweep when exported on the fly


def resolve_model(path: str | Path, workdir: str | Path) -> tuple[Path, Optional[str]]:
    """(the .onnx to run, what it was exported from on the fly or None)."""
    from cnnsweep.export import export_path

    p = Path(path)
    if not p.exists():
        raise PredictError(f"{p}: no such model (.onnx file, checkpoint, run or sweep folder)")
    if p.is_file() and p.suffix == ".onnx":
        return p, None
    if is_sweep_dir(p) and (p / BEST_DIR / MODEL_FILE).is_file():
        return p / BEST_DIR / MODEL_FILE, None
    target = Path(workdir) / MODEL_FILE
    export_path(p, target)  # raises ExportError when ORT does not reproduce PyTorch
    return target, str(p)


def load_predictor(onnx_path: str | Path, num_threads: Optional[int] = None, device: str = "cpu") -> Predictor:
    try:  # no external data, metadata checked against the graph, ORT errors as one line
        runner = OnnxRunner.load(onnx_path, num_threads=num_threads, device=device)
    except ExportError as err:
        raise PredictError(str(err)) from None
    return Predictor(ServedModel(Path(onnx_path).stem, Path(onnx_path), runner))

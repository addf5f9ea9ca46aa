"""`cnnsweep export` as a library: checkpoint -> verified .onnx (+ optional int8), with a report.

    export_checkpoint(ckpt, "model.onnx")   # one checkpoint
    export_path("sweeps/out", top=3)        # whatever `cnnsweep export PATH --top 3` does
    export_best(sweep_dir)                  # the end-of-sweep hook: <sweep>/best/model.onnx
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from cnnsweep.atomic import atomic_path
from cnnsweep.checkpoint import LoadedModel, load_model_from_checkpoint
from cnnsweep.config import config_to_dict
from cnnsweep.engine.calibration import calibration_summary, fit_temperature
from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import OnnxModelInfo
from cnnsweep.export.onnx_export import export_onnx
from cnnsweep.export.quantize import quantize_int8
from cnnsweep.export.runner import OnnxRunner
from cnnsweep.export.sources import BEST_DIR, MODEL_FILE, resolve_sources
from cnnsweep.export.verify import ATOL, BATCH_SIZES, TrainingPath, verify_session
from cnnsweep import metrics as M

NUM_CALIBRATION = 512  # training images for int8 calibration: ranges settle well before this
PREPROCESS_CHUNK = 512  # images preprocessed at a time (bounds float memory for large inputs)
MAX_TEMPERATURE_IMAGES = 10_000  # validation images the temperature is fitted on: one scalar settles long before


@dataclass
class ExportReport:
    checkpoint: str
    onnx: str
    size_bytes: int
    verification: dict[str, Any]
    val_acc_checkpoint: Optional[float] = None  # as recorded at training time
    int8: Optional[dict[str, Any]] = None  # path, size, val_acc_fp32, val_acc_int8, calibration images
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    ensemble: Optional[dict[str, Any]] = None  # ensembles: members (with their metrics) and measured metrics
    calibration: Optional[dict[str, Any]] = None  # temperature stored in the file; ECE/NLL before and after

    @property
    def ok(self) -> bool:
        return bool(self.verification.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checkpoint": self.checkpoint, "onnx": self.onnx, "size_bytes": self.size_bytes,
                "verification": self.verification, "val_acc_checkpoint": self.val_acc_checkpoint,
                "int8": self.int8, "seconds": round(self.seconds, 2), "notes": self.notes,
                **({"ensemble": self.ensemble} if self.ensemble is not None else {}),
                **({"calibration": self.calibration} if self.calibration is not None else {})}


def normalized(lm: LoadedModel, images: torch.Tensor) -> np.ndarray:
    """uint8 N x C x H x W -> float32 model input via the checkpoint's own Preprocess, chunked."""
    parts = [lm.preprocess(images[i:i + PREPROCESS_CHUNK]).numpy() for i in range(0, len(images), PREPROCESS_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, *lm.preprocess.input_shape), np.float32)


def nhwc(images: torch.Tensor) -> np.ndarray:
    """A split's uint8 N x C x H x W -> the uint8 N x H x W x C pixels an exported graph reads."""
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def load_export_data(lm: LoadedModel, data_root: Optional[str] = None):
    """The dataset the model was trained on (same config, so the same validation split)."""
    from cnnsweep.data import load_dataset

    cfg_data = lm.config.data if data_root is None else lm.config.data.model_copy(update={"root": data_root})
    return load_dataset(cfg_data)


def build_info(lm: LoadedModel) -> OnnxModelInfo:
    metrics = {k: float(v) for k, v in lm.metrics.items()
               if k.startswith(("val/", "test/")) or k == "epoch"}  # evaluation metrics, not training noise
    return OnnxModelInfo(lm.class_names, lm.preprocess, config_to_dict(lm.config), metrics, "fp32", str(lm.path))


@torch.inference_mode()
def _torch_logits(lm: LoadedModel, images: torch.Tensor) -> np.ndarray:
    model = lm.model.to("cpu").eval()  # fp32 on CPU, as verification's reference
    parts = [model(torch.from_numpy(normalized(lm, images[i:i + PREPROCESS_CHUNK]))).float().numpy()
             for i in range(0, len(images), PREPROCESS_CHUNK)]
    return np.concatenate(parts)


def fit_export_temperature(lm: LoadedModel, valid) -> dict[str, Any]:
    """Temperature scaling on the validation split (a fixed subset of at most MAX_TEMPERATURE_IMAGES):
    the T the .onnx metadata carries, with ECE/NLL on those images before and after (T = 1 without images)."""
    if valid is None or not len(valid.labels):
        return {"temperature": 1.0, "num_images": 0, "note": "no validation split: temperature not fitted"}
    idx = torch.randperm(len(valid.labels), generator=torch.Generator().manual_seed(0))[:MAX_TEMPERATURE_IMAGES]
    idx = idx.sort().values  # the whole split, in order, when it is small enough
    logits, labels = _torch_logits(lm, valid.images[idx]), valid.labels[idx].numpy()
    return calibration_summary(logits, labels, fit_temperature(logits, labels))


def _calibration_subset(images: torch.Tensor, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)  # a fixed subset: the same int8 model on every export
    return images[torch.randperm(len(images), generator=gen)[:n]]


def _quantize_and_compare(fp32_path: Path, int8_path: Path, dataset, num_calibration: int) -> dict[str, Any]:
    calib = nhwc(_calibration_subset(dataset.train.images, num_calibration))
    quantize_int8(fp32_path, int8_path, calib)
    acc32 = OnnxRunner.load(fp32_path).accuracy(dataset.valid)
    acc8 = OnnxRunner.load(int8_path).accuracy(dataset.valid)
    return {"onnx": str(int8_path), "size_bytes": int8_path.stat().st_size, "val_acc_fp32": acc32,
            "val_acc_int8": acc8, "accuracy_drop_points": round(100 * (acc32 - acc8), 3),
            "num_val": len(dataset.valid.images), "num_calibration": len(calib)}


def int8_path(fp32_path: str | Path) -> Path:
    """Where `--int8` puts the quantized model: model.onnx -> model_int8.onnx."""
    p = Path(fp32_path)
    return p.with_name(f"{p.stem}_int8.onnx")


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, int8: bool = False,
                      data_root: Optional[str] = None, atol: float = ATOL,
                      num_calibration: int = NUM_CALIBRATION) -> ExportReport:
    """Export one checkpoint; raises ExportError when ORT does not match PyTorch.

    The new file is written and verified under a temp name beside `output` and only then replaces it
    (and the int8 model beside it): a failed re-export leaves the previous, verified pair in place.
    """
    start = time.perf_counter()
    lm = load_model_from_checkpoint(checkpoint)
    dataset = load_export_data(lm, data_root)
    out = Path(output)
    calibration = fit_export_temperature(lm, dataset.valid)
    with atomic_path(out) as staged:
        export_onnx(lm.model, dataclasses.replace(build_info(lm), temperature=calibration["temperature"]), staged)
        valid = nhwc(dataset.valid.images[:sum(BATCH_SIZES)])
        module = TrainingPath(lm.model, lm.preprocess)  # torch: the training preprocessing in full + model
        verification = verify_session(OnnxRunner.load(staged), module, valid, atol=atol)
        report = ExportReport(str(lm.path), str(out), staged.stat().st_size, verification.to_dict(),
                              lm.metrics.get(M.VAL_ACC), notes=list(dataset.notes), calibration=calibration)
        if not verification.ok:  # a model that does not reproduce must not be served by accident
            report.seconds = time.perf_counter() - start
            raise ExportError(verification.failure_message(), report)
        if int8:
            with atomic_path(int8_path(out)) as staged8:
                report.int8 = _quantize_and_compare(staged, staged8, dataset, num_calibration)
            report.int8["onnx"] = str(int8_path(out))
    report.seconds = time.perf_counter() - start
    return report


def export_path(path: str | Path, output: Optional[str | Path] = None, *, top: Optional[int] = None,
                **kwargs: Any) -> list[ExportReport]:
    """Everything `cnnsweep export PATH` does. `output`: a file for one model, a folder for --top N."""
    sources = resolve_sources(path, top)
    reports = []
    for src in sources:
        target = src.output
        if output is not None:
            target = Path(output) / src.output.name if top is not None else Path(output)
        reports.append(export_checkpoint(src.checkpoint, target, **kwargs))
    return reports


def export_best(sweep_dir: str | Path, **kwargs: Any) -> ExportReport:
    """End-of-sweep hook: export <sweep>/best/ to <sweep>/best/model.onnx (kwargs as export_checkpoint)."""
    return export_path(sweep_dir, Path(sweep_dir) / BEST_DIR / MODEL_FILE, **kwargs)[0]

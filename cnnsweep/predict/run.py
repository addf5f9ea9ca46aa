"""Chunks of inputs -> prediction rows, batched through ONNX Runtime with the serving preprocessing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from cnnsweep.predict.errors import PredictError
from cnnsweep.predict.inputs import Chunk, InputSet
from cnnsweep.predict.model import Predictor
from cnnsweep.predict.writer import write_rows
from cnnsweep.serving.errors import HttpError
from cnnsweep.serving.images import decode_image

MAX_PIXELS = 4096 * 4096  # decoded image limit (decompression bombs), pixels
BATCH_SIZE = 256  # images per ORT call
CHUNK_SIZE = 2048  # images read (and, on Ray, sent to one task) at a time


@dataclass
class PredictSummary:
    output: str
    num_images: int
    seconds: float
    accuracy: Optional[float] = None  # when the inputs carry true labels (a dataset split)
    exported_from: Optional[str] = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "num_images": self.num_images, "seconds": round(self.seconds, 2),
                "images_per_s": round(self.num_images / self.seconds, 1) if self.seconds else None,
                "accuracy": self.accuracy, "exported_from": self.exported_from, "notes": self.notes}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _decode(chunk: Chunk, predictor: Predictor) -> np.ndarray:
    """A chunk -> normalized float32 model input, with the server's decoding and preprocessing."""
    served = predictor.model
    if chunk.images is not None:
        with torch.inference_mode():
            return served.info.preprocess(torch.from_numpy(np.ascontiguousarray(chunk.images))).numpy()
    parts = []
    for id_, data in zip(chunk.ids, chunk.encoded or []):
        try:
            parts.append(served.prepare_pixels(decode_image(data, MAX_PIXELS)))
        except HttpError as err:
            raise PredictError(f"{id_}: {err.message}") from None
    return np.concatenate(parts)


def _rows(ids: list[str], probs: np.ndarray, names: list[str], top_k: int, labels) -> list[dict]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :max(1, top_k)]
    rows = []
    for i, id_ in enumerate(ids):
        best = int(order[i, 0])
        row = {"id": id_, "label": best, "class_name": names[best], "prob": float(probs[i, best])}
        for rank in range(1, top_k + 1) if top_k > 1 else ():
            c = int(order[i, rank - 1])
            row |= {f"top{rank}_label": c, f"top{rank}_class_name": names[c], f"top{rank}_prob": float(probs[i, c])}
        if labels is not None:
            row["true_label"] = int(labels[i])
        rows.append(row)
    return rows


def predict_chunk(predictor: Predictor, chunk: Chunk, top_k: int = 1, batch_size: int = BATCH_SIZE) -> list[dict]:
    """One chunk -> its CSV rows (what each Ray task runs too)."""
    x = _decode(chunk, predictor)
    probs = np.concatenate([_softmax(predictor.model.run(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])
    return _rows(chunk.ids, probs, predictor.model.info.class_names, top_k, chunk.labels)


def predict(predictor: Predictor, inputs: InputSet, output: str | Path, *, top_k: int = 1,
            batch_size: int = BATCH_SIZE, chunk_size: int = CHUNK_SIZE) -> PredictSummary:
    """Local path (no Ray): every chunk in turn, rows streamed to the CSV."""
    if top_k < 1:
        raise PredictError(f"--top-k must be >= 1, got {top_k}")
    start, hits, total, labelled = time.perf_counter(), 0, 0, 0

    def rows():
        nonlocal hits, total, labelled
        for chunk in inputs.chunks(chunk_size):
            part = predict_chunk(predictor, chunk, top_k, batch_size)
            total += len(part)
            labelled += sum("true_label" in r for r in part)
            hits += sum(r["label"] == r.get("true_label") for r in part)
            yield from part

    write_rows(output, rows(), top_k, with_truth=inputs.labels is not None)
    return PredictSummary(str(output), total, time.perf_counter() - start, hits / labelled if labelled else None,
                          predictor.exported_from, list(inputs.notes))

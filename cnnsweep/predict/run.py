"""Chunks of inputs -> prediction rows, batched through ONNX Runtime with the serving preprocessing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from cnnsweep.errors import PredictError
from cnnsweep.predict.inputs import Chunk, InputSet
from cnnsweep.predict.model import Predictor
from cnnsweep.predict.writer import write_rows
from cnnsweep.serving.http_error import HttpError
from cnnsweep.serving.images import decode_image

MAX_PIXELS = 4096 * 4096  # decoded image limit (decompression bombs), pixels
BATCH_SIZE = 256  # images per ORT call
CHUNK_SIZE = 2048  # images read (and, on Ray, sent to one task) at a time
MAX_LISTED_SKIPS = 100  # skipped images named in the summary (all are counted)


@dataclass
class PredictSummary:
    output: str
    num_images: int
    seconds: float
    accuracy: Optional[float] = None  # when the inputs carry true labels (a dataset split)
    exported_from: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # --skip-bad: {"id", "error"} per image left out

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "num_images": self.num_images, "seconds": round(self.seconds, 2),
                "images_per_s": round(self.num_images / self.seconds, 1) if self.seconds else None,
                "accuracy": self.accuracy, "exported_from": self.exported_from, "notes": self.notes,
                "num_skipped": len(self.skipped), "skipped": self.skipped[:MAX_LISTED_SKIPS]}


@dataclass
class ChunkResult:
    """What one chunk gives back: its CSV rows, and the images skipped as unreadable (with --skip-bad)."""

    rows: list[dict]
    skipped: list[dict[str, str]] = field(default_factory=list)


def _softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature): the export's fitted temperature, so `prob` is calibrated."""
    z = z.astype(np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _decode(chunk: Chunk, skip_bad: bool) -> tuple[list[np.ndarray], list[int], list[dict]]:
    """A chunk -> raw uint8 pixel arrays (N x H x W x C, decoded as the server decodes uploads), the
    positions of the images they hold, and the images skipped. A bad image ends the run unless `skip_bad`."""
    if chunk.images is not None:  # a dataset split: uint8 N x C x H x W
        x = np.ascontiguousarray(np.asarray(chunk.images).transpose(0, 2, 3, 1))
        return [x], list(range(len(x))), []
    parts, kept, skipped = [], [], []
    for i, (id_, data) in enumerate(zip(chunk.ids, chunk.encoded or [])):
        reason = chunk.read_errors.get(i)
        if reason is None:
            try:
                pixels = decode_image(data, MAX_PIXELS)
                parts.append((pixels[..., None] if pixels.ndim == 2 else pixels)[None])
                kept.append(i)
                continue
            except HttpError as err:
                reason = err.message
        if not skip_bad:
            raise PredictError(f"{id_}: {reason} (--skip-bad leaves such files out)")
        skipped.append({"id": id_, "error": reason})
    return parts, kept, skipped


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


def predict_chunk(predictor: Predictor, chunk: Chunk, top_k: int = 1, batch_size: int = BATCH_SIZE,
                  skip_bad: bool = False) -> ChunkResult:
    """One chunk -> its CSV rows (what each Ray task runs too)."""
    pixels, kept, skipped = _decode(chunk, skip_bad)
    if not kept:
        return ChunkResult([], skipped)
    probs = _softmax(predictor.model.runner.logits_of(pixels, batch_size), predictor.model.info.temperature)
    labels = None if chunk.labels is None else chunk.labels[kept]
    ids = [chunk.ids[i] for i in kept]
    return ChunkResult(_rows(ids, probs, predictor.model.info.class_names, top_k, labels), skipped)


def write_predictions(results: Iterable[ChunkResult], inputs: InputSet, output: str | Path, *, top_k: int,
                      started: float, exported_from: Optional[str]) -> PredictSummary:
    """Stream the chunks' rows into the CSV (in order) and count what the summary reports: one code path
    for the local run and the Ray tasks."""
    counts = {"n": 0, "labelled": 0, "hits": 0}
    skipped: list[dict[str, str]] = []

    def rows() -> Iterator[dict]:
        for result in results:
            skipped.extend(result.skipped)
            for row in result.rows:
                counts["n"] += 1
                if "true_label" in row:
                    counts["labelled"] += 1
                    counts["hits"] += row["label"] == row["true_label"]
                yield row

    write_rows(output, rows(), top_k, with_truth=inputs.labels is not None)
    acc = counts["hits"] / counts["labelled"] if counts["labelled"] else None
    return PredictSummary(str(output), counts["n"], time.perf_counter() - started, acc, exported_from,
                          list(inputs.notes), skipped)


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise PredictError(f"--top-k must be >= 1, got {top_k}")


def predict(predictor: Predictor, inputs: InputSet, output: str | Path, *, top_k: int = 1,
            batch_size: int = BATCH_SIZE, chunk_size: int = CHUNK_SIZE, skip_bad: bool = False) -> PredictSummary:
    """Local path (no Ray): every chunk in turn, rows streamed to the CSV."""
    check_top_k(top_k)
    started = time.perf_counter()
    results = (predict_chunk(predictor, c, top_k, batch_size, skip_bad) for c in inputs.chunks(chunk_size))
    return write_predictions(results, inputs, output, top_k=top_k, started=started,
                             exported_from=predictor.exported_from)

"""Predictions over a split: batched logits -> softmax, predicted class, confidence; saved as npz + csv."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from cnnsweep.atomic import atomic_write, atomic_write_text
from cnnsweep.safe_text import csv_cell

BATCH_SIZE = 256  # images per forward pass: bounded memory, and the unit the Ray path ships per task

PredictFn = Callable[[object, torch.Tensor], np.ndarray]  # (predictor, uint8 images) -> logits


@dataclass
class Predictions:
    labels: np.ndarray  # int64 N
    logits: np.ndarray  # float32 N x K
    seconds: float  # wall clock of the prediction pass

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)  # stable softmax
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)


def predict_local(predictor, images: torch.Tensor, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Logits for every image, one batch at a time in this process."""
    return predictor.split_logits(images, batch_size).astype(np.float32)


def predict_split(predictor, images: torch.Tensor, labels: torch.Tensor,
                  predict: Optional[PredictFn] = None) -> Predictions:
    """`predict` (default: predict_local; the Ray path passes its own) timed over the whole split."""
    start = time.perf_counter()
    logits = (predict or predict_local)(predictor, images)
    return Predictions(labels.numpy().astype(np.int64), logits, time.perf_counter() - start)


def save_predictions(p: Predictions, class_names: list[str], out_dir: Path, stem: str) -> list[str]:
    """<stem>.npz (labels, logits) and <stem>.csv (index, true, pred, confidence, names): the inputs from
    which every metric of the report can be recomputed."""
    # Both files through cnnsweep.atomic: a failed write leaves the previous file whole.
    atomic_write(out_dir / f"{stem}.npz", lambda f: np.savez_compressed(f, labels=p.labels, logits=p.logits))
    names = [csv_cell(n) for n in class_names]  # from the model's files: quoted cells, never formulas
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["index", "true", "pred", "confidence", "true_name", "pred_name"])
    for i, (t, q, c) in enumerate(zip(p.labels, p.pred, p.confidence)):
        writer.writerow([i, int(t), int(q), f"{c:.6f}", names[int(t)], names[int(q)]])
    atomic_write_text(out_dir / f"{stem}.csv", text.getvalue())
    return [f"{stem}.npz", f"{stem}.csv"]

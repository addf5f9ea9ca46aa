"""Cross-trial error atlas: which errors the top-K models share, which are unique to one, and the
accuracy of their ensemble (mean of the softmax outputs): the case for serving an ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnsweep.analysis.charts import save, new_figure
from cnnsweep.analysis.predictions import Predictions


def ensemble_accuracy(preds: list[Predictions]) -> float:
    mean = np.mean([p.probs for p in preds], axis=0)
    return float((mean.argmax(axis=1) == preds[0].labels).mean())


def _bars(wrong_by: np.ndarray, k: int, path: Path) -> Path:
    fig = new_figure(5.5, 3.2)
    ax = fig.add_subplot()
    counts = [int((wrong_by == j).sum()) for j in range(1, k + 1)]
    ax.bar(range(1, k + 1), counts)
    for j, c in enumerate(counts, start=1):
        ax.text(j, c, str(c), ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="number of the top-K models that get the image wrong", ylabel="images",
           title="errors shared across models", xticks=range(1, k + 1))
    return save(fig, path)


def error_atlas(names: list[str], preds: list[Predictions], out: Path) -> dict[str, Any]:
    """Needs >= 2 models predicted on the same images (same labels, same order)."""
    wrong = np.stack([p.pred != p.labels for p in preds])  # models x images
    wrong_by = wrong.sum(axis=0)
    k = len(preds)
    unique = {n: int((wrong[i] & (wrong_by == 1)).sum()) for i, n in enumerate(names)}
    _bars(wrong_by, k, out / "error_atlas.png")
    return {"models": names, "num_images": int(wrong.shape[1]),
            "errors_per_model": {n: int(wrong[i].sum()) for i, n in enumerate(names)},
            "accuracy_per_model": {n: float(1 - wrong[i].mean()) for i, n in enumerate(names)},
            "shared_by_all": int((wrong_by == k).sum()), "wrong_by_any": int((wrong_by > 0).sum()),
            "unique_per_model": unique,
            "wrong_by_count": {str(j): int((wrong_by == j).sum()) for j in range(1, k + 1)},
            "ensemble_accuracy": ensemble_accuracy(preds),
            "oracle_accuracy": float((wrong_by < k).mean()),  # right when any one model is right
            "figure": "error_atlas.png"}

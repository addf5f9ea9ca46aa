"""Misclassified images of the worst classes: the most confident mistakes first, with Grad-CAM where
the model is a PyTorch module (gradcam.save_gradcam_gallery), plain images for ONNX models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnsweep.analysis.display import as_hwc
from cnnsweep.analysis.plotting import new_grid, save_figure, short, show
from cnnsweep.analysis.predictions import Predictions

PER_CLASS = 6  # misclassified images shown per worst class


def pick_mistakes(p: Predictions, class_id: int, limit: int = PER_CLASS) -> np.ndarray:
    """Indices of images of `class_id` predicted as something else, most confident first."""
    idx = np.flatnonzero((p.labels == class_id) & (p.pred != class_id))
    return idx[np.argsort(-p.confidence[idx], kind="stable")][:limit]


def _plain_gallery(preprocess, images: torch.Tensor, true, pred, conf, class_names, path: Path) -> Path:
    shown = preprocess.prepare(images)
    cols = min(PER_CLASS, len(shown))
    fig, axes = new_grid(-(-len(shown) // cols), cols, extra_height=0.6)
    for k in range(len(shown)):
        title = (f"true: {short(class_names[int(true[k])])}\npred: {short(class_names[int(pred[k])])}"
                 f"\nconf {float(conf[k]):.0%}")
        show(axes.flat[k], as_hwc(shown[k]), title)
    return save_figure(fig, path, "Misclassified images (ONNX model: no Grad-CAM)")


def save_error_galleries(candidate, p: Predictions, images: torch.Tensor, classes: list[int],
                         out_dir: Path) -> list[dict[str, Any]]:
    """One PNG per worst class; returns [{class_id, name, indices, figure}] for metrics.json."""
    from cnnsweep.analysis.gradcam import save_gradcam_gallery

    out = []
    for c in classes:
        idx = pick_mistakes(p, c)
        if not len(idx):
            continue
        true, pred, conf = p.labels[idx], p.pred[idx], p.confidence[idx]
        path = out_dir / f"errors_class{c}.png"
        if candidate.model is not None:
            save_gradcam_gallery(candidate.model, candidate.preprocess, images[idx], true, pred, conf,
                                 candidate.class_names, path)
        else:
            _plain_gallery(candidate.preprocess, images[idx], true, pred, conf, candidate.class_names, path)
        out.append({"class_id": c, "name": candidate.class_names[c], "indices": idx.tolist(),
                    "predicted": pred.tolist(), "confidence": [round(float(x), 4) for x in conf],
                    "figure": path.name})
    return out

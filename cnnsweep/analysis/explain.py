"""`explain_model`: every "what the CNN sees" view and the model card for one model, as PNGs + JSON.

Grad-CAM is not run here: the report calls `save_gradcam_gallery` on the misclassified images it picks.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from cnnsweep.analysis.class_images import (ClassImageSettings, generate_class_images, recognized_by,
                                            save_class_image_grid)
from cnnsweep.analysis.deconv import save_deconv_figure
from cnnsweep.analysis.feature_maps import save_feature_map_grids
from cnnsweep.analysis.model_card import build_model_card
from cnnsweep.atomic import atomic_write_bytes


def pick_images(images_uint8: torch.Tensor, labels: torch.Tensor, num_images: int,
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_images` random images (seeded), without replacement."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images_uint8), generator=gen)[:num_images]
    return images_uint8[idx], labels[idx]


def _save_raw(images: torch.Tensor, path: Path) -> Path:
    """The class images as uint8 N x H x W x C in class order (`images`), for reuse without the PNG's titles."""
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images.permute(0, 2, 3, 1).numpy())
    atomic_write_bytes(path, buf.getvalue())
    return path


def _recognition(images: torch.Tensor, classes: list[int], judges: list[tuple[str, Any]]) -> Optional[dict]:
    """Top-1 recognition of the class images by each independently trained judge, and the mean."""
    if not judges:
        return None
    rows = []
    for name, judge in judges:
        rate, predicted = recognized_by(judge, images, classes)
        rows.append({"model": name, "recognized": rate, "predicted": predicted})
    return {"judges": rows, "rate": float(np.mean([r["recognized"] for r in rows])), "chance": 1 / len(classes)}


def _class_image_section(model, preprocess, class_names, out: Path, seed: int, settings: ClassImageSettings,
                         judges: list[tuple[str, Any]]) -> tuple[dict, dict]:
    classes = list(range(len(class_names)))
    images, probs = generate_class_images(model, preprocess, classes, settings=settings, seed=seed)
    path = save_class_image_grid(images, probs, classes, class_names, out / "class_images.png")
    _save_raw(images, out / "class_images.npz")
    figure = {"section": "class_images", "title": "Class images", "path": str(path),
              "caption": "For each class, an image optimized to maximize that class (Fourier-parameterized, "
                         "robust to small shifts, zooms and rotations); p = the model's probability of the class."}
    numbers = {"probabilities": [round(p, 4) for p in probs.tolist()], "chance": 1 / len(classes),
               "min_probability": float(probs.min()), "raw": "class_images.npz",
               "recognition": _recognition(images, classes, judges)}
    return figure, numbers


def explain_model(model: nn.Module, preprocess, images_uint8: torch.Tensor, labels: torch.Tensor,
                  class_names: list[str], out_dir: str | Path, *, num_images: int = 4, seed: int = 0,
                  class_image_settings: ClassImageSettings = ClassImageSettings(),
                  optimizer: str = "adamw", judges: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
    """Feature maps, deconvolution, class images and the model card; JSON-able result with
    {"model_card", "class_images", "deconv", "images": [...], "figures": [{section, title, path, caption}]}.
    `judges`: (name, predictor) of models trained apart from `model`; class_images["recognition"] is the
    share of class images each reads as their class (None without judges)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, picked = pick_images(images_uint8, labels, num_images, seed)
    figures = save_feature_map_grids(model, preprocess, images, out)
    deconv_path, deconv = save_deconv_figure(model, preprocess, images, out / "deconv.png")
    figures.append({"section": "deconv", "title": "Deconvolution", "path": str(deconv_path),
                    "caption": "Each layer's strongest activation per image, projected back to pixels "
                               "(Zeiler & Fergus deconvnet; gray = no contribution)."})
    class_fig, class_numbers = _class_image_section(model, preprocess, class_names, out, seed,
                                                    class_image_settings, list(judges))
    figures.append(class_fig)
    card = build_model_card(model, preprocess.input_shape, optimizer=optimizer)
    return {"model_card": card, "class_images": class_numbers, "deconv": deconv,
            "images": [{"label": int(y), "class": class_names[int(y)]} for y in picked], "figures": figures}

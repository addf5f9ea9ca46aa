"""Data analysis: class balance before/after the configured balancing, per-class brightness and
contrast, random images per class as loaded and after each preprocessing option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnsweep.analysis.charts import save, balance_bars, new_figure, per_class_boxes
from cnnsweep.analysis.plotting import short
from cnnsweep.config import DataConfig
from cnnsweep.data import build_epoch_indices, class_counts, class_weights
from cnnsweep.safe_text import plot_text
from cnnsweep.transforms import Preprocess

SAMPLES_PER_CLASS = 6  # the "as loaded" grid
VARIANT_SAMPLES = 2  # images per class in the preprocessing comparison
# what each column of the preprocessing comparison applies (DataConfig fields)
VARIANTS = {"as loaded": {}, "grayscale": {"grayscale": True}, "global equalization": {"equalize": "global"},
            "CLAHE": {"equalize": "clahe"}}
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights the grayscale option uses


def balance_after(labels: torch.Tensor, method: str, num_classes: int, seed: int = 0) -> np.ndarray:
    """Images per class one epoch of `method` trains on; class_weights: the loss-weighted count
    (count x weight), since that method keeps every image once and re-weights the loss instead."""
    if method == "class_weights":
        return (class_counts(labels, num_classes).double() * class_weights(labels, num_classes).double()).numpy()
    idx, _ = build_epoch_indices(labels, method, torch.Generator().manual_seed(seed))
    return class_counts(labels[idx], num_classes).numpy().astype(float)


def _ratio(counts: np.ndarray) -> float | None:
    present = counts[counts > 0]
    return float(present.max() / present.min()) if len(present) else None


def class_balance(labels: torch.Tensor, cfg: DataConfig, class_names: list[str], out: Path) -> dict[str, Any]:
    n = len(class_names)
    before = class_counts(labels, n).numpy().astype(float)
    after = balance_after(labels, cfg.balance, n)
    balance_bars(before, after, class_names, cfg.balance, out / "class_balance.png")
    return {"method": cfg.balance, "counts_before": before.astype(int).tolist(),
            "counts_after": [round(float(v), 2) for v in after], "imbalance_ratio_before": _ratio(before),
            "imbalance_ratio_after": _ratio(after), "figure": "class_balance.png"}


def brightness_contrast(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean luma (brightness) and std of luma (RMS contrast), both 0..255 pixel units."""
    x = images.float()
    luma = x[:, 0] if x.shape[1] == 1 else sum(w * x[:, c] for c, w in enumerate(LUMA))
    flat = luma.flatten(1)
    return flat.mean(1).numpy(), flat.std(1, correction=0).numpy()


def image_statistics(images: torch.Tensor, labels: torch.Tensor, num_classes: int, out: Path) -> dict[str, Any]:
    bright, contrast = brightness_contrast(images)
    y = labels.numpy()
    per_class_boxes([bright, contrast], ("brightness (mean luma, 0-255)", "contrast (std of luma, 0-255)"),
                    [y], num_classes, out / "image_stats.png")
    rows = [{"class_id": c, "brightness_mean": float(bright[y == c].mean()) if (y == c).any() else None,
             "brightness_std": float(bright[y == c].std()) if (y == c).any() else None,
             "contrast_mean": float(contrast[y == c].mean()) if (y == c).any() else None}
            for c in range(num_classes)]
    return {"per_class": rows, "brightness_mean": float(bright.mean()), "contrast_mean": float(contrast.mean()),
            "figure": "image_stats.png"}


def sample_indices(labels: torch.Tensor, num_classes: int, per_class: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]].tolist())
    return out


def _rgb(images: torch.Tensor) -> np.ndarray:
    """N x C x H x W uint8 -> N x H x W x 3 (gray repeated), for one mosaic."""
    return images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy() if images.shape[1] == 1 else \
        images.permute(0, 2, 3, 1).numpy()


def _grid(columns: list[tuple[str, torch.Tensor]], picks: list[list[int]], class_names: list[str],
          path: Path, title: str) -> Path:
    """Rows = classes; per picked image one cell per (name, prepared images) column. Drawn as ONE
    mosaic image (43 x 8 separate axes take matplotlib ~10x longer), labelled with ticks."""
    per = max((len(p) for p in picks), default=0)
    ncols, (h, w), gap = max(1, per * len(columns)), columns[0][1].shape[-2:], 2  # gap: px between cells
    mosaic = np.full((len(picks) * (h + gap), ncols * (w + gap), 3), 255, np.uint8)
    cells = [(name, _rgb(imgs)) for name, imgs in columns]
    for r, idx in enumerate(picks):
        for k, i in enumerate(idx):
            for j, (_, rgb) in enumerate(cells):
                c = k * len(cells) + j
                mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = rgb[i]
    fig = new_figure(max(4.0, 0.75 * ncols + 2.2), 0.75 * len(picks) + 0.8)
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(picks))],
                  [plot_text(f"{r} {short(n, 24)}") for r, n in enumerate(class_names)], fontsize=7)
    names = [plot_text(name) for _ in range(per) for name, _ in columns] if len(columns) > 1 else []
    ax.set_xticks([c * (w + gap) + w / 2 for c in range(len(names))], names, fontsize=7, rotation=90)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(plot_text(title), fontsize=9)
    return save(fig, path)


def preprocessing_variants(images: torch.Tensor, cfg: DataConfig) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """The picked images through Preprocess.prepare with each option (same code as training)."""
    out, skipped = [], []
    for name, update in VARIANTS.items():
        variant = cfg.model_copy(update={"grayscale": False, "equalize": "none", "normalize": False} | update)
        try:
            out.append((name, Preprocess.fit(variant, images).prepare(images)))
        except ValueError as err:  # e.g. CLAHE's 8 x 8 tile grid on 8 px digits
            skipped.append(f"{name}: {err}")
    return out, skipped


def sample_grids(images: torch.Tensor, labels: torch.Tensor, cfg: DataConfig, class_names: list[str],
                 out: Path, seed: int) -> dict[str, Any]:
    n = len(class_names)
    picks = sample_indices(labels, n, SAMPLES_PER_CLASS, seed)
    flat = sorted({i for p in picks for i in p})
    sub = images[flat]
    where = {i: k for k, i in enumerate(flat)}
    local = [[where[i] for i in p] for p in picks]
    _grid([("", sub)], local, class_names, out / "samples.png", "Random training images per class, as loaded")
    variants, skipped = preprocessing_variants(sub, cfg)
    _grid(variants, [p[:VARIANT_SAMPLES] for p in local], class_names, out / "preprocessing.png",
          f"The same images: {' | '.join(n for n, _ in variants)} "
          "(cnnsweep.transforms.Preprocess, the training code path)")
    return {"sample_indices": picks, "figures": ["samples.png", "preprocessing.png"],
            "variants": [n for n, _ in variants], "skipped_variants": skipped}


def analyze_data(train_images: torch.Tensor, train_labels: torch.Tensor, cfg: DataConfig,
                 class_names: list[str], out: Path, seed: int = 0) -> dict[str, Any]:
    """Everything of the data section, on the training split (what the model learned from)."""
    return {"split": "train", "num_images": int(len(train_labels)),
            "balance": class_balance(train_labels, cfg, class_names, out),
            "image_stats": image_statistics(train_images, train_labels, len(class_names), out),
            "samples": sample_grids(train_images, train_labels, cfg, class_names, out, seed)}

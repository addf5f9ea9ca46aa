"""Stratified hold-out and subsetting of a split (class proportions kept, seeded)."""

from __future__ import annotations

import numpy as np

from .dataset import ImageSplit


def stratified_split(split: ImageSplit, fraction: float, seed: int) -> tuple[ImageSplit, ImageSplit, str]:
    """(kept, held_out, how): `fraction` of `split` held out with class proportions kept."""
    kept, held, how = _split_indices(split.labels.numpy(), fraction, seed)
    return split.subset(kept), split.subset(held), how


def stratified_subset(split: ImageSplit, num: int, seed: int) -> tuple[ImageSplit, str]:
    """`num` images of `split` with class proportions kept (the whole split if num >= len)."""
    if num >= len(split):
        return split, "all"
    _, kept, how = _split_indices(split.labels.numpy(), num, seed)
    return split.subset(np.sort(kept)), how  # sorted: keep the on-disk order, shuffling is the loader's job


def _split_indices(labels: np.ndarray, held: float | int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(rest, held) index arrays; `held` is a fraction or a count (sklearn's test_size).

    Stratifying needs at least 2 images per class and room for one image of every class on each side;
    when it cannot (tiny subsets, a class with one image) this falls back to a plain seeded random draw
    and says so.
    """
    from sklearn.model_selection import train_test_split  # here: importing sklearn takes ~1 s

    idx = np.arange(len(labels))
    try:
        rest, taken = train_test_split(idx, test_size=held, random_state=seed, stratify=labels)
        return rest, taken, "stratified"
    except ValueError:  # sklearn: a class with 1 member, or fewer slots than classes
        rest, taken = train_test_split(idx, test_size=held, random_state=seed)
        return rest, taken, "random (too few images per class to stratify)"

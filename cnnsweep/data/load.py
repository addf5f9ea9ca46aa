"""load_dataset(cfg.data): the registry loader + a validation split when there is none + subsets."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Optional

from ..config import DataConfig
from .dataset import ImageDataset
from .registry import create_dataset, loader_options
from .split import stratified_split, stratified_subset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """The `data.*` fields that decide WHICH images `load_dataset` returns; the others (grayscale,
    equalize, normalize, balance, ...) are applied later, to the loaded tensors.

    `load_dataset` reads the config only through this projection, so a field that changes the loaded
    images has to be added here, and then it is part of `dataset_key` too: a sweep can never reuse a
    cached dataset that a trial's config would have loaded differently.
    """

    name: str
    root: Optional[str]
    download: bool
    image_size: Optional[int]
    cache_dir: Optional[str]
    val_fraction: float
    max_train_samples: Optional[int]
    max_val_samples: Optional[int]

    @classmethod
    def from_config(cls, cfg: DataConfig) -> "DataSource":
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


def dataset_key(cfg: DataConfig) -> tuple:
    """Equal keys <=> `load_dataset` returns the same images (what a sweep caches datasets by)."""
    return dataclasses.astuple(DataSource.from_config(cfg))


def load_dataset(cfg: DataConfig, *, seed: int = 0) -> ImageDataset:
    """The dataset `cfg` describes, with train/valid(/test) splits, as uint8 tensors on the CPU.

    `seed` fixes the validation split and the subsets. It is deliberately not the training seed: every
    trial of a sweep then validates on the same images, so their scores compare.
    """
    return _load(DataSource.from_config(cfg), seed)


def _load(src: DataSource, seed: int) -> ImageDataset:
    offered = {"download": src.download, "image_size": src.image_size, "cache_dir": src.cache_dir}
    accepted = loader_options(src.name)
    ds = create_dataset(src.name, src.root, **{k: v for k, v in offered.items() if k in accepted})
    train, valid, notes = ds.train, ds.valid, list(ds.notes)
    if valid is None:
        train, valid, how = stratified_split(train, src.val_fraction, seed)
        notes.append(f"validation: {len(valid)} images ({src.val_fraction:.0%}) held out of train, {how}")
    if src.max_train_samples and src.max_train_samples < len(train):
        train, how = stratified_subset(train, src.max_train_samples, seed)
        notes.append(f"train: {how} subset of {len(train)} images (data.max_train_samples)")
    if src.max_val_samples and src.max_val_samples < len(valid):
        valid, how = stratified_subset(valid, src.max_val_samples, seed)
        notes.append(f"valid: {how} subset of {len(valid)} images (data.max_val_samples)")
    for note in notes:
        log.info("data: %s", note)
    return ImageDataset(train, valid, ds.test, ds.class_names, notes)

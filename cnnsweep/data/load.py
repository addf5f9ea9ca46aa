"""load_dataset(cfg.data): the registry loader + a validation split when there is none + subsets."""

from __future__ import annotations

import logging

from ..config import DataConfig
from .dataset import ImageDataset
from .registry import create_dataset, loader_options
from .split import stratified_split, stratified_subset

log = logging.getLogger(__name__)


def load_dataset(cfg: DataConfig, *, seed: int = 0) -> ImageDataset:
    """The dataset `cfg` describes, with train/valid(/test) splits, as uint8 tensors on the CPU.

    `seed` fixes the validation split and the subsets. It is deliberately not the training seed: every
    trial of a sweep then validates on the same images, so their scores compare.
    """
    offered = {"download": cfg.download, "image_size": cfg.image_size, "cache_dir": cfg.cache_dir}
    accepted = loader_options(cfg.name)
    ds = create_dataset(cfg.name, cfg.root, **{k: v for k, v in offered.items() if k in accepted})
    train, valid, notes = ds.train, ds.valid, list(ds.notes)
    if valid is None:
        train, valid, how = stratified_split(train, cfg.val_fraction, seed)
        notes.append(f"validation: {len(valid)} images ({cfg.val_fraction:.0%}) held out of train, {how}")
    if cfg.max_train_samples and cfg.max_train_samples < len(train):
        train, how = stratified_subset(train, cfg.max_train_samples, seed)
        notes.append(f"train: {how} subset of {len(train)} images (data.max_train_samples)")
    if cfg.max_val_samples and cfg.max_val_samples < len(valid):
        valid, how = stratified_subset(valid, cfg.max_val_samples, seed)
        notes.append(f"valid: {how} subset of {len(valid)} images (data.max_val_samples)")
    for note in notes:
        log.info("data: %s", note)
    return ImageDataset(train, valid, ds.test, ds.class_names, notes)

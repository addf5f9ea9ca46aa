"""Which images the analysis predicts: the requested split, or the next one when that file is missing."""

from __future__ import annotations

from typing import Optional

from cnnsweep.errors import AnalysisError
from cnnsweep.config import DataConfig
from cnnsweep.data import ImageDataset, ImageSplit, load_dataset

SPLIT_ORDER = ("test", "valid")  # fallback order after the requested split


def data_config(cfg: DataConfig, data_root: Optional[str]) -> DataConfig:
    """The model's data section, with `--data-root` replacing data.root (the data moved since training)."""
    return cfg if data_root is None else cfg.model_copy(update={"root": data_root})


def load_analysis_data(cfg: DataConfig, data_root: Optional[str]) -> ImageDataset:
    """The dataset as the model was trained on it: same config and seed, so the same validation split."""
    return load_dataset(data_config(cfg, data_root))


def choose_split(dataset: ImageDataset, split: str) -> tuple[str, ImageSplit, list[str]]:
    """(name, images, notes): `split` if the dataset has it, else the next split that exists (said in a note)."""
    if split not in SPLIT_ORDER:
        raise AnalysisError(f"--split must be one of {', '.join(SPLIT_ORDER)}, got {split!r}")
    order = [split] + [s for s in SPLIT_ORDER if s != split]
    for name in order:
        found = getattr(dataset, name)
        if found is not None and len(found.labels):
            notes = [] if name == split else [f"no {split} split in this dataset: analyzing the {name} split"]
            return name, found, notes
    raise AnalysisError(f"the dataset has none of the splits {', '.join(order)}")

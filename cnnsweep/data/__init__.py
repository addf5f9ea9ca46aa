"""Datasets as in-memory uint8 tensors: registry, safe loaders, splits, balancing, device batches.

Pure torch + numpy (never ray). Importing this package registers every format below.
"""

from . import digits, gtsrb_official, gtsrb_pickle, image_folder, mnist  # noqa: F401  (registers formats)
from .balance import BALANCE_METHODS, build_epoch_indices, class_counts, class_weights
from .dataset import ImageDataset, ImageSplit
from cnnsweep.errors import DataError
from .load import DataSource, dataset_key, load_dataset
from .loader import DeviceBatches, shard_for_eval
from .registry import create_dataset, list_datasets, register_dataset
from .safe_pickle import load_pickle

__all__ = [
    "BALANCE_METHODS", "DataError", "DataSource", "dataset_key", "DeviceBatches", "ImageDataset", "ImageSplit", "build_epoch_indices",
    "class_counts", "class_weights", "create_dataset", "list_datasets", "load_dataset", "load_pickle",
    "register_dataset", "shard_for_eval",
]

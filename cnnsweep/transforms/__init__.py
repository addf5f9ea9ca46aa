"""Deterministic preprocessing (`Preprocess`) and per-sample batch augmentation (`BatchAugment`).

Pure torch (+ torchvision/kornia image ops): no Ray here.
"""

from cnnsweep.transforms.augment import (AugmentParams, BatchAugment, build_augment,
                                         default_balance_augment)
from cnnsweep.transforms.preprocess import Normalize, Preprocess

__all__ = ["AugmentParams", "BatchAugment", "Normalize", "Preprocess", "build_augment",
           "default_balance_augment"]

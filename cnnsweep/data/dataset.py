"""The in-memory dataset every format loads into: uint8 NCHW images + int64 labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cnnsweep.safe_text import printable

from cnnsweep.errors import DataError

MAX_NUM_CLASSES = 10_000  # GTSRB has 43: a larger list is a crafted file, and sizes per-class arrays
MAX_CLASS_NAME_LENGTH = 200  # characters; a name is shown in tables, plot labels and every CSV row


@dataclass
class ImageSplit:
    """One split held in memory; moved to the training device once, batched there."""

    images: torch.Tensor  # uint8, N x C x H x W (channels first), C in {1, 3}
    labels: torch.Tensor  # int64, N

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DataError(f"images must be uint8 N x C x H x W with C in (1, 3), "
                            f"got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
            raise DataError(f"labels must be int64 of length {len(x)}, got {y.dtype} {tuple(y.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor | np.ndarray) -> "ImageSplit":
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return ImageSplit(self.images[idx], self.labels[idx])

    def to(self, device: torch.device | str) -> "ImageSplit":
        return ImageSplit(self.images.to(device), self.labels.to(device))

    @classmethod
    def from_nhwc(cls, images: np.ndarray, labels: np.ndarray) -> "ImageSplit":
        """numpy N x H x W x C uint8 (how pickles and PIL store pixels) -> channels-first split."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
        return cls(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


@dataclass
class ImageDataset:
    train: ImageSplit
    valid: ImageSplit | None  # None only if the format has none AND no val_fraction split was made
    test: ImageSplit | None  # None when there is no test split (see notes)
    class_names: list[str]
    notes: list[str] = field(default_factory=list)  # human-readable remarks, logged by the caller

    def __post_init__(self) -> None:
        self.class_names = checked_class_names(self.class_names)
        for name, split in self.splits().items():
            if len(split) and int(split.labels.max()) >= len(self.class_names):
                raise DataError(f"{name} split has label {int(split.labels.max())} but only "
                                f"{len(self.class_names)} class names")
            if len(split) and int(split.labels.min()) < 0:
                raise DataError(f"{name} split has a negative label")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    def splits(self) -> dict[str, ImageSplit]:
        """The splits that exist, by name."""
        named = {"train": self.train, "valid": self.valid, "test": self.test}
        return {k: v for k, v in named.items() if v is not None}


def check_num_classes(count: int, source: object) -> None:
    """Before a list of class names is read whole or decoded for: bounded by MAX_NUM_CLASSES."""
    if count > MAX_NUM_CLASSES:
        raise DataError(f"{source}: {count} classes, at most {MAX_NUM_CLASSES} are supported")


def checked_class_names(names: list, source: object = "class names") -> list[str]:
    """The names of every dataset format, whichever file they came from: at most MAX_NUM_CLASSES
    strings of at most MAX_CLASS_NAME_LENGTH characters, undecodable bytes (a folder name) escaped."""
    check_num_classes(len(names), source)
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise DataError(f"{source}: class {i} has a name that is not text ({type(name).__name__})")
        if len(name) > MAX_CLASS_NAME_LENGTH:
            raise DataError(f"{source}: class {i} has a name longer than {MAX_CLASS_NAME_LENGTH} characters "
                            f"({len(name)}: {printable(name[:40])!r}...)")
    return [printable(n) for n in names]

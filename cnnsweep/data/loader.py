"""DeviceBatches: this worker's batches of a split that already lives on the training device.

No DataLoader and no per-image Python: each epoch is one index permutation (computed on the CPU from a
seeded generator, moved to the device once), and each batch is one index_select there. Under DDP every
rank computes the same permutation from (seed, epoch) and takes a disjoint, equal-length shard of it,
the way torch's DistributedSampler does, so all ranks run the same number of steps.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

import numpy as np
import torch

# indices_fn(generator) -> (indices into the split, augment_mask or None) for one epoch; e.g.
# functools.partial(build_epoch_indices, labels_cpu, cfg.data.balance)
IndicesFn = Callable[[torch.Generator], tuple[torch.Tensor, Optional[torch.Tensor]]]


class DeviceBatches:
    """Iterate this rank's (images_uint8, labels) batches of one epoch (the engine cuts each into
    micro-batches for gradient accumulation); call set_epoch(e) before each epoch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 indices_fn: IndicesFn | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size > 0 and 0 <= rank < world_size, "
                             f"got {batch_size}, {rank}, {world_size}")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.seed, self.drop_last, self.indices_fn = shuffle, seed, drop_last, indices_fn
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._plan: tuple[int, torch.Tensor, torch.Tensor | None] | None = None  # (epoch, indices, mask)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        n = len(self._shard()[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self.batches_with_mask():
            yield x, y

    def batches_with_mask(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(images, labels, augment_mask or None): the mask marks images that must be augmented
        (the duplicated extras of data.balance=oversample_augment)."""
        indices, mask = self._shard()
        indices = indices.to(self.images.device)
        mask = mask.to(self.images.device) if mask is not None else None
        for b in range(len(self)):
            idx = indices[b * self.batch_size:(b + 1) * self.batch_size]
            m = mask[b * self.batch_size:(b + 1) * self.batch_size] if mask is not None else None
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx), m

    def _shard(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's part of the epoch order (cached for the epoch)."""
        if self._plan is None or self._plan[0] != self.epoch:
            indices, mask = self._epoch_order()
            total = math.ceil(len(indices) / self.world_size) * self.world_size
            # pad by wrapping around so that every rank gets the same number of items
            wrap = torch.arange(total) % max(len(indices), 1)
            pick = wrap[self.rank::self.world_size] if len(indices) else wrap[:0]
            self._plan = (self.epoch, indices[pick], mask[pick] if mask is not None else None)
        return self._plan[1], self._plan[2]

    def _epoch_order(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.indices_fn is not None:
            return self.indices_fn(generator)
        if self.shuffle:
            return torch.randperm(len(self.labels), generator=generator), None
        return torch.arange(len(self.labels)), None


def epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (seed, epoch) pair; SeedSequence mixes them so that, unlike seed + epoch,
    (seed=0, epoch=1) and (seed=1, epoch=0) do not give the same order."""
    state = np.random.SeedSequence([seed % (1 << 64), epoch % (1 << 64)]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))  # torch seeds must fit in a signed 64-bit int


def shard_for_eval(num: int, rank: int, world_size: int) -> slice:
    """A contiguous slice of `num` items for `rank` (sizes differ by at most 1, nothing repeated), so
    metrics summed over ranks count every evaluation image exactly once."""
    return slice(rank * num // world_size, (rank + 1) * num // world_size)

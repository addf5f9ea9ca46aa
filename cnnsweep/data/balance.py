"""Class balancing (data.balance): loss weights, or which training images an epoch visits.

- none, class_weights: every image once per epoch, shuffled (class_weights re-weights the loss instead);
- sampler: N draws with replacement, P(image) proportional to 1 / count(its class), so classes are
  equally likely per draw (the WeightedRandomSampler idea, as one vectorized draw);
- oversample: every class repeated up to the largest class count;
- undersample: every class cut down to the smallest class count;
- oversample_augment: like oversample, and the returned mask marks the duplicated extras so the
  trainer always augments them (copies of one image then differ).
"""

from __future__ import annotations

import torch

from ..registry import BALANCE_METHODS as BALANCERS, RegistryError
from cnnsweep.errors import DataError

Indices = tuple[torch.Tensor, "torch.Tensor | None"]  # (indices into the split, augment mask or None)


def class_counts(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    return torch.bincount(labels.cpu(), minlength=num_classes or 0)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so the present classes average 1 (float32, for the loss).

    A class with no training images gets weight 0: it never appears as a target in training anyway.
    Returned on labels' device, ready for nn.CrossEntropyLoss(weight=...).
    """
    counts = class_counts(labels, num_classes).double()
    weights = torch.zeros(num_classes, dtype=torch.float64)
    present = counts > 0
    weights[present] = 1.0 / counts[present]
    weights[present] /= weights[present].mean()
    return weights.float().to(labels.device)


def build_epoch_indices(labels: torch.Tensor, balance: str, generator: torch.Generator) -> Indices:
    """(indices into the split, augment_mask or None) for one epoch, already shuffled.

    augment_mask (bool, same length) is returned only for oversample_augment: True = a duplicate that
    must be augmented.
    """
    try:
        method = BALANCERS.get(balance)
    except RegistryError as e:
        raise DataError(f"data.balance: {e}") from None
    return method(labels.cpu(), generator)


@BALANCERS.register("none")
@BALANCERS.register("class_weights")  # every image once; the loss is re-weighted instead (engine)
def _every_image_once(labels: torch.Tensor, generator: torch.Generator) -> Indices:
    return torch.randperm(len(labels), generator=generator), None


@BALANCERS.register("sampler")
def _sampler(labels: torch.Tensor, generator: torch.Generator) -> Indices:
    weights = 1.0 / class_counts(labels).double()[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator), None


@BALANCERS.register("undersample")
def _undersample_epoch(labels: torch.Tensor, generator: torch.Generator) -> Indices:
    return _shuffle(_undersample(labels, generator), None, generator)


@BALANCERS.register("oversample")
def _oversample_epoch(labels: torch.Tensor, generator: torch.Generator) -> Indices:
    return _shuffle(_oversample(labels, generator)[0], None, generator)


@BALANCERS.register("oversample_augment")
def _oversample_augment_epoch(labels: torch.Tensor, generator: torch.Generator) -> Indices:
    indices, is_extra = _oversample(labels, generator)
    return _shuffle(indices, is_extra, generator)


def _class_groups(labels: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The indices of each present class, each group in random order."""
    counts = class_counts(labels)
    order = torch.argsort(labels, stable=True)
    groups = torch.split(order, counts.tolist())
    return [g[torch.randperm(len(g), generator=generator)] for g in groups if len(g)]


def _undersample(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    groups = _class_groups(labels, generator)
    smallest = min(len(g) for g in groups)
    return torch.cat([g[:smallest] for g in groups])


def _oversample(labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class grown to the largest count: whole copies first, then a random part of one more copy
    (so every image of a class appears k or k+1 times, rather than a lucky few many times)."""
    groups = _class_groups(labels, generator)
    largest = max(len(g) for g in groups)
    parts, extra = [], []
    for g in groups:
        grown = g.repeat(largest // len(g))
        grown = torch.cat([grown, g[torch.randperm(len(g), generator=generator)[: largest % len(g)]]])
        parts.append(grown)
        extra.append(torch.arange(largest) >= len(g))  # the first len(g) entries are the originals
    return torch.cat(parts), torch.cat(extra)


def _shuffle(indices: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    perm = torch.randperm(len(indices), generator=generator)
    return indices[perm], (mask[perm] if mask is not None else None)


BALANCE_METHODS = tuple(BALANCERS.names())

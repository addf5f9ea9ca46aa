"""Class balancing on the real GTSRB training labels (imbalanced about 10:1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnsweep.data import DataError, build_epoch_indices, class_weights
from cnnsweep.data.safe_pickle import load_pickle


@pytest.fixture(scope="module")
def labels(gtsrb_root) -> torch.Tensor:
    return torch.from_numpy(load_pickle(gtsrb_root / "train.pickle")["labels"].astype(np.int64))


def _counts(labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return labels[indices].bincount(minlength=43)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_real_labels_are_imbalanced(labels):
    counts = labels.bincount()
    assert len(counts) == 43 and counts.max() / counts.min() > 8  # the README's "about 10:1"


def test_class_weights_are_inverse_frequency_with_mean_one(labels):
    w = class_weights(labels, 43)
    counts = labels.bincount(minlength=43).float()
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
    per_class_total = w * counts  # every class then contributes the same total weight
    assert torch.allclose(per_class_total, per_class_total.mean().expand(43), rtol=1e-4)
    assert class_weights(torch.tensor([0, 0, 2]), 4).tolist() == pytest.approx([2 / 3, 0, 4 / 3, 0])


@pytest.mark.parametrize("balance", ["none", "class_weights"])
def test_none_is_a_shuffled_permutation(labels, balance):
    idx, mask = build_epoch_indices(labels, balance, _gen())
    assert mask is None and torch.equal(idx.sort().values, torch.arange(len(labels)))
    assert not torch.equal(idx, torch.arange(len(labels)))


def test_sampler_draws_classes_about_equally(labels):
    idx, mask = build_epoch_indices(labels, "sampler", _gen())
    counts = _counts(labels, idx).float()
    assert mask is None and len(idx) == len(labels)
    expected = len(labels) / 43
    assert (counts - expected).abs().max() < 5 * expected ** 0.5  # multinomial noise, 5 sigma
    assert counts.max() / counts.min() < 1.5  # was ~10:1


def test_oversample_grows_every_class_to_the_largest(labels):
    largest = int(labels.bincount().max())
    idx, mask = build_epoch_indices(labels, "oversample", _gen())
    assert mask is None and _counts(labels, idx).tolist() == [largest] * 43
    assert torch.equal(idx.unique(), torch.arange(len(labels)))  # every original image is visited
    per_image = idx.bincount(minlength=len(labels))
    for c in range(43):  # copies spread evenly inside a class: k or k+1 each
        k = per_image[labels == c]
        assert int(k.max() - k.min()) <= 1


def test_oversample_augment_marks_exactly_the_duplicates(labels):
    idx, mask = build_epoch_indices(labels, "oversample_augment", _gen())
    assert _counts(labels, idx).unique().numel() == 1
    assert mask.dtype == torch.bool and int(mask.sum()) == len(idx) - len(labels)
    assert torch.equal(idx[~mask].sort().values, torch.arange(len(labels)))  # originals once each


def test_undersample_cuts_every_class_to_the_smallest(labels):
    smallest = int(labels.bincount().min())
    idx, mask = build_epoch_indices(labels, "undersample", _gen())
    assert mask is None and _counts(labels, idx).tolist() == [smallest] * 43
    assert idx.unique().numel() == len(idx)  # no repeats


def test_same_generator_seed_same_epoch_and_unknown_method(labels):
    a, _ = build_epoch_indices(labels, "oversample", _gen(3))
    b, _ = build_epoch_indices(labels, "oversample", _gen(3))
    c, _ = build_epoch_indices(labels, "oversample", _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(DataError, match="data.balance: unknown balance method .smote.; registered: class_weights"):
        build_epoch_indices(labels, "smote", _gen())

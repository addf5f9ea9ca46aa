"""load_dataset: registry look-up, stratified validation split, stratified subsets; the registry itself."""

from __future__ import annotations

import pytest
import torch

from cnnsweep.config import DataConfig
from cnnsweep.data import (DataError, ImageDataset, ImageSplit, create_dataset, list_datasets, load_dataset,
                           register_dataset)


def _proportions(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return labels.bincount(minlength=num_classes).double() / len(labels)


def test_digits_gets_a_stratified_seeded_validation_split():
    full = create_dataset("digits")
    ds = load_dataset(DataConfig(name="digits", val_fraction=0.2))
    assert len(ds.train) + len(ds.valid) == len(full.train) == 1797
    assert len(ds.valid) == pytest.approx(0.2 * 1797, abs=1)
    # together the two splits are exactly the original label multiset, with the same class shares
    together = torch.cat([ds.train.labels, ds.valid.labels]).bincount()
    assert torch.equal(together, full.train.labels.bincount())
    assert torch.allclose(_proportions(ds.valid.labels, 10), _proportions(full.train.labels, 10), atol=0.01)
    again = load_dataset(DataConfig(name="digits", val_fraction=0.2))
    assert torch.equal(again.valid.images, ds.valid.images)
    other = load_dataset(DataConfig(name="digits", val_fraction=0.2), seed=1)
    assert not torch.equal(other.valid.images, ds.valid.images)
    assert any("held out" in n for n in ds.notes)


def test_gtsrb_keeps_its_valid_split_and_subsets_are_stratified(gtsrb_root):
    ds = load_dataset(DataConfig(name="gtsrb_pickle", root=str(gtsrb_root),
                                 max_train_samples=4300, max_val_samples=860))
    assert (len(ds.train), len(ds.valid), ds.test) == (4300, 860, None)
    full = create_dataset("gtsrb_pickle", gtsrb_root)
    # the real 10:1 class imbalance is kept in the subset (not flattened, not distorted)
    assert torch.allclose(_proportions(ds.train.labels, 43), _proportions(full.train.labels, 43), atol=0.002)
    assert set(ds.valid.labels.tolist()) == set(range(43))
    assert not any("held out" in n for n in ds.notes)  # GTSRB valid is by track: never re-split by image


def test_subset_smaller_than_class_count_falls_back_to_random():
    ds = load_dataset(DataConfig(name="digits", max_train_samples=5))
    assert len(ds.train) == 5 and any("random" in n for n in ds.notes)


def test_registry_errors_and_custom_format(tmp_path, monkeypatch):
    from cnnsweep.registry import DATASETS

    # a registration lasts for the process: keep the test's entry out of the registry the other tests see
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    with pytest.raises(DataError, match="unknown dataset 'nope'.*digits"):
        create_dataset("nope")
    with pytest.raises(DataError, match="no option"):
        create_dataset("digits", image_size=8)

    @register_dataset("test_tiny")
    def _tiny(root, *, image_size: int = 4) -> ImageDataset:
        images = torch.zeros(6, 1, image_size, image_size, dtype=torch.uint8)
        return ImageDataset(ImageSplit(images, torch.tensor([0, 1] * 3)), None, None, ["a", "b"], [])

    assert "test_tiny" in list_datasets()
    assert create_dataset("test_tiny", image_size=5).train.images.shape == (6, 1, 5, 5)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("test_tiny")(lambda root: None)


def test_image_split_rejects_wrong_types():
    with pytest.raises(DataError, match="uint8"):
        ImageSplit(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="labels"):
        ImageSplit(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    split = ImageSplit(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]))
    with pytest.raises(DataError, match="label 5 but only 2 class names"):
        ImageDataset(split, None, None, ["a", "b"])

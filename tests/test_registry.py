"""One generic registry behind datasets, models, balancing methods and poolings: registering a name is
the only edit needed to use it in YAML, and config errors list the registered names."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnsweep.config import ConfigError, validate_config
from cnnsweep.registry import BALANCE_METHODS, DATASETS, MODELS, POOLINGS, Registry, RegistryError


def test_registry_exact_names_families_and_duplicates():
    reg: Registry = Registry("thing")
    reg.register("a", colour="red")(len)
    reg.register("fam/")(print)
    assert reg.names() == ["a", "fam/<name>"]
    assert reg.get("a") is len and reg.entry("a")[0].meta == {"colour": "red"}
    entry, extra = reg.entry("fam/x1")
    assert entry.obj is print and extra == {"model_name": "x1"}
    assert "fam/" not in reg and "b" not in reg and "a" in reg
    reg.register("a", colour="red")(len)  # the same object again: fine (module re-import)
    with pytest.raises(RegistryError, match="thing 'a' is already registered"):
        reg.register("a")(str)
    with pytest.raises(RegistryError, match="unknown thing 'b'; registered: a, fam/<name>"):
        reg.get("b")


def test_shipped_names_come_from_where_they_are_defined():
    assert POOLINGS.names() == ["avg", "max", "none", "strided"]
    assert BALANCE_METHODS.names() == ["class_weights", "none", "oversample", "oversample_augment",
                                       "sampler", "undersample"]
    assert {"cnn", "timm/<name>"} <= set(MODELS.names())
    assert "gtsrb_pickle" in DATASETS.names()


@pytest.mark.parametrize("raw,message", [
    ({"data": {"name": "cifar"}}, "data.name: unknown dataset 'cifar'; registered: digits,"),
    ({"data": {"balance": "smote"}}, "data.balance: unknown balance method 'smote'; registered: class_weights,"),
    ({"model": {"pooling": "lp"}}, "model.pooling: unknown pooling 'lp'; registered: avg, max, none, strided"),
    ({"model": {"name": "vgg"}}, "model.name: unknown model 'vgg'; registered: cnn, timm/<name>"),
])
def test_unknown_names_are_config_errors_with_the_choices(raw, message):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert str(info.value).startswith(message)


@pytest.fixture
def scratch_registries(monkeypatch):
    """Names registered by a test vanish after it (the registries are process-wide)."""
    for reg in (DATASETS, MODELS):
        reg.names()  # the shipped entries first, so they are in the copy
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))


def test_a_registered_dataset_is_usable_from_yaml_with_no_other_edit(scratch_registries):
    from cnnsweep.data import ImageDataset, ImageSplit, load_dataset, register_dataset

    @register_dataset("test_registry_ramp")
    def _ramp(root):
        images = torch.arange(40, dtype=torch.uint8).repeat_interleave(48).reshape(40, 3, 4, 4)
        return ImageDataset(ImageSplit(images, torch.arange(40) % 2), None, None, ["even", "odd"], [])

    cfg = validate_config({"data": {"name": "test_registry_ramp", "val_fraction": 0.25}})
    ds = load_dataset(cfg.data)
    assert len(ds.train) + len(ds.valid) == 40 and ds.class_names == ["even", "odd"]


def test_a_registered_model_family_owns_its_config_fields(scratch_registries):
    from cnnsweep.models import build_model, model_args, register_model

    seen = {}

    @register_model("test_registry_linear", config_fields=("dropout",))
    def _linear(num_classes, in_channels, image_size, *, dropout, pretrained=False, weights=None):
        seen.update(dropout=dropout, pretrained=pretrained)
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                             nn.Linear(in_channels * image_size ** 2, num_classes))

    cfg = validate_config({"model": {"name": "test_registry_linear", "dropout": 0.25}})
    args = model_args(cfg.model, num_classes=3, in_channels=1, image_size=4)
    assert args == {"name": "test_registry_linear", "num_classes": 3, "in_channels": 1, "image_size": 4,
                    "dropout": 0.25}  # only the fields the family declared
    model = build_model(cfg.model, num_classes=3, in_channels=1, image_size=4)
    assert model(torch.zeros(2, 1, 4, 4)).shape == (2, 3) and seen == {"dropout": 0.25, "pretrained": False}

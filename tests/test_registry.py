"""One generic registry behind datasets, models, balancing methods and poolings: registering a name is
the only edit needed to use a dataset in YAML, config errors list the registered names, and the shipped
names are declared in cnnsweep.registry so that config checks them without importing torch."""

from __future__ import annotations

import pytest
import torch

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


def test_shipped_names_are_the_ones_their_packages_register():
    import cnnsweep.data  # noqa: F401  (registers datasets and balancing methods)
    import cnnsweep.models  # noqa: F401  (registers models and poolings)

    for reg in (DATASETS, MODELS, BALANCE_METHODS, POOLINGS):
        assert sorted(reg.shipped) == sorted(reg._entries), reg.kind
    assert POOLINGS.names() == ["avg", "max", "none", "strided"]
    assert BALANCE_METHODS.names() == ["class_weights", "none", "oversample", "oversample_augment",
                                       "sampler", "undersample"]
    assert {"cnn", "timm/<name>"} <= set(MODELS.names())
    assert "gtsrb_pickle" in DATASETS.names()


@pytest.mark.parametrize("raw,message", [
    ({"data": {"name": "cifar"}}, "data.name: unknown dataset 'cifar'; registered: digits,"),
    ({"data": {"balance": "smote"}}, "data.balance: unknown balance method 'smote'; registered: class_weights,"),
    ({"model": {"pooling": "lp"}}, "model.pooling: unknown pooling 'lp'; registered: avg, max, none, strided"),
    ({"model": {"name": "vgg"}}, "model.name: unknown model 'vgg'; registered: cnn, timm/<name>, torchvision/<name>"),
])
def test_unknown_names_are_config_errors_with_the_choices(raw, message):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert str(info.value).startswith(message)


@pytest.fixture
def scratch_registries(monkeypatch):
    """Names registered by a test vanish after it (the registries are process-wide)."""
    import cnnsweep.data  # noqa: F401  (the shipped entries first, so they are in the copy)
    import cnnsweep.models  # noqa: F401

    for reg in (DATASETS, MODELS):
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


def test_each_config_model_family_has_a_registered_factory_and_owns_its_fields():
    from cnnsweep.config import MODEL_FAMILIES, ModelConfig
    from cnnsweep.models import model_args

    assert set(MODEL_FAMILIES) == set(MODELS.shipped)
    cnn = model_args(ModelConfig(width=4, dropout=0.25), num_classes=3, in_channels=1, image_size=4)
    assert cnn["width"] == 4 and cnn["dropout"] == 0.25 and "pretrained" not in cnn and "freeze" not in cnn
    assert model_args(ModelConfig(name="timm/resnet18"), 3, 1, 32) == {  # only the family's own fields
        "name": "timm/resnet18", "num_classes": 3, "in_channels": 1, "image_size": 32}


def test_a_name_check_imports_nothing_but_a_look_up_needs_the_package():
    reg: Registry = Registry("gadget", shipped=("a", "fam/"), package="somewhere")
    assert reg.check("a") == "a" and "fam/x" in reg and reg.names() == ["a", "fam/<name>"]
    with pytest.raises(RegistryError, match="gadget 'a' is registered by somewhere: import it first"):
        reg.get("a")

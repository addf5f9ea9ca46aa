"""BatchAugment: per-sample random augmentation of whole uint8 batches, against torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cnnsweep.config import AugmentConfig
from cnnsweep.transforms import AugmentParams, BatchAugment, build_augment, default_balance_augment


def random_images(n: int = 6, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g)


def asymmetric_pattern(c: int = 3, size: int = 32) -> torch.Tensor:
    """An L-shaped bright mark inside a black border: no rotation or mirror symmetry."""
    x = torch.zeros(1, c, size, size, dtype=torch.uint8)
    x[..., 6:20, 8:12] = 255
    x[..., 16:20, 8:22] = 180
    x[..., 24:27, 20:23] = 90
    return x


# ---------------------------------------------------------------------------- BatchAugment


def test_build_augment_is_none_when_nothing_is_enabled():
    assert build_augment(AugmentConfig()) is None
    assert isinstance(build_augment(AugmentConfig(hflip=True)), BatchAugment)


@pytest.mark.parametrize("option", [{"rotation": 20}, {"translate": 0.2}, {"scale": 0.3}, {"hflip": True},
                                    {"brightness": 0.4}, {"contrast": 0.4}, {"saturation": 0.4}])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_option_keeps_shape_dtype_and_changes_images(option, channels):
    x = random_images(n=8, c=channels)
    out = build_augment(AugmentConfig(**option))(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    if not ("saturation" in option and channels == 1):  # saturation is a no-op on gray images
        assert not torch.equal(out, x)


def test_near_zero_strengths_are_the_identity():
    aug = BatchAugment(AugmentConfig(rotation=1e-4, translate=1e-6, scale=1e-6, brightness=1e-6,
                                     contrast=1e-6, saturation=1e-6))
    x = random_images(n=8)
    assert torch.equal(aug(x, torch.Generator().manual_seed(1)), x)


def test_rotation_by_180_turns_the_pattern_upside_down():
    x = asymmetric_pattern()
    out = BatchAugment(AugmentConfig(rotation=180)).apply(x, AugmentParams(angle=torch.tensor([180.0])))
    assert torch.equal(out, torch.rot90(x, 2, dims=(2, 3)))
    assert not torch.equal(out, x)


def test_rotation_matches_torchvision_rotate():
    x = asymmetric_pattern()  # black border: our border padding and torchvision's zero fill agree
    out = BatchAugment(AugmentConfig(rotation=30)).apply(x, AugmentParams(angle=torch.tensor([30.0])))
    ref = TF.rotate(x, 30.0, interpolation=TF.InterpolationMode.BILINEAR)
    assert (out.int() - ref.int()).abs().max() <= 1


def test_translate_shifts_right_and_down():
    x = asymmetric_pattern()
    shift = AugmentParams(translate=torch.tensor([[0.25, 0.125]]))  # 8 px right, 4 px down
    out = BatchAugment(AugmentConfig(translate=0.25)).apply(x, shift)
    assert torch.equal(out[..., 4:, 8:], x[..., :-4, :-8])


def test_hflip_mirrors_about_half_of_the_batch():
    x = asymmetric_pattern().expand(32, -1, -1, -1).contiguous()
    out = BatchAugment(AugmentConfig(hflip=True))(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    kept = torch.tensor([torch.equal(o, x[0]) for o in out])
    assert (flipped | kept).all() and 4 <= flipped.sum() <= 28


def test_parameters_differ_per_sample():
    x = asymmetric_pattern().expand(16, -1, -1, -1).contiguous()
    out = BatchAugment(AugmentConfig(rotation=30, brightness=0.3))(x, torch.Generator().manual_seed(0))
    assert len({o.numpy().tobytes() for o in out}) == 16


def test_mask_leaves_unmasked_samples_bit_identical():
    x = random_images(n=10)
    mask = torch.tensor([True, False] * 5)
    out = default_balance_augment()(x, torch.Generator().manual_seed(0), mask=mask)
    assert torch.equal(out[~mask], x[~mask])
    assert all(not torch.equal(o, i) for o, i in zip(out[mask], x[mask]))


def test_same_seed_same_output_other_seed_other_output():
    aug = BatchAugment(AugmentConfig(rotation=15, translate=0.1, scale=0.1, brightness=0.2, contrast=0.2,
                                     saturation=0.2, hflip=True))
    x = random_images(n=8)
    a = aug(x, torch.Generator().manual_seed(42))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(42)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(43)))


@pytest.mark.parametrize("factor", [0.6, 1.4])
def test_brightness_moves_mean_the_right_way_like_torchvision(gtsrb_sample, factor):
    x = gtsrb_sample[:32]
    params = AugmentParams(brightness=torch.full((len(x),), factor))
    out = BatchAugment(AugmentConfig(brightness=0.5)).apply(x, params)
    assert (out.float().mean() > x.float().mean()) == (factor > 1)
    assert (out.int() - TF.adjust_brightness(x, factor).int()).abs().max() <= 1


def test_contrast_and_saturation_follow_torchvision(gtsrb_sample):
    x = gtsrb_sample[:32]
    aug = BatchAugment(AugmentConfig(contrast=0.5, saturation=0.5))
    low = aug.apply(x, AugmentParams(contrast=torch.full((len(x),), 0.5)))
    assert low.float().std() < x.float().std()
    assert (low.int() - TF.adjust_contrast(x, 0.5).int()).abs().max() <= 1
    gray = aug.apply(x, AugmentParams(saturation=torch.zeros(len(x))))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_default_balance_augment_is_mild():
    aug = default_balance_augment()
    assert (aug.cfg.rotation, aug.cfg.translate, aug.cfg.scale) == (10, 0.1, 0.1)
    assert (aug.cfg.brightness, aug.cfg.contrast, aug.cfg.saturation, aug.cfg.hflip) == (0.2, 0.2, 0, False)

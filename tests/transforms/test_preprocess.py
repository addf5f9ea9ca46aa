"""Preprocess: prepare (resize, grayscale, equalize), normalize, serialization; synthetic and real GTSRB."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnsweep.config import DataConfig
from cnnsweep.transforms import Preprocess
from cnnsweep.transforms import preprocess as preprocess_module


def random_images(n: int = 6, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g)


# ---------------------------------------------------------------------------- Preprocess


@pytest.mark.parametrize("image_size", [None, 16, 48])
@pytest.mark.parametrize("grayscale", [False, True])
@pytest.mark.parametrize("equalize", ["none", "global", "clahe"])
def test_every_option_gives_declared_shapes_and_dtypes(image_size, grayscale, equalize):
    x = random_images()
    cfg = DataConfig(image_size=image_size, grayscale=grayscale, equalize=equalize, clahe_grid=4)
    pre = Preprocess.fit(cfg, x)
    side = image_size or 32
    assert pre.input_shape == (1 if grayscale else 3, side, side)
    assert (pre.in_channels, pre.image_size) == (pre.input_shape[0], side)
    prepared = pre.prepare(x)
    assert prepared.dtype == torch.uint8 and prepared.shape == (len(x), *pre.input_shape)
    out = pre(x)
    assert out.dtype == torch.float32 and out.shape == prepared.shape


def test_fitted_stats_match_numpy_on_real_gtsrb(gtsrb_sample):
    pre = Preprocess.fit(DataConfig(), gtsrb_sample)
    rgb = gtsrb_sample.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(pre.mean, rgb.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(pre.std, rgb.std(axis=(0, 2, 3)), rtol=1e-6)

    gray = Preprocess.fit(DataConfig(grayscale=True), gtsrb_sample)
    # ITU-R 601 luma in 1/1000 units, rounded half up to uint8
    milli = np.tensordot([299, 587, 114], gtsrb_sample.numpy().astype(np.int64), axes=(0, 1))[:, None]
    luma = (milli + 500) // 1000
    assert gray.in_channels == 1 and np.array_equal(gray.prepare(gtsrb_sample).numpy(), luma)
    np.testing.assert_allclose(gray.mean, [luma.mean() / 255], rtol=1e-5)
    np.testing.assert_allclose(gray.std, [luma.std() / 255], rtol=1e-5)


@pytest.mark.parametrize("options", [{}, {"grayscale": True, "equalize": "clahe"}, {"image_size": 24}])
def test_normalize_after_fit_standardizes_the_train_sample(gtsrb_sample, options):
    x = gtsrb_sample[:128] if options.get("equalize") == "clahe" else gtsrb_sample  # CLAHE: ~2 ms/image
    pre, prepared = Preprocess.fit_prepare(DataConfig(**options), x)
    assert torch.equal(prepared, pre.prepare(x))
    z = pre.normalize(prepared).double()
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(pre.in_channels, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(pre.in_channels, dtype=torch.float64),
                               atol=1e-3, rtol=0)


def test_normalize_off_only_rescales():
    x = random_images()
    pre = Preprocess.fit(DataConfig(normalize=False), x)
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)
    torch.testing.assert_close(pre(x), x.float() / 255)


def test_fixed_mean_std_replace_the_measured_ones():
    """data.mean/std (a pretrained backbone's own normalization): used as given, one value = every channel."""
    x = random_images()
    pre = Preprocess.fit(DataConfig(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]), x)
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    torch.testing.assert_close(pre(x), x.float() / 255 * 2 - 1)
    assert Preprocess.fit(DataConfig(mean=[0.25], std=[0.5]), x).mean == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="3 values for 1-channel"):
        Preprocess.fit(DataConfig(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]), random_images(c=1))


@pytest.mark.parametrize("fields, match", [
    ({"mean": [0.5]}, "set both or neither"),
    ({"mean": [0.5] * 3, "std": [0.5]}, "the same count"),
    ({"mean": [0.5] * 3, "std": [0.5] * 3, "grayscale": True}, "one value each"),
    ({"mean": [0.5], "std": [0.5], "normalize": False}, "need data.normalize"),
    ({"mean": [2.0], "std": [0.5]}, "0..1"),
    ({"mean": [0.5], "std": [0.0]}, "0..1"),
])
def test_bad_fixed_mean_std_are_config_errors(fields, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**fields)


def test_fit_in_chunks_equals_fit_at_once(gtsrb_sample, monkeypatch):
    cfg, x = DataConfig(equalize="clahe", image_size=40), gtsrb_sample[:96]
    whole, prepared = Preprocess.fit_prepare(cfg, x)
    monkeypatch.setattr(preprocess_module, "_CHUNK_ELEMENTS", 3 * 40 * 40 * 7)  # 7 images per chunk
    chunked, prepared_in_chunks = Preprocess.fit_prepare(cfg, x)
    assert torch.equal(prepared_in_chunks, prepared)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(chunked.std, whole.std, rtol=1e-12)


def low_contrast_ramp(c: int) -> torch.Tensor:
    ramp = torch.linspace(100, 130, 32).round().to(torch.uint8)
    return ramp.view(1, 1, 1, 32).expand(1, c, 32, 32).contiguous()


def test_global_equalization_spreads_a_low_contrast_histogram():
    pre = Preprocess.fit(DataConfig(equalize="global", normalize=False), low_contrast_ramp(1))
    out = pre.prepare(low_contrast_ramp(1))
    assert out.min() <= 10 and out.max() == 255  # was 100..130


def test_color_equalization_keeps_hue():
    red = low_contrast_ramp(3)
    red[:, 1:] //= 2  # reddish: R > G = B everywhere
    pre = Preprocess.fit(DataConfig(equalize="global", normalize=False), red)
    out = pre.prepare(red).int()
    assert out.max() - out.min() > 150  # contrast stretched...
    assert (out[:, 0] >= out[:, 1]).all() and (out[:, 0] >= out[:, 2]).all()  # ...still red, not gray


def test_clahe_changes_real_images_and_stays_in_range(gtsrb_sample):
    x = gtsrb_sample[:64]
    for grayscale in (False, True):
        pre = Preprocess.fit(DataConfig(equalize="clahe", grayscale=grayscale, normalize=False), x)
        plain = Preprocess.fit(DataConfig(grayscale=grayscale, normalize=False), x)
        out, ref = pre.prepare(x).float(), plain.prepare(x).float()
        assert (out - ref).abs().mean() > 5  # mean change, 0..255 units
        per_image_std = lambda t: t.std(dim=(1, 2, 3))  # noqa: E731
        assert per_image_std(out).mean() > per_image_std(ref).mean() + 5  # contrast within images goes up


def test_to_dict_round_trip_is_exact(gtsrb_sample):
    x = gtsrb_sample[:32]
    for cfg in (DataConfig(), DataConfig(grayscale=True, equalize="clahe", clahe_clip=3.5, clahe_grid=4,
                                         image_size=48)):
        pre = Preprocess.fit(cfg, x)
        back = Preprocess.from_dict(json.loads(json.dumps(pre.to_dict())))
        assert back == pre and back.to_dict() == pre.to_dict()
        assert torch.equal(back(x), pre(x))


def test_from_dict_rejects_bad_dicts():
    good = Preprocess(source_size=(32, 32), source_channels=3, mean=(0.5,) * 3, std=(0.2,) * 3).to_dict()
    with pytest.raises(ValueError, match="keys"):
        Preprocess.from_dict({k: v for k, v in good.items() if k != "mean"})
    with pytest.raises(ValueError, match="equalize"):
        Preprocess.from_dict({**good, "equalize": "magic"})
    with pytest.raises(ValueError, match="mean/std"):
        Preprocess.from_dict({**good, "mean": [0.5]})


def test_normalize_module_matches_normalize(gtsrb_sample):
    pre = Preprocess.fit(DataConfig(), gtsrb_sample)
    x = pre.prepare(gtsrb_sample[:16])
    assert torch.equal(pre.normalize_module()(x), pre.normalize(x))


def test_clahe_in_chunks_is_exactly_clahe_of_the_whole_batch(gtsrb_sample, monkeypatch):
    # kornia's CLAHE holds ~1.9 MB per 32x32 image at its peak, so prepare() runs a split through it in small
    # chunks (a whole GTSRB split at once took ~10 GB per Ray worker); no image's result may depend on them.
    from cnnsweep.transforms.color import equalize

    x = gtsrb_sample[:40]
    pre = Preprocess.fit(DataConfig(equalize="clahe", normalize=False), x)
    whole = equalize(x, "clahe")
    monkeypatch.setattr(preprocess_module, "_CHUNK_ELEMENTS", 16 * 3 * 32 * 32 * 256)  # chunks of 16, 16 and 8
    assert torch.equal(pre.prepare(x), whole)
    assert torch.equal(torch.cat([pre.prepare(x[i:i + 1]) for i in range(0, 40, 13)]), whole[::13])


def test_clahe_of_a_large_split_stays_within_a_bounded_peak_memory():
    # 2,048 images in one kornia call would peak at ~3.8 GB; prepare()'s chunks keep it far lower. A fresh
    # process, so that the peak resident size is this call's.
    code = ("import resource, torch; "
            "from cnnsweep.transforms import Preprocess; "
            "x = torch.randint(0, 256, (2048, 3, 32, 32), dtype=torch.uint8); "
            "pre = Preprocess(source_size=(32, 32), source_channels=3, equalize='clahe', "
            "mean=(0.0,) * 3, std=(1.0,) * 3); "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; pre.prepare(x); "
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert int(done.stdout.split()[-1]) < 1500, done.stdout  # MB above the process's size before the call

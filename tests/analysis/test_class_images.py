"""Class images: on a CNN trained on real digits, every generated image is its class with high
probability (chance is 0.10); plumbing on an untrained model."""

from __future__ import annotations

import matplotlib.image
import torch

from cnnsweep.analysis.class_images import ClassImageSettings, generate_class_images, save_class_image_grid

# 5x chance. Measured here: every class >= 0.99 with the defaults (an honest margin, not a tuned edge).
MIN_PROBABILITY = 0.5


def test_every_class_image_is_far_above_chance(digits_model, tmp_path):
    loaded, _ = digits_model
    classes = list(range(len(loaded.class_names)))
    images, probs = generate_class_images(loaded.model, loaded.preprocess, classes, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (10, *loaded.preprocess.input_shape)
    assert (probs > MIN_PROBABILITY).all(), probs
    # the probability is the model's on the returned uint8 image, re-normalized
    with torch.no_grad():
        again = loaded.model(loaded.preprocess.normalize(images)).softmax(1).diagonal()
    torch.testing.assert_close(again, probs)
    path = save_class_image_grid(images, probs, classes, loaded.class_names, tmp_path / "classes.png")
    assert matplotlib.image.imread(path)[..., :3].std() > 0.05


def test_noise_alone_is_not_the_class(digits_model):
    """Control: with zero optimization steps the same noise is no better than a weak guess."""
    loaded, _ = digits_model
    _, probs = generate_class_images(loaded.model, loaded.preprocess, list(range(10)),
                                     settings=ClassImageSettings(steps=0), seed=0)
    assert (probs < MIN_PROBABILITY).sum() >= 5


def test_seeded_batched_and_leaves_the_model_alone(tiny_rgb):
    model, pre, _ = tiny_rgb
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = ClassImageSettings(steps=5, batch_size=2)  # 5 classes in batches of 2, 2 and 1
    a, pa = generate_class_images(model, pre, [0, 1, 2, 3, 4], settings=s, seed=3)
    b, pb = generate_class_images(model, pre, [0, 1, 2, 3, 4], settings=s, seed=3)
    assert torch.equal(a, b) and torch.equal(pa, pb) and a.shape == (5, 3, 16, 16)
    assert model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats untouched

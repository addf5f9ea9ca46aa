"""Augmentation throughput: cnnsweep's BatchAugment (whole batches, per-sample params) vs torchvision v2
transforms applied image by image in a Python loop (what a per-sample Dataset.__getitem__ does).

    .venv/bin/python benchmarks/augment_throughput.py [--data ../shared/data] [--device cpu]

BatchAugment runs over the whole GTSRB train split (34,889 x 3 x 32 x 32 uint8) in batches of 256;
torchvision runs on a 2,000-image sample (it is slow enough that the sample gives a stable rate).
Both use the same strengths: rotation 15 deg, translate 0.1, scale 0.1, brightness/contrast/saturation 0.3.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from cnnsweep.config import AugmentConfig
from cnnsweep.transforms import build_augment

STRENGTHS = dict(rotation=15.0, translate=0.1, scale=0.1, brightness=0.3, contrast=0.3, saturation=0.3)
GTSRB_TRAIN_SIZE = 34_889


def load_images(data: Path) -> tuple[torch.Tensor, str]:
    """GTSRB train images as uint8 N x 3 x 32 x 32; random pixels of the same shape if the data is absent."""
    path = data / "gtsrb" / "train.pickle"
    if path.is_file():
        from cnnsweep.data.safe_pickle import load_pickle  # restricted unpickler: numpy arrays only

        features = np.ascontiguousarray(load_pickle(path)["features"])
        return torch.from_numpy(features).permute(0, 3, 1, 2).contiguous(), f"GTSRB {path}"
    g = torch.Generator().manual_seed(0)
    shape = (GTSRB_TRAIN_SIZE, 3, 32, 32)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g), "random pixels (GTSRB not found)"


def time_batch_augment(images: torch.Tensor, batch_size: int, device: str) -> float:
    """images/s of BatchAugment over all images, uint8 in and out, already on the device."""
    augment = build_augment(AugmentConfig(**STRENGTHS))
    x = images.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    augment(x[:batch_size], gen)  # warm-up: first-call allocations and kernel selection
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        augment(x[i:i + batch_size], gen)
    sync()
    return len(x) / (time.perf_counter() - start)


def time_torchvision_per_image(images: torch.Tensor) -> float:
    """images/s of v2.RandomAffine + v2.ColorJitter called once per uint8 CHW image, CPU."""
    s = STRENGTHS
    transform = v2.Compose([
        v2.RandomAffine(degrees=s["rotation"], translate=(s["translate"],) * 2,
                        scale=(1 - s["scale"], 1 + s["scale"]), interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(brightness=s["brightness"], contrast=s["contrast"], saturation=s["saturation"]),
    ])
    transform(images[0])  # warm-up
    start = time.perf_counter()
    for img in images:
        transform(img)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=repo.parent / "shared" / "data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sample", type=int, default=2000, help="images for the per-image torchvision loop")
    args = parser.parse_args()

    images, source = load_images(args.data)
    print(f"data: {source}, {tuple(images.shape)} uint8; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, BatchAugment on {args.device}")
    batched = time_batch_augment(images, args.batch_size, args.device)
    print(f"BatchAugment ({len(images)} images, batches of {args.batch_size}): {batched:,.0f} images/s")
    sample = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:args.sample]]
    per_image = time_torchvision_per_image(sample)
    print(f"torchvision v2 per image ({len(sample)} images, Python loop, CPU): {per_image:,.0f} images/s")
    print(f"ratio: BatchAugment is {batched / per_image:.1f}x the per-image loop")


if __name__ == "__main__":
    main()

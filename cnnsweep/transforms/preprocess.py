"""`Preprocess`: the one deterministic preprocessing path shared by training, ONNX export and serving.

Two stages, so the dataset can stay uint8 on the training device:
- `prepare` (uint8 -> uint8): channels, resize, grayscale, histogram equalization. Run once per split.
- `normalize` (uint8 -> float32): /255 then per-channel (x - mean) / std. Run per batch, after augmentation.
`to_dict()` holds everything both stages need; it goes into checkpoints and the ONNX metadata, and
`from_dict` rebuilds an identical Preprocess in the server.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from cnnsweep.config import MAX_CLAHE_GRID, MAX_IMAGE_SIDE, DataConfig
from cnnsweep.transforms.color import EQUALIZE_MODES, equalize, match_channels, resize

FORMAT_VERSION = 1
# Pixel values per float chunk in prepare/fit (~64 MB as float32): bounds the YCbCr/CLAHE temporaries
# so a 35k-image split, or a 224 px one, is never converted to float all at once.
_CHUNK_ELEMENTS = 1 << 24
# kornia's CLAHE holds a float one-hot of every pixel over its 256 bins (~1.9 MB per 32x32 RGB image at its
# peak, measured), so a CLAHE chunk counts each value 256 times: a whole GTSRB split in one chunk took ~10 GB.
_CLAHE_VALUES_PER_VALUE = 256
_MIN_STD = 1e-6  # 0..1 units; a constant channel keeps std 1 instead of dividing by ~0


def _chunks(n: int, values_per_image: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(1, values_per_image))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def check_uint8_batch(x: Any, what: str = "images") -> torch.Tensor:
    """A clear error (not a traceback deep in torch) for anything but a uint8 N x C x H x W tensor, C in {1, 3}."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected uint8 N x C x H x W with C in {{1, 3}}, "
                         f"got {x.dtype} of shape {tuple(x.shape)}")
    return x


def normalize_tensor(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0..255) N x C x H x W -> float32 (x/255 - mean) / std; mean/std shaped 1 x C x 1 x 1."""
    return (x.to(torch.float32) / 255 - mean) / std


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of a uint8 batch, 0..1 units, summed chunk by chunk."""
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    total_sq = torch.zeros_like(total)
    for sl in _chunks(len(images), images[0].numel()):
        x = images[sl].to(torch.float64) / 255  # float64: sums of ~1e8 squares stay exact enough
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    n = len(images) * math.prod(images.shape[-2:])
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
    return tuple(mean.tolist()), tuple(std.tolist())


class Normalize(nn.Module):
    """`Preprocess.normalize` as a module, so export can put the /255 and mean/std inside the graph."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_tensor(x, self.mean, self.std)


@dataclass(frozen=True)
class Preprocess:
    source_size: tuple[int, int]  # (H, W) of the training images as stored (the native size), px
    source_channels: int  # channels of the stored training images, 1 or 3
    resize_to: int | None = None  # DataConfig.image_size: square side in px; None = keep source_size
    grayscale: bool = False
    equalize: str = "none"  # one of EQUALIZE_MODES
    clahe_clip: float = 2.0  # OpenCV units: histogram bins clipped at clip x (tile pixels / 256)
    clahe_grid: int = 8  # tiles per side
    standardize: bool = True  # DataConfig.normalize (renamed: `normalize` is the method)
    mean: tuple[float, ...] = (0.0,)  # per channel the model sees, 0..1 units; 0 when not standardizing
    std: tuple[float, ...] = (1.0,)  # per channel, 0..1 units; 1 when not standardizing
    _stats: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # device -> (mean, std)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_size", tuple(int(s) for s in self.source_size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        sides = (*self.source_size, self.resize_to or 1)
        if len(self.source_size) != 2 or not all(1 <= s <= MAX_IMAGE_SIDE for s in sides):
            raise ValueError(f"preprocess: image size {list(self.source_size)} / {self.resize_to} px is outside "
                             f"1..{MAX_IMAGE_SIDE} px")
        if not 1 <= self.clahe_grid <= MAX_CLAHE_GRID:
            raise ValueError(f"preprocess: clahe_grid must be 1..{MAX_CLAHE_GRID}, got {self.clahe_grid}")
        if self.source_channels not in (1, 3):
            raise ValueError(f"preprocess: source_channels must be 1 or 3, got {self.source_channels}")
        if self.equalize not in EQUALIZE_MODES:
            raise ValueError(f"preprocess: equalize must be one of {EQUALIZE_MODES}, got {self.equalize!r}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"preprocess: mean/std need {self.in_channels} values, "
                             f"got {len(self.mean)}/{len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError(f"preprocess: std must be > 0, got {self.std}")

    # ------------------------------------------------------------------ what the model sees

    @property
    def in_channels(self) -> int:
        return 1 if self.grayscale else self.source_channels

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) after prepare."""
        return (self.resize_to, self.resize_to) if self.resize_to else self.source_size

    @property
    def image_size(self) -> int:
        """Side the model sees, px (the height, for a non-square native size)."""
        return self.output_size[0]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.output_size)

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, cfg: DataConfig, train_images: torch.Tensor) -> "Preprocess":
        """Build from the data config and measure mean/std on the *prepared* training images."""
        return cls.fit_prepare(cfg, train_images)[0]

    @classmethod
    def fit_prepare(cls, cfg: DataConfig, train_images: torch.Tensor) -> tuple["Preprocess", torch.Tensor]:
        """fit() that also returns prepare(train_images), so the trainer does not run CLAHE twice
        (kornia's CLAHE costs ~2 ms per 32 px image on one CPU core)."""
        check_uint8_batch(train_images, "train images")
        if len(train_images) == 0:
            raise ValueError("train images: empty split, cannot measure mean/std")
        c = 1 if cfg.grayscale else train_images.shape[1]
        pre = cls(source_size=tuple(train_images.shape[-2:]), source_channels=train_images.shape[1],
                  resize_to=cfg.image_size, grayscale=cfg.grayscale, equalize=cfg.equalize,
                  clahe_clip=cfg.clahe_clip, clahe_grid=cfg.clahe_grid, standardize=cfg.normalize,
                  mean=(0.0,) * c, std=(1.0,) * c)
        prepared = pre.prepare(train_images)
        if cfg.mean is not None:  # fixed, e.g. a pretrained backbone's own: its features expect that scale
            if len(cfg.mean) not in (1, c):
                raise ValueError(f"data.mean/data.std: {len(cfg.mean)} values for {c}-channel images")
            pre = dataclasses.replace(pre, mean=tuple(cfg.mean) * (c // len(cfg.mean)),
                                      std=tuple(cfg.std) * (c // len(cfg.std)))
        elif cfg.normalize:
            mean, std = channel_stats(prepared)
            pre = dataclasses.replace(pre, mean=mean, std=std)
        return pre, prepared

    # ------------------------------------------------------------------ applying

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W (C in {1, 3}, any H x W) -> uint8 N x input_shape, on x's device."""
        check_uint8_batch(x)
        out = torch.empty((len(x), *self.input_shape), dtype=torch.uint8, device=x.device)
        values = 3 * max(math.prod(x.shape[-2:]), math.prod(self.output_size))
        values *= _CLAHE_VALUES_PER_VALUE if self.equalize == "clahe" else 1
        for sl in _chunks(len(x), values):
            out[sl] = self._prepare_chunk(x[sl])
        return out

    def _prepare_chunk(self, x: torch.Tensor) -> torch.Tensor:
        # Channels first: grayscale (or gray -> RGB for a color model) before resizing touches 1/3 the data.
        x = match_channels(x, self.in_channels)
        x = resize(x, self.output_size)
        return equalize(x, self.equalize, self.clahe_clip, self.clahe_grid)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> float32 (x/255 - mean) / std (mean 0, std 1 when standardize is off)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"normalize: expected N x {self.in_channels} x H x W, got {tuple(x.shape)}")
        return normalize_tensor(x, *self._stats_on(x.device))

    def _stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Cached per device: building them per batch would be a host->GPU copy every step.
        if device not in self._stats:
            module = self.normalize_module().to(device)
            self._stats[device] = (module.mean, module.std)
        return self._stats[device]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.prepare(x))

    def normalize_module(self) -> Normalize:
        return Normalize(self.mean, self.std)

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (str/int/float/bool/list): keys use the DataConfig names where there is one."""
        return {"version": FORMAT_VERSION, "source_size": list(self.source_size),
                "source_channels": self.source_channels, "image_size": self.resize_to,
                "grayscale": self.grayscale, "equalize": self.equalize, "clahe_clip": self.clahe_clip,
                "clahe_grid": self.clahe_grid, "normalize": self.standardize,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        expected = set(cls(source_size=(1, 1), source_channels=1).to_dict())
        if not isinstance(d, dict) or set(d) != expected:
            got = set(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"preprocess dict: expected keys {sorted(expected)}, got {got}")
        if d["version"] != FORMAT_VERSION:
            raise ValueError(f"preprocess dict: version {d['version']} is not supported ({FORMAT_VERSION})")
        return cls(source_size=tuple(d["source_size"]), source_channels=int(d["source_channels"]),
                   resize_to=None if d["image_size"] is None else int(d["image_size"]),
                   grayscale=bool(d["grayscale"]), equalize=str(d["equalize"]),
                   clahe_clip=float(d["clahe_clip"]), clahe_grid=int(d["clahe_grid"]),
                   standardize=bool(d["normalize"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

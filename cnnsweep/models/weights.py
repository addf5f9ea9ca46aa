"""Pretrained weights, offline only: a local file, or the local Hugging Face cache. Never the network.

A file may be a timm/HF `.safetensors`, a `.pth`/`.pt`/`.bin` state_dict (read with
`torch.load(weights_only=True)`, so it cannot run code), or a cnnsweep `checkpoint.pt` (its `model`
entry). The classifier is skipped when its shape differs (another number of classes) and keeps its
fresh initialisation; a first conv saved for 3 channels is adapted to 1 channel by timm's
`adapt_input_conv` (summing the RGB filters). Any other mismatch is an error, not a silent partial load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from cnnsweep.models.registry import ModelError

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes on the HF hub
_PREFIXES = ("module.", "_orig_mod.")  # added by DDP and torch.compile wrappers


@dataclass
class LoadedWeights:
    """What `load_weights` did, for the run log."""

    path: str
    num_loaded: int
    skipped: list[str] = field(default_factory=list)  # head tensors left at their fresh init
    adapted: list[str] = field(default_factory=list)  # input convs converted to in_channels


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat {name: tensor} dict on the CPU."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"model.weights: file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(p), device="cpu")
    elif p.suffix in TORCH_SUFFIXES:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)  # no code execution
        except Exception as err:  # noqa: BLE001 - unpickling errors have many types
            raise ModelError(f"model.weights: cannot read {p} as a weights-only torch file: {err}") from None
    else:
        raise ModelError(f"model.weights: {p} must end in .safetensors, {', '.join(TORCH_SUFFIXES)}")
    return _unwrap(sd, p)


def _unwrap(sd: object, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):  # training checkpoints (timm's, cnnsweep's) nest the weights
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"model.weights: {path} does not hold a state_dict of tensors")
    out = {}
    for name, tensor in sd.items():
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        out[name] = tensor
    return out


def module_name(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _first_conv(model: nn.Module) -> Optional[str]:
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _reconcile(model: nn.Module, sd: dict[str, torch.Tensor], report: LoadedWeights) -> dict:
    """Drop a differently shaped head, adapt the input conv; refuse any other shape mismatch."""
    from timm.models import adapt_input_conv

    own = model.state_dict()
    head = module_name(model, model.get_classifier()) + "."
    first = (_first_conv(model) or "") + ".weight"
    out = {}
    for name, tensor in sd.items():
        target = own.get(name)
        if target is None or target.shape == tensor.shape:
            out[name] = tensor
        elif name.startswith(head):
            report.skipped.append(name)
        elif name == first and tensor.shape[0] == target.shape[0] and tensor.shape[2:] == target.shape[2:]:
            out[name] = adapt_input_conv(target.shape[1], tensor)
            report.adapted.append(name)
        else:
            raise ModelError(f"model.weights: {report.path}: {name} has shape {tuple(tensor.shape)}, "
                             f"the model needs {tuple(target.shape)} (weights for another architecture?)")
    return out


def load_weights(model: nn.Module, path: str | Path) -> LoadedWeights:
    """Load a local weights file into `model` (see module doc). The model needs `get_classifier()`."""
    report = LoadedWeights(path=str(path), num_loaded=0)
    sd = _reconcile(model, load_state_dict_file(path), report)
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if k not in report.skipped]
    if missing or result.unexpected_keys:
        raise ModelError(f"model.weights: {path} does not match the model: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected "
                         f"(e.g. {result.unexpected_keys[:3]})")
    report.num_loaded = len(sd)
    return report


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (HF_HUB_CACHE / HF_HOME aware), read at call time."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def find_cached_weights(hf_hub_id: str, filename: Optional[str] = None) -> Optional[Path]:
    """A weights file for `hf_hub_id` already in the local HF cache, or None. Filesystem only."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = hf_hub_id.partition("@")
    for name in [filename] if filename else HF_FILENAMES:
        found = try_to_load_from_cache(repo_id, name, cache_dir=hf_cache_dir(),
                                       revision=revision or None)
        if isinstance(found, str):  # otherwise None or the "known missing" sentinel
            return Path(found)
    return None


def missing_weights_error(model: str, hf_hub_id: Optional[str]) -> ModelError:
    """The error for pretrained=true with nothing offline: say exactly where weights can go."""
    lines = [f"model.pretrained=true for {model}, but no pretrained weights were found offline "
             "(cnnsweep never downloads weights at run time). Either:",
             "  - set model.weights to a local file (.safetensors, .pth, .bin), e.g. "
             "--set model.weights=/path/to/model.safetensors, or"]
    if hf_hub_id:
        repo = hf_hub_id.partition("@")[0]
        lines.append(f"  - put the Hugging Face repo {repo} ({' or '.join(HF_FILENAMES)}) into the local "
                     f"cache {hf_cache_dir()}/models--{repo.replace('/', '--')} "
                     f"(`huggingface-cli download {repo}` on a machine with network, then copy the cache), or")
    lines.append("  - set model.pretrained=false to train from scratch.")
    return ModelError("\n".join(lines))

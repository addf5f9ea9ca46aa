"""Pretrained weights: a local file, the local Hugging Face cache, or (online) a download into that cache.

Where `pretrained: true` looks, in order (`resolve_pretrained`): `model.weights` (a local file); the
HF cache entry of timm's `pretrained_cfg["hf_hub_id"]` (HF_HUB_CACHE / HF_HOME, read at call time);
then, unless HF_HUB_OFFLINE=1, huggingface_hub's normal `hf_hub_download` into that same cache (what
`timm.create_model(..., pretrained=True)` does). Nothing found -> one error saying where to put the file.

A file may be a timm/HF `.safetensors`, a `.pth`/`.pt`/`.bin` state_dict (read with
`torch.load(weights_only=True)`, so it cannot run code), or a cnnsweep `checkpoint.pt` (its `model`
entry). The classifier is skipped when its shape differs (another number of classes) and keeps its
fresh initialisation; a first conv saved for 3 channels is adapted to 1 channel by timm's
`adapt_input_conv` (summing the RGB filters). Any other mismatch is an error, not a silent partial load.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from cnnsweep.models.registry import ModelError

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes on the HF hub
_PREFIXES = ("module.", "_orig_mod.")  # added by DDP and torch.compile wrappers
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spellings of a true environment flag


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
    """The Hugging Face hub cache, read at call time (huggingface_hub reads the variables at import):
    HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default (~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, read at call time (same truthy spellings as huggingface_hub)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().upper() in _TRUE


def download_weights(hf_hub_id: str, filename: Optional[str] = None) -> Path:
    """Online: huggingface_hub's download into the HF cache (safetensors first, as timm does)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, _, revision = hf_hub_id.partition("@")
    names = [filename] if filename else list(HF_FILENAMES)
    get = functools.partial(hf_hub_download, repo_id, revision=revision or None, cache_dir=hf_cache_dir())
    for name in names[:-1]:
        try:
            return Path(get(filename=name))
        except EntryNotFoundError:  # the repo has no file of this name: try the next one
            continue
    return Path(get(filename=names[-1]))


def hub_reachable(hf_hub_id: str, filename: Optional[str] = None, timeout_s: float = 5.0) -> Optional[str]:
    """None when the hub answers for `hf_hub_id`'s weights file (a HEAD request, nothing downloaded),
    else why not (one line). For checks before a sweep; loading itself just downloads."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    repo_id, _, revision = hf_hub_id.partition("@")
    problem = ""
    for name in [filename] if filename else HF_FILENAMES:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, name, revision=revision or None), timeout=timeout_s)
            return None
        except Exception as err:  # noqa: BLE001 - any failure means "cannot download it now"
            problem = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    return problem


def resolve_pretrained(model: str, hf_hub_id: Optional[str], filename: Optional[str] = None,
                       weights: Optional[str] = None) -> Path:
    """The weights file for `pretrained: true` (see module doc), or ModelError saying where to put it."""
    if weights:
        return Path(weights).expanduser()
    found = find_cached_weights(hf_hub_id, filename) if hf_hub_id else None
    if found is not None:
        return found
    if not hf_hub_id or hub_offline():
        raise missing_weights_error(model, hf_hub_id, offline=True)
    try:
        return download_weights(hf_hub_id, filename)
    except Exception as err:  # noqa: BLE001 - connection, auth, missing repo: all mean "not reachable"
        raise missing_weights_error(model, hf_hub_id, reason=f"{type(err).__name__}: {err}") from None


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


def missing_weights_error(model: str, hf_hub_id: Optional[str], *, offline: bool = False,
                          reason: str = "") -> ModelError:
    """The error for pretrained=true with no weights to be had: say exactly where weights can go."""
    why = ("HF_HUB_OFFLINE=1, so nothing is downloaded" if offline and hf_hub_id else
           f"timm names no Hugging Face repo for {model}" if not hf_hub_id else
           f"the download failed ({reason.splitlines()[0][:200] if reason else 'no reason given'})")
    lines = [f"model.pretrained=true for {model}, but its weights are not in the local cache and {why}. Either:",
             "  - set model.weights to a local file (.safetensors, .pth, .bin), e.g. "
             "--set model.weights=/path/to/model.safetensors, or"]
    if hf_hub_id:
        repo = hf_hub_id.partition("@")[0]
        lines.append(f"  - put the Hugging Face repo {repo} ({' or '.join(HF_FILENAMES)}) into the local "
                     f"cache {hf_cache_dir()}/models--{repo.replace('/', '--')} "
                     f"(`hf download {repo}` on a machine with network, then copy the cache; "
                     "or run once online without HF_HUB_OFFLINE), or")
    lines.append("  - set model.pretrained=false to train from scratch.")
    return ModelError("\n".join(lines))

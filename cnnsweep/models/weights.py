"""Pretrained weights: which file, and reading it; timm does the loading.

Where `pretrained: true` looks, in order (`resolve_pretrained`): `model.weights` (a local file); the
HF cache entry of timm's `pretrained_cfg["hf_hub_id"]` (HF_HUB_CACHE / HF_HOME, read at call time);
then, unless HF_HUB_OFFLINE=1, huggingface_hub's normal `hf_hub_download` into that same cache (what
`timm.create_model(..., pretrained=True)` does). Nothing found -> one error saying where to put the file.

A file may be a timm/HF `.safetensors`, a `.pth`/`.pt`/`.bin` state_dict, or a cnnsweep `checkpoint.pt`
(its `model` entry), read by timm's `load_state_dict` (safetensors, or `torch.load(weights_only=True)`,
so it cannot run code; DDP / torch.compile prefixes removed). timm's `load_pretrained` then drops a
classifier of another size (it keeps its fresh initialisation) and adapts a 3-channel input conv to 1
channel. What is left here: clear errors, and refusing a partial load (timm loads non-strictly once
the head is dropped, so weights for another architecture would otherwise load nothing, silently).
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
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spellings of a true environment flag


@dataclass
class LoadedWeights:
    """What was loaded, for the run log."""

    path: str
    num_loaded: int
    skipped: list[str] = field(default_factory=list)  # head tensors left at their fresh init
    adapted: list[str] = field(default_factory=list)  # input convs converted to in_channels


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat {name: tensor} dict on the CPU (timm's reader, weights only)."""
    from timm.models import load_state_dict

    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"model.weights: file not found: {p}")
    if p.suffix != ".safetensors" and p.suffix not in TORCH_SUFFIXES:
        raise ModelError(f"model.weights: {p} must end in .safetensors, {', '.join(TORCH_SUFFIXES)}")
    try:
        sd = load_state_dict(str(p), use_ema=False, weights_only=True)  # no code execution
    except Exception as err:  # noqa: BLE001 - unpickling / safetensors errors have many types
        raise ModelError(f"model.weights: cannot read {p} as safetensors or a weights-only torch file: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"model.weights: {p} does not hold a state_dict of tensors")
    return sd


def source_cfg(sd: dict[str, torch.Tensor], classifier: str, first_conv: Optional[str],
               image_size: tuple[int, ...] = (224, 224)) -> dict:
    """The `pretrained_cfg` entries with which timm's `load_pretrained` describes this file: its number
    of classes (a head of another size is dropped) and of input channels (the input conv is adapted;
    read off a plain, ungrouped stem conv). `image_size` is only recorded, never used to load."""
    head, stem = sd.get(f"{classifier}.weight"), sd.get(f"{first_conv}.weight")
    channels = stem.shape[1] if stem is not None and stem.ndim == 4 else 3
    return {"classifier": classifier, "first_conv": first_conv,
            "num_classes": -1 if head is None else head.shape[0], "input_size": (channels, *image_size)}


def check_complete(model: nn.Module, shapes: dict[str, torch.Size], cfg: dict, path: str | Path) -> LoadedWeights:
    """After timm's load (non-strict once it drops the head): every model tensor came from the file,
    bar a dropped head, and the file had nothing the model lacks; else ModelError (another architecture)."""
    own = model.state_dict()
    head = [k for k in own if k.startswith(cfg["classifier"] + ".")]
    skipped = head if cfg["num_classes"] != own[f"{cfg['classifier']}.weight"].shape[0] else []
    missing = sorted(set(own) - set(shapes) - set(skipped))
    unexpected = sorted(set(shapes) - set(own))
    if missing or unexpected:
        raise ModelError(f"model.weights: {path} does not match the model: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    stem = f"{cfg['first_conv']}.weight"
    adapted = [stem] if stem in shapes and shapes[stem] != own[stem].shape else []
    return LoadedWeights(str(path), len(shapes) - len(skipped), skipped, adapted)


def mismatch_error(path: str | Path, err: Exception) -> ModelError:
    """timm's load raised (a tensor of another shape, an inconsistent stem): say which file."""
    detail = " ".join(line.strip() for line in str(err).splitlines() if line.strip())[:400]
    return ModelError(f"model.weights: {path} does not match the model (weights for another "
                      f"architecture?): {detail}")


def _first_conv(model: nn.Module) -> Optional[str]:
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def load_weights(model: nn.Module, path: str | Path) -> LoadedWeights:
    """Load a local weights file into any model with `get_classifier()` (the cnn family; timm models
    load at creation, timm_models.py), through timm's `load_pretrained` (see module doc)."""
    from timm.models import load_pretrained

    sd = load_state_dict_file(path)
    shapes = {k: v.shape for k, v in sd.items()}
    classifier = next(n for n, m in model.named_modules() if m is model.get_classifier())
    first = _first_conv(model)
    cfg = source_cfg(sd, classifier, first)
    own = model.state_dict()
    in_chans = own[f"{first}.weight"].shape[1] if first else 3
    report = check_complete(model, shapes, cfg, path)  # keys are known before loading: refuse first
    try:
        load_pretrained(model, dict(cfg, state_dict=sd), num_classes=own[f"{classifier}.weight"].shape[0],
                        in_chans=in_chans)
    except RuntimeError as err:
        raise mismatch_error(path, err) from None
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

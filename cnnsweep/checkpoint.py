"""Checkpoints: a directory holding `checkpoint.pt` (plain containers only) and `config.yaml`.

Saving is atomic per file (`cnnsweep.atomic`: temp file, fsync, `os.replace`), so a crash mid-write
leaves the previous file intact; `save_checkpoint_dir` swaps a whole checkpoint folder in at once. Loading uses `torch.load(weights_only=True)`: a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from cnnsweep.atomic import atomic_dir, atomic_write, atomic_write_text

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not a cnnsweep checkpoint."""


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write `state` (config, model, optimizer, scheduler, scaler, epoch, preprocess, ...) to `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / CHECKPOINT_FILE, lambda f: torch.save(state, f))
    if "config" in state:
        atomic_write_text(d / CONFIG_FILE, yaml.safe_dump(state["config"], sort_keys=False))
    if "metrics" in state:
        atomic_write_text(d / METRICS_FILE, json.dumps(state["metrics"], indent=2, sort_keys=True))
    return d


def save_checkpoint_dir(state: dict[str, Any], directory: str | Path) -> Path:
    """`save_checkpoint` into a fresh folder that then replaces `directory` whole: a kill leaves the
    old checkpoint folder or the new one, never a new checkpoint.pt beside an old config.yaml."""
    with atomic_dir(directory) as tmp:
        save_checkpoint(state, tmp)
    return Path(directory)


def find_checkpoint_file(path: str | Path) -> Path:
    """Accept a checkpoint file, a checkpoint directory, or a run directory with checkpoints inside."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / CHECKPOINT_FILE).is_file():
        return p / CHECKPOINT_FILE
    if p.is_dir():
        # hidden folders are unfinished writes (`.epoch_0003.*.partial` left by a kill): never pick one
        found = sorted((f for f in p.rglob(CHECKPOINT_FILE)
                        if not any(part.startswith(".") for part in f.relative_to(p).parts)),
                       key=lambda f: f.stat().st_mtime)
        if found:
            return found[-1]  # newest
        raise CheckpointError(f"{p}: no {CHECKPOINT_FILE} found in this folder")
    raise CheckpointError(f"{p}: no such checkpoint file or folder")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's state dict. Refuses anything that would need code to unpickle."""
    f = find_checkpoint_file(path)
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError for code-carrying pickles, RuntimeError for corrupt zips
        raise CheckpointError(f"{f}: cannot be loaded safely ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{f}: not a cnnsweep checkpoint (no model/config entries)")
    return state


@dataclass
class LoadedModel:
    model: torch.nn.Module  # in eval mode
    preprocess: Any  # cnnsweep.transforms.Preprocess
    class_names: list[str]
    config: Any  # cnnsweep.config.RunConfig
    metrics: dict[str, float]
    path: Path


def class_name_list(value: Any) -> list[str]:
    """A class-name list read from a file (checkpoint or ONNX metadata), held to a dataset's rules:
    1..MAX_NUM_CLASSES names (ints are read as their text) of bounded length. It sizes the model's output
    layer and every prediction, so it is checked before either exists. DataError is a ValueError."""
    from cnnsweep.data.dataset import checked_class_names

    if not isinstance(value, list) or not all(isinstance(n, (str, int)) for n in value):
        raise ValueError(f"class_names must be a list of strings, got {type(value).__name__}")
    if not value:
        raise ValueError("0 classes: a model needs at least one class name")
    return checked_class_names([str(n) for n in value])


def _checked_parts(state: dict[str, Any], f: Path) -> tuple[Any, Any, list[str], dict[str, int]]:
    """(config, preprocess, class names, model_args) of a loaded state, each checked before any of them
    sizes an allocation: model_args must be the sizes the class list and the preprocessing imply
    (what training writes), which are bounded (MAX_NUM_CLASSES, MAX_IMAGE_SIDE)."""
    from cnnsweep.config import from_saved_config
    from cnnsweep.transforms import Preprocess

    try:
        cfg = from_saved_config(state["config"])  # written by an older cnnsweep too
        preprocess = Preprocess.from_dict(state.get("preprocess"))
        names = class_name_list(state.get("class_names"))
    except (KeyError, TypeError, ValueError) as err:  # ConfigError is a ValueError
        raise CheckpointError(f"{f}: broken checkpoint ({' '.join(str(err).split())})") from None
    args = state.get("model_args")
    if not isinstance(args, dict):
        raise CheckpointError(f"{f}: broken checkpoint (no model_args entry)")
    expected = {"num_classes": (len(names), "its class list"),
                "in_channels": (preprocess.in_channels, "its preprocessing's channels"),
                "image_size": (preprocess.image_size, "its preprocessing's image size")}
    for key, (want, what) in expected.items():
        if type(args.get(key)) is not int or args[key] != want:
            raise CheckpointError(f"{f}: broken checkpoint (model_args {key} {args.get(key)!r} does not "
                                  f"match {what}, {want})")
    return cfg, preprocess, names, {k: want for k, (want, _) in expected.items()}


def load_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the trained model (and its preprocessing) from a checkpoint, ready for inference.
    CheckpointError (one line) for a state whose parts disagree or whose sizes are out of bounds."""
    from cnnsweep.models import ModelError, build_model

    f = find_checkpoint_file(path)
    state = load_checkpoint(f, map_location=device)
    cfg, preprocess, names, args = _checked_parts(state, f)
    model_cfg = cfg.model.model_copy(update={"pretrained": False, "weights": None})  # weights: the checkpoint
    try:
        model = build_model(model_cfg, args["num_classes"], args["in_channels"], args["image_size"])
    except ModelError as err:  # e.g. a config whose widths need more parameters than any cnnsweep model
        raise CheckpointError(f"{f}: its config does not describe a usable model ({err})") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as err:  # size mismatch / not a state dict
        first = str(err).strip().splitlines()[-1].strip() if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{f}: the weights do not match the model its config describes ({first})") from None
    model.to(device).eval()
    metrics = state.get("metrics")
    return LoadedModel(model, preprocess, names, cfg, dict(metrics) if isinstance(metrics, dict) else {}, f)

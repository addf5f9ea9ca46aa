"""Checkpoints: a directory holding `checkpoint.pt` (plain containers only) and `config.yaml`.

Saving is atomic per file (`cnnsweep.atomic`: temp file, fsync, `os.replace`), so a crash mid-write
leaves the previous file intact; `save_checkpoint_dir` swaps a whole checkpoint folder in at once. Loading uses `torch.load(weights_only=True)`: a checkpoint from someone else cannot run code.

What `checkpoint.pt` holds is `CheckpointState` (format version `FORMAT_VERSION`): every save and load
goes through it, so an unknown entry, a wrong type or another version is one CheckpointError line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cnnsweep.atomic import atomic_dir, atomic_write, atomic_write_text

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"

# 1: the unversioned layout (a "format": "cnnsweep/1" entry, or none at all); 2: the same entries, with
# `version`. Version 1 files are still read: the entries did not change, so reading one costs nothing.
FORMAT_VERSION = 2
_V1_FORMAT = "cnnsweep/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not a cnnsweep checkpoint."""


def _a_mapping(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping, got {type(value).__name__}")
    return value


# A torch state dict, kept as the very object torch.load returned: validating it as dict[str, Any]
# would copy an OrderedDict into a plain dict and drop its `_metadata` (module versions load_state_dict reads).
StateDict = Annotated[Any, AfterValidator(_a_mapping)]


class ModelArgs(BaseModel):
    """What `build_model` needs besides the config; checked against the class list and the preprocessing
    before anything is built (`_checked_parts`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    num_classes: int
    in_channels: int
    image_size: int


class CheckpointState(BaseModel):
    """`checkpoint.pt`: everything to resume training or rebuild the model for inference and export.
    Strict: the file may come from someone else, so nothing is coerced (a bool is no epoch)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = FORMAT_VERSION
    config: dict[str, Any]  # config_to_dict(RunConfig); from_saved_config validates it on use
    model: StateDict  # the weights to use: the moving average when train.ema_decay is set
    training_model: Optional[StateDict] = None  # with train.ema_decay, the optimizer's own weights (to resume)
    optimizer: Optional[StateDict] = None
    scheduler: Optional[StateDict] = None
    scaler: Optional[StateDict] = None
    epoch: Optional[int] = Field(None, ge=0)  # 0-based, the last finished epoch
    preprocess: Optional[dict[str, Any]] = None  # Preprocess.to_dict(); Preprocess.from_dict checks it
    class_names: Optional[list[str | int]] = None  # ints read as their text (class_name_list)
    model_args: Optional[ModelArgs] = None
    micro_batch_size: Optional[int] = Field(None, ge=1)  # after any OOM halving: a resume starts there
    metrics: Optional[dict[str, Any]] = None  # the epoch's report; keys are cnnsweep.metrics constants
    history: list[dict[str, Any]] = []  # every epoch's report so far

    def to_file_dict(self) -> dict[str, Any]:
        """What torch.save writes: plain containers, the state dicts untouched; unset entries left out."""
        out = {name: getattr(self, name) for name in type(self).model_fields}
        if self.model_args is not None:
            out["model_args"] = self.model_args.model_dump()
        return {k: v for k, v in out.items() if v is not None}


def _upgraded(raw: dict[str, Any], f: Path) -> dict[str, Any]:
    """`raw` as the current version: version 1 (no `version`) has the same entries plus `format`."""
    if "version" in raw:
        return raw
    if raw.get("format", _V1_FORMAT) != _V1_FORMAT:
        raise CheckpointError(f"{f}: unknown checkpoint format {str(raw['format'])[:40]!r}; this cnnsweep "
                              f"reads format version {FORMAT_VERSION} and the unversioned one before it")
    return {k: v for k, v in raw.items() if k != "format"} | {"version": FORMAT_VERSION}


def parse_checkpoint_state(raw: Any, f: str | Path) -> CheckpointState:
    """A loaded (or about to be saved) dict as CheckpointState; CheckpointError (one line naming `f`)
    for another format version or a bad shape."""
    if isinstance(raw, CheckpointState):
        return raw
    if not isinstance(raw, dict):
        raise CheckpointError(f"{f}: not a cnnsweep checkpoint (a {type(raw).__name__}, not a dict)")
    raw = _upgraded(raw, Path(f))
    version = raw["version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(f"{f}: checkpoint format version {repr(version)[:20]}, but this cnnsweep reads "
                              f"version {FORMAT_VERSION}: train it again with this cnnsweep (or load it with "
                              "the cnnsweep that wrote it)")
    from cnnsweep.config import validation_error_line

    try:
        return CheckpointState.model_validate(raw)
    except ValidationError as err:
        raise CheckpointError(f"{f}: not a cnnsweep checkpoint ({validation_error_line(err)})") from None


def save_checkpoint(state: CheckpointState | dict[str, Any], directory: str | Path) -> Path:
    """Write `state` (checked against CheckpointState) to `directory`, with `config.yaml` and
    `metrics.json` beside it for people and tools that do not read torch files."""
    d = Path(directory)
    state = parse_checkpoint_state(state, d / CHECKPOINT_FILE)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / CHECKPOINT_FILE, lambda f: torch.save(state.to_file_dict(), f))
    atomic_write_text(d / CONFIG_FILE, yaml.safe_dump(state.config, sort_keys=False))
    if state.metrics is not None:
        atomic_write_text(d / METRICS_FILE, json.dumps(state.metrics, indent=2, sort_keys=True))
    return d


def save_checkpoint_dir(state: CheckpointState | dict[str, Any], directory: str | Path) -> Path:
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> CheckpointState:
    """The checkpoint's state. Refuses anything that would need code to unpickle, another format
    version, and any entry CheckpointState does not know."""
    f = find_checkpoint_file(path)
    try:
        raw = torch.load(f, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError for code-carrying pickles, RuntimeError for corrupt zips
        raise CheckpointError(f"{f}: cannot be loaded safely ({type(err).__name__}: {err})") from None
    return parse_checkpoint_state(raw, f)


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


def _checked_parts(state: CheckpointState, f: Path) -> tuple[Any, Any, list[str], dict[str, int]]:
    """(config, preprocess, class names, model_args) of a loaded state, each checked before any of them
    sizes an allocation: model_args must be the sizes the class list and the preprocessing imply
    (what training writes), which are bounded (MAX_NUM_CLASSES, MAX_IMAGE_SIDE)."""
    from cnnsweep.config import from_saved_config
    from cnnsweep.transforms import Preprocess

    try:
        cfg = from_saved_config(state.config)  # written by an older cnnsweep too
        preprocess = Preprocess.from_dict(state.preprocess)
        names = class_name_list(state.class_names)
    except (KeyError, TypeError, ValueError) as err:  # ConfigError is a ValueError
        raise CheckpointError(f"{f}: broken checkpoint ({' '.join(str(err).split())})") from None
    args = state.model_args
    if args is None:
        raise CheckpointError(f"{f}: broken checkpoint (no model_args entry)")
    expected = {"num_classes": (len(names), "its class list"),
                "in_channels": (preprocess.in_channels, "its preprocessing's channels"),
                "image_size": (preprocess.image_size, "its preprocessing's image size")}
    for key, (want, what) in expected.items():
        if getattr(args, key) != want:  # ModelArgs holds ints only (strict)
            raise CheckpointError(f"{f}: broken checkpoint (model_args {key} {getattr(args, key)!r} does not "
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
        model.load_state_dict(state.model)
    except (RuntimeError, TypeError, AttributeError) as err:  # size mismatch / not a state dict
        first = str(err).strip().splitlines()[-1].strip() if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{f}: the weights do not match the model its config describes ({first})") from None
    model.to(device).eval()
    return LoadedModel(model, preprocess, names, cfg, dict(state.metrics or {}), f)

"""One validated config tree for a run (and, with `search`, for a sweep).

Parsed once with pydantic (`extra="forbid"`), so a typo is an error that names its dotted path
instead of a silently ignored key. Each library function receives only its own section
(`build_optimizer(params, cfg.optim, lr=cfg.train.lr)`). Pure Python + pydantic + yaml: no torch, no ray.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnsweep.registry import BALANCE_METHODS, DATASETS, MODELS, POOLINGS, Registry


class ConfigError(ValueError):
    """A config problem, already phrased for a person: `train.lr: must be > 0`."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _registered(registry: Registry) -> Any:
    """A field validator: the value must be a name in `registry` (its error lists the choices)."""

    def check(cls: Any, v: str) -> str:
        return registry.check(v)  # RegistryError is a ValueError: pydantic reports it at the field's path

    return classmethod(check)


class DataConfig(Section):
    """Where the images come from and the deterministic preprocessing applied to them."""

    name: str = "digits"  # a registered dataset format (cnnsweep.registry.DATASETS)
    root: Optional[str] = None  # dataset folder; None only for the embedded digits
    download: bool = False  # only `gtsrb` (torchvision) can download, and only when asked
    val_fraction: float = Field(0.15, gt=0, lt=1)  # held out (stratified) when there is no valid split
    max_train_samples: Optional[int] = Field(None, gt=0)  # stratified subset, for quick runs
    max_val_samples: Optional[int] = Field(None, gt=0)
    cache_dir: Optional[str] = None  # decoded .npz cache for image folders; None = <root>/.cnnsweep_cache
    # preprocessing: identical in training, export and serving
    image_size: Optional[int] = Field(None, gt=0)  # square side in px after resize; None = native
    grayscale: bool = False
    equalize: Literal["none", "global", "clahe"] = "none"  # histogram equalization
    clahe_clip: float = Field(2.0, gt=0)  # CLAHE clip limit (OpenCV units)
    clahe_grid: int = Field(8, gt=0)  # CLAHE tiles per side
    normalize: bool = True  # per-channel mean/std measured on the training split
    # class balancing
    balance: str = "none"  # a registered method (cnnsweep.registry.BALANCE_METHODS; see data/balance.py)

    _known_name = field_validator("name")(_registered(DATASETS))
    _known_balance = field_validator("balance")(_registered(BALANCE_METHODS))


class AugmentConfig(Section):
    """Per-sample random augmentation, run on whole batches on the training device."""

    rotation: float = Field(0.0, ge=0, le=180)  # max |angle|, degrees
    translate: float = Field(0.0, ge=0, le=0.5)  # max shift, fraction of the side
    scale: float = Field(0.0, ge=0, lt=1)  # zoom in [1-scale, 1+scale]
    brightness: float = Field(0.0, ge=0, le=1)  # factor in [1-b, 1+b]
    contrast: float = Field(0.0, ge=0, le=1)
    saturation: float = Field(0.0, ge=0, le=1)
    hflip: bool = False  # off by default: a mirrored "keep left" sign means "keep right"

    @property
    def enabled(self) -> bool:
        return any([self.rotation, self.translate, self.scale, self.brightness,
                    self.contrast, self.saturation, self.hflip])


class ModelConfig(Section):
    """`cnn` (the configurable custom family) or `timm/<name>` (transfer learning)."""

    name: str = "cnn"
    # custom CNN family
    num_stages: int = Field(3, ge=1, le=6)
    width: int = Field(32, ge=1)  # channels of stage 1; doubled each stage
    convs_per_stage: int = Field(2, ge=1, le=6)
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)  # before the classifier (and 2d after each stage at dropout/2)
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"] = "relu"
    pooling: str = "max"  # a registered pooling (cnnsweep.registry.POOLINGS: max, avg, strided, none)
    head: Literal["gap", "flatten"] = "gap"
    head_hidden: int = Field(0, ge=0)  # units of a hidden FC layer (+ act + dropout) in the head; 0 = none
    stage_dropout: Optional[float] = Field(None, ge=0, lt=1)  # Dropout2d after each stage; None = dropout / 2
    # timm transfer learning
    pretrained: bool = False
    weights: Optional[str] = None  # local .safetensors/.pth; else the local Hugging Face cache
    freeze: Literal["none", "backbone", "stages"] = "none"  # backbone = all but the head
    freeze_stages: int = Field(0, ge=0)  # with freeze=stages: the first N stages
    # two-phase fine-tuning: the backbone is frozen for the first N epochs (only the head learns, at
    # train.lr), then unfrozen and trained at train.lr x optim.backbone_lr_scale (engine/fit.py)
    freeze_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _warmup_needs_a_trainable_backbone(self) -> "ModelConfig":
        if self.freeze_epochs and self.freeze == "backbone":
            raise ValueError("model.freeze_epochs unfreezes the backbone after N epochs, but model.freeze="
                             "backbone keeps it frozen throughout: use one of the two")
        return self

    _known_name = field_validator("name")(_registered(MODELS))  # `cnn`, `timm/<name>`, or any registered
    _known_pooling = field_validator("pooling")(_registered(POOLINGS))


class OptimConfig(Section):
    name: Literal["sgd", "nesterov", "adam", "adamw", "rmsprop"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    backbone_lr_scale: float = Field(0.1, gt=0, le=1)  # pretrained backbone lr = lr x this


class SchedConfig(Section):
    name: Literal["none", "cosine", "onecycle", "step"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up before cosine, epochs
    step_epochs: int = Field(10, gt=0)  # step: decay every N epochs
    gamma: float = Field(0.1, gt=0, le=1)  # step: lr multiplier per decay


class TrainConfig(Section):
    epochs: int = Field(10, gt=0)
    lr: float = Field(1e-3, gt=0)  # peak learning rate for the effective batch
    batch_size: int = Field(128, gt=0)  # effective batch, summed over workers and micro-steps
    micro_batch_size: Optional[int] = Field(None, gt=0)  # per worker per step; None = batch_size / workers
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: fp16+GradScaler on CUDA, bf16 on CPU
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: Optional[float] = Field(None, gt=0)  # max global L2 norm
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower)
    eval_batch_size: int = Field(512, gt=0)
    checkpoint_every: int = Field(1, gt=0)  # epochs
    num_to_keep: Optional[int] = Field(2, gt=0)  # checkpoints kept per run (best by val/acc)


class ScalingConfig(Section):
    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, gt=0, le=1)  # < 1 packs several workers/trials onto one GPU
    # Worker failures (a crash, an OOM kill, a raised error) survived by restarting the workers from the
    # last checkpoint; -1 = no limit, 0 = fail at once. 2 rides out a transient fault or two while a
    # run that fails every time (a bad config) stops after 3 tries. Node preemptions are Ray's to count
    # apart (FailureConfig.max_preemption_failures: unlimited by default).
    max_failures: int = Field(2, ge=-1)


class RunConfig(Section):
    """A run: everything one candidate needs."""

    name: str = "run"
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    sched: SchedConfig = SchedConfig()
    train: TrainConfig = TrainConfig()
    scaling: ScalingConfig = ScalingConfig()
    # A sweep file's `search` section (validated by cnnsweep.sweep.space); `train` ignores it.
    search: Optional[dict[str, Any]] = None

    @model_validator(mode="after")
    def _batch_divides(self) -> "RunConfig":
        t, n = self.train, self.scaling.num_workers
        if t.batch_size % n:
            raise ValueError(f"train.batch_size ({t.batch_size}) must be divisible by scaling.num_workers ({n})")
        per_worker = t.batch_size // n
        if t.micro_batch_size is not None and per_worker % t.micro_batch_size:
            raise ValueError(f"train.micro_batch_size ({t.micro_batch_size}) must divide the per-worker "
                             f"batch ({per_worker} = train.batch_size / scaling.num_workers)")
        return self

    @property
    def micro_batch(self) -> int:
        return self.train.micro_batch_size or self.train.batch_size // self.scaling.num_workers

    @property
    def accum_steps(self) -> int:
        """Micro-steps per optimizer step on each worker."""
        return self.train.batch_size // self.scaling.num_workers // self.micro_batch


# ---------------------------------------------------------------------------- errors


def format_validation_error(err: ValidationError, prefix: str = "", *, noise: tuple[str, ...] = (),
                            root: str = "") -> str:
    """pydantic's errors as `dotted.path: message` lines, one per problem: the one formatter behind
    ConfigError, the sweep's `search.*` errors and the server's settings errors.

    `prefix` is the section the model was validated as (`search`); `noise` are location parts of
    union/tagged types that mean nothing to a person (`Distribution`); `root` labels a problem of the
    whole object (no path)."""
    lines = []
    for e in err.errors():
        parts = [str(p) for p in e["loc"] if not str(p).startswith("function-") and str(p) not in noise]
        path = ".".join(([prefix] if prefix else []) + parts)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"].startswith("greater_than") or e["type"].startswith("less_than"):
            msg = msg.replace("Input should be", "must be")
        msg = msg.removeprefix("Value error, ")
        label = path or root
        lines.append(f"{label}: {msg}" if label else msg)
    return "\n".join(dict.fromkeys(lines))  # a union reports one problem once per member


def validate_config(raw: dict[str, Any]) -> RunConfig:
    """dict -> RunConfig, or ConfigError listing every problem by dotted path."""
    if not isinstance(raw, dict):
        raise ConfigError("config: must be a mapping of sections (data, model, train, ...)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


# ---------------------------------------------------------------------------- overrides


def parse_override(item: str) -> tuple[str, Any]:
    """`train.lr=3e-4` -> ("train.lr", 0.0003). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set raw['a']['b']['c'] for key 'a.b.c', creating sections as needed."""
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """A deep copy of raw with `--set` style overrides applied (not yet validated)."""
    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        set_dotted(out, key, value)
    return out


# ---------------------------------------------------------------------------- I/O


MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: real configs are a few KiB; bounds parse time and memory
MAX_CONFIG_DEPTH = 32  # nesting levels; a sweep's search space needs about 6
MAX_CONFIG_NODES = 100_000  # values after expanding YAML aliases (a "billion laughs" file expands 10^9)


def _read_config_text(p: Path) -> str:
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config file ({err.strerror or err})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: config file larger than {MAX_CONFIG_BYTES // 1024} KiB; is this the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not a text (UTF-8) file: byte {err.start} cannot be decoded") from None


def _check_size(raw: Any, p: Path) -> None:
    """Refuse deep nesting and alias bombs, counting shared (aliased) values once per reference."""
    stack, count = [(raw, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_CONFIG_DEPTH or count > MAX_CONFIG_NODES:
            what = f"nested deeper than {MAX_CONFIG_DEPTH} levels" if depth > MAX_CONFIG_DEPTH \
                else f"more than {MAX_CONFIG_NODES:,} values (after expanding aliases)"
            raise ConfigError(f"{p}: config is {what}")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((c, depth + 1) for c in children)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; every problem (missing, unreadable, binary, too large, too deep, bad YAML)
    is one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    text = _read_config_text(p)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    except RecursionError:
        raise ConfigError(f"{p}: config is nested too deeply to parse") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: must be a mapping of sections (data, model, train, ...)")
    _check_size(raw, p)
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run or sweep YAML, apply `--set` overrides, validate once."""
    return validate_config(apply_overrides(load_yaml(path), overrides or []))


def config_to_dict(cfg: RunConfig, *, with_search: bool = False) -> dict[str, Any]:
    d = cfg.model_dump(mode="json")
    if not with_search:
        d.pop("search", None)
    return d


MAX_DIFFS_SHOWN = 8  # differences listed in a refused --resume; the rest are counted


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def diff_configs(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Where two config dicts differ, as `dotted.path: old -> new` lines, in the files' key order."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{prefix or 'config'}: {_short(old)} -> {_short(new)}"]
    lines = []
    for key in dict.fromkeys([*old, *new]):
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in old or key not in new:
            lines.append(f"{path}: {_short(old[key]) if key in old else '(absent)'} -> "
                         f"{_short(new[key]) if key in new else '(absent)'}")
        else:
            lines += diff_configs(old[key], new[key], path)
    return lines


def check_resumed_config(cfg: RunConfig, saved: str | Path) -> None:
    """--resume: refuse a config that differs from the one the output was started with (`saved`, as
    `save_config` wrote it), naming each difference by dotted path. Resuming a run with another model,
    data or search space would mix two experiments in one folder (and one set of checkpoints)."""
    raw = load_yaml(saved)
    try:
        old = config_to_dict(validate_config(raw), with_search=True)  # fills in defaults added since
    except ConfigError:
        old = raw  # saved by a version whose schema differs: compare what is written
    diffs = diff_configs(old, config_to_dict(cfg, with_search=True))
    if diffs:
        more = f"; and {len(diffs) - MAX_DIFFS_SHOWN} more" if len(diffs) > MAX_DIFFS_SHOWN else ""
        raise ConfigError(f"--resume: the config differs from the one {Path(saved).parent} was started with "
                          f"({Path(saved).name}): {'; '.join(diffs[:MAX_DIFFS_SHOWN])}{more}. Resume with the "
                          "same config and --set values, or start afresh in another --output")


def save_config(cfg: RunConfig, path: str | Path) -> Path:
    """Write the resolved config (every default filled in) as YAML next to a result."""
    from cnnsweep.atomic import atomic_write_text  # a kill mid-write leaves the old file or the new one

    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg, with_search=True), sort_keys=False))


def config_to_json(cfg: RunConfig) -> str:
    return json.dumps(config_to_dict(cfg), sort_keys=True)


def config_from_json(text: str) -> RunConfig:
    return validate_config(json.loads(text))

"""One validated config tree for a run (and, with `search`, for a sweep).

Parsed once with pydantic (`extra="forbid"`), so a typo is an error that names its dotted path
instead of a silently ignored key. Each library function receives only its own section
(`build_optimizer(params, cfg.optim, lr=cfg.train.lr)`). Pure Python + pydantic + yaml: no torch, no ray.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from cnnsweep.registry import BALANCE_METHODS, DATASETS, POOLINGS, Registry, match_name


class ConfigError(ValueError):
    """A config problem, already phrased for a person: `train.lr: must be > 0`."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _registered(registry: Registry) -> Any:
    """A field validator: the value must be a name in `registry` (its error lists the choices)."""

    def check(cls: Any, v: str) -> str:
        return registry.check(v)  # RegistryError is a ValueError: pydantic reports it at the field's path

    return classmethod(check)

# Bounds on sizes that allocate (a config, checkpoint or .onnx file carries them, and every preprocessing
# call resizes to them): 4096 px is the decoded-image limit of `predict` too; 64 CLAHE tiles per side is
# 8x OpenCV's default (kornia keeps a 256-bin histogram per tile).
MAX_IMAGE_SIDE = 4096
MAX_CLAHE_GRID = 64


class DataConfig(Section):
    """Where the images come from and the deterministic preprocessing applied to them."""

    name: str = Field("digits", description="dataset format, a registered name: "
                      + ", ".join(DATASETS.names()))
    root: Optional[str] = Field(None, description="dataset folder; null only for the embedded digits")
    download: bool = Field(False, description="download the dataset if missing (only gtsrb, via torchvision)")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="fraction of the training images held out "
                                "(stratified) when the dataset has no validation split")
    max_train_samples: Optional[int] = Field(None, gt=0, description="stratified subset of the training "
                                             "split, images (for quick runs); null = all")
    max_val_samples: Optional[int] = Field(None, gt=0, description="stratified subset of the validation "
                                           "split, images; null = all")
    cache_dir: Optional[str] = Field(None, description="folder of the decoded .npz cache of image folders; "
                                     "null = <root>/.cnnsweep_cache")
    # preprocessing: identical in training, export and serving
    image_size: Optional[int] = Field(None, gt=0, le=MAX_IMAGE_SIDE, description="square side after resize, "
                                      "px; null = the images' native size")
    grayscale: bool = Field(False, description="convert to 1 channel (BT.601 luma)")
    equalize: Literal["none", "global", "clahe"] = Field("none", description="histogram equalization of the "
                                                         "luma channel: none, global or clahe (adaptive)")
    clahe_clip: float = Field(2.0, gt=0, description="CLAHE clip limit (OpenCV units)")
    clahe_grid: int = Field(8, gt=0, le=MAX_CLAHE_GRID, description="CLAHE tiles per side")
    normalize: bool = Field(True, description="subtract the per-channel mean and divide by the std, both "
                            "measured on the training split (or data.mean/data.std)")
    mean: Optional[list[float]] = Field(None, min_length=1, max_length=3, description="fixed per-channel mean, "
                                        "0..1 units, instead of the training split's (one value = every channel); "
                                        "e.g. a pretrained backbone's own normalization")
    std: Optional[list[float]] = Field(None, min_length=1, max_length=3, description="fixed per-channel std, "
                                       "0..1 units, with data.mean")
    balance: str = Field("none", description="class balancing, a registered method: "
                         + ", ".join(BALANCE_METHODS.names()))

    _known_name = field_validator("name")(_registered(DATASETS))
    _known_balance = field_validator("balance")(_registered(BALANCE_METHODS))

    @model_validator(mode="after")
    def _fixed_stats(self) -> "DataConfig":
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std go together: set both or neither")
        if self.mean is None:
            return self
        if not self.normalize:
            raise ValueError("data.mean/data.std need data.normalize: true")
        if len(self.mean) != len(self.std) or len(self.mean) == 2:
            raise ValueError(f"data.mean/data.std: 1 or 3 values each, the same count, got {len(self.mean)} "
                             f"and {len(self.std)}")
        if self.grayscale and len(self.mean) != 1:
            raise ValueError("data.mean/data.std: one value each with data.grayscale (1 channel)")
        if not all(0 <= m <= 1 for m in self.mean) or not all(0 < s <= 1e3 for s in self.std):
            raise ValueError("data.mean values must be in 0..1 and data.std values in (0, 1000] (0..1 units)")
        return self


class AugmentConfig(Section):
    """Per-sample random augmentation, run on whole batches on the training device."""

    rotation: float = Field(0.0, ge=0, le=180, description="largest rotation either way, degrees")
    translate: float = Field(0.0, ge=0, le=0.5, description="largest shift either way, fraction of the side")
    scale: float = Field(0.0, ge=0, lt=1, description="zoom factor drawn from [1 - scale, 1 + scale]")
    brightness: float = Field(0.0, ge=0, le=1, description="brightness factor drawn from [1 - b, 1 + b]")
    contrast: float = Field(0.0, ge=0, le=1, description="contrast factor drawn from [1 - c, 1 + c]")
    saturation: float = Field(0.0, ge=0, le=1, description="saturation factor drawn from [1 - s, 1 + s]")
    # off by default: a mirrored "keep left" sign means "keep right"
    hflip: bool = Field(False, description="random horizontal flips (p = 0.5)")

    @property
    def enabled(self) -> bool:
        return any([self.rotation, self.translate, self.scale, self.brightness,
                    self.contrast, self.saturation, self.hflip])


DEFAULT_MODEL = "cnn"


class ModelConfig(Section):
    """The fields every model family has. `model.name` picks the family (MODEL_FAMILIES) and with it the
    section class, which adds the family's own fields; `ModelConfig(**fields)` builds that class too."""

    name: str = Field(DEFAULT_MODEL, description="cnn (the custom family), timm/<architecture> or "
                      "torchvision/<architecture>")
    pretrained: bool = Field(False, description="load pretrained backbone weights (model.weights, else the "
                             "Hugging Face cache; for torchvision, torch hub's cache); the cnn family has none published")
    weights: Optional[str] = Field(None, description="local .safetensors/.pth/checkpoint file of weights; "
                                   "null = the family's published weights")
    freeze: Literal["none", "backbone", "stages"] = Field("none", description="keep parameters fixed: none, "
                                                          "backbone (all but the head) or stages (the first "
                                                          "freeze_stages)")
    freeze_stages: int = Field(0, ge=0, description="with freeze=stages: how many stages, from the input")
    # two-phase fine-tuning: only the head learns (at train.lr) at first, then the backbone joins at
    # train.lr x optim.backbone_lr_scale (engine/fit.py)
    freeze_epochs: int = Field(0, ge=0, description="epochs with the backbone frozen before it is unfrozen; "
                               "0 = never frozen")

    def __new__(cls, *args: Any, **data: Any) -> "ModelConfig":
        if cls is ModelConfig:  # the section class of the family that `name` picks
            family = model_family(data.get("name", DEFAULT_MODEL))
            if family is None:
                raise ConfigError(f"model.name: {_unknown_model(data.get('name'))}")
            cls = MODEL_FAMILIES[family]
        return super().__new__(cls)

    @classmethod
    def family_fields(cls) -> tuple[str, ...]:
        """The family's own fields: the keyword arguments its factory reads."""
        return tuple(k for k in cls.model_fields if k not in ModelConfig.model_fields)

    def family_args(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.family_fields()}

    @model_validator(mode="after")
    def _warmup_needs_a_trainable_backbone(self) -> "ModelConfig":
        if self.freeze_epochs and self.freeze == "backbone":
            raise ValueError("model.freeze_epochs unfreezes the backbone after N epochs, but model.freeze="
                             "backbone keeps it frozen throughout: use one of the two")
        return self


class CNNModelConfig(ModelConfig):
    """`cnn`: the configurable custom family (cnnsweep/models/cnn.py)."""

    name: Literal["cnn"] = Field("cnn", description="the custom CNN family")
    num_stages: int = Field(3, ge=1, le=6, description="stages of convs + downsampling (each halves the side)")
    width: int = Field(32, ge=1, description="channels of stage 1; doubled each stage (capped at 512)")
    convs_per_stage: int = Field(2, ge=1, le=6, description="3x3 convolutions per stage")
    batch_norm: bool = Field(True, description="batch norm after each convolution")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout rate before the classifier (and of the "
                           "hidden FC layer)")
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"] = Field(
        "relu", description="activation after each convolution")
    pooling: str = Field("max", description="downsampling at the end of each stage, a registered pooling: "
                         + ", ".join(POOLINGS.names()) + " (strided: the last conv has stride 2)")
    head: Literal["gap", "flatten"] = Field("gap", description="classifier input: gap (global average pool) "
                                            "or flatten (every position)")
    head_hidden: int = Field(0, ge=0, description="units of a hidden FC layer (+ activation + dropout) in "
                             "the head; 0 = none")
    stage_dropout: Optional[float] = Field(None, ge=0, lt=1, description="Dropout2d rate after each stage; "
                                           "null = dropout / 2")
    stn: bool = Field(False, description="a spatial transformer in front of the stages: a small net predicts an "
                      "affine warp of the input, learned end to end (starts as the identity)")
    tta: Literal["none", "hflip"] = Field("none", description="test-time augmentation in eval mode (validation, "
                                          "analyze, the exported graph, serving): hflip averages the softmax "
                                          "over the image and its mirror, for classes that are mirror-symmetric "
                                          "(buildings, not traffic signs); 2x the inference cost")

    _known_pooling = field_validator("pooling")(_registered(POOLINGS))


class TimmModelConfig(ModelConfig):
    """`timm/<architecture>`: any timm model, for transfer learning (cnnsweep/models/timm_models.py)."""

    name: str = Field(..., pattern=r"^timm/\S+$", description="timm/ + a timm architecture name "
                      "(timm.list_models()), e.g. timm/resnet18")


class TorchvisionModelConfig(ModelConfig):
    """`torchvision/<architecture>`: a torchvision classification model (cnnsweep/models/torchvision_models.py)."""

    name: str = Field(..., pattern=r"^torchvision/\S+$", description="torchvision/ + a torchvision "
                      "classification architecture (torchvision.models.list_models()), e.g. "
                      "torchvision/squeezenet1_1")


# Model families: `model.name` picks one, by its whole name (`cnn`) or its prefix (`timm/<arch>`). A
# family is its section class here plus a factory registered under the same key in cnnsweep.models.
MODEL_FAMILIES: dict[str, type[ModelConfig]] = {"cnn": CNNModelConfig, "timm/": TimmModelConfig,
                                                "torchvision/": TorchvisionModelConfig}


def model_family(name: Any) -> Optional[str]:
    """The MODEL_FAMILIES key that `name` picks, or None."""
    return match_name(name, MODEL_FAMILIES)


def _unknown_model(name: Any) -> str:
    names = (k + "<name>" if k.endswith("/") else k for k in MODEL_FAMILIES)
    return f"unknown model {name!r}; registered: {', '.join(names)}"


def _family_tag(v: Any) -> Optional[str]:
    name = v.get("name", DEFAULT_MODEL) if isinstance(v, dict) else getattr(v, "name", None)
    return model_family(name)


# The model section: the class of its family (a mapping without `name` is a cnn). Errors inside carry
# the family key in their location; format_validation_error takes it out again (`_model_error`).
ModelField = Annotated[Union[tuple(Annotated[cls, Tag(key)] for key, cls in MODEL_FAMILIES.items())],
                       Discriminator(_family_tag, custom_error_type="model_family",
                                     custom_error_message="unknown model family")]


class OptimConfig(Section):
    """The optimizer (its learning rate is train.lr)."""

    name: Literal["sgd", "nesterov", "adam", "adamw", "rmsprop"] = Field("adamw", description="optimizer")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum of sgd/nesterov/rmsprop")
    weight_decay: float = Field(5e-4, ge=0, description="L2 penalty (decoupled for adamw)")
    backbone_lr_scale: float = Field(0.1, gt=0, le=1, description="learning rate of a pretrained backbone, "
                                     "as a fraction of train.lr")
    stn_lr_scale: float = Field(1.0, gt=0, le=1, description="learning rate of the spatial transformer "
                                "(model.stn), as a fraction of the rate its model's other layers get")


class SchedConfig(Section):
    """The learning-rate schedule over the epochs."""

    name: Literal["none", "cosine", "onecycle", "step"] = Field("cosine", description="learning-rate schedule")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up before cosine decay, epochs")
    step_epochs: int = Field(10, gt=0, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: learning-rate multiplier per decay")


class TrainConfig(Section):
    """The training loop."""

    epochs: int = Field(10, gt=0, description="passes over the training split")
    lr: float = Field(1e-3, gt=0, description="peak learning rate for the effective batch")
    batch_size: int = Field(128, gt=0, description="effective batch, images: summed over workers and "
                            "micro-steps")
    micro_batch_size: Optional[int] = Field(None, gt=0, description="images per worker per forward pass; "
                                            "null = batch_size / workers (no accumulation)")
    amp: Literal["auto", "bf16", "fp16", "off"] = Field("auto", description="mixed precision; auto = "
                                                        "fp16 + GradScaler on CUDA; on a CPU, bf16 where it "
                                                        "has bf16 math (AMX, AVX512-BF16), else fp32")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="probability mass spread over the other classes")
    grad_clip: Optional[float] = Field(None, gt=0, description="largest global L2 norm of the gradients; "
                                       "null = no clipping")
    ema_decay: Optional[float] = Field(None, gt=0, lt=1, description="exponential moving average of the "
                                       "weights, per optimizer step (warmed up: early steps average over "
                                       "fewer); the average is what is evaluated, saved and exported; "
                                       "null = the last step's weights")
    seed: int = Field(0, description="seed of initialisation, shuffling, augmentation and dropout")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms (slower)")
    eval_batch_size: int = Field(512, gt=0, description="images per validation forward pass")
    checkpoint_every: int = Field(1, gt=0, description="epochs between checkpoints")
    num_to_keep: Optional[int] = Field(2, gt=0, description="checkpoints kept per run (the best by val/acc); "
                                       "null = all")


class ScalingConfig(Section):
    """How many workers train one run, on what."""

    num_workers: int = Field(1, gt=0, description="data-parallel training workers per run")
    use_gpu: bool = Field(False, description="one GPU (share) per worker")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPU cores reserved per worker")
    gpus_per_worker: float = Field(1.0, gt=0, le=1, description="GPUs per worker; < 1 packs several "
                                   "workers or trials onto one GPU")
    # 2 rides out a transient fault or two while a run that fails every time (a bad config) stops after
    # 3 tries. Node preemptions are Ray's to count apart (FailureConfig.max_preemption_failures).
    max_failures: int = Field(2, ge=-1, description="worker failures (crash, OOM kill, raised error) survived "
                              "by restarting from the last checkpoint; -1 = no limit, 0 = fail at once")


class RunConfig(Section):
    """A run: everything one candidate needs (a sweep file adds `search`)."""

    name: str = Field("run", description="name of the run (output folder, reports)")
    data: DataConfig = Field(DataConfig(), description="the dataset and its deterministic preprocessing")
    augment: AugmentConfig = Field(AugmentConfig(), description="random augmentation of training batches")
    model: ModelField = Field(CNNModelConfig(), description="the model: its family (name) and the family's "
                              "fields")
    optim: OptimConfig = Field(OptimConfig(), description="the optimizer")
    sched: SchedConfig = Field(SchedConfig(), description="the learning-rate schedule")
    train: TrainConfig = Field(TrainConfig(), description="the training loop")
    scaling: ScalingConfig = Field(ScalingConfig(), description="workers per run and their resources")
    search: Optional[dict[str, Any]] = Field(None, description="a sweep file's search space and settings "
                                             "(validated by cnnsweep.sweep.space); `train` ignores it")

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
                            root: str = "", rewrite: Optional[Callable[[Any], Optional[tuple[str, str]]]] = None
                            ) -> str:
    """pydantic's errors as `dotted.path: message` lines, one per problem: the one formatter behind
    ConfigError, the sweep's `search.*` errors and the server's settings errors.

    `prefix` is the section the model was validated as (`search`); `noise` are location parts of
    union/tagged types that mean nothing to a person (`Distribution`); `root` labels a problem of the
    whole object (no path); `rewrite(error)` may answer (path, message) for an error it knows better."""
    lines = []
    for e in err.errors():
        parts = [str(p) for p in e["loc"] if not str(p).startswith("function-") and str(p) not in noise]
        path = ".".join(([prefix] if prefix else []) + parts)
        msg = "unknown key" if e["type"] == "extra_forbidden" else _short_message(e)
        path, msg = (rewrite(e) if rewrite else None) or (path, msg)
        label = path or root
        lines.append(f"{label}: {msg}" if label else msg)
    return "\n".join(dict.fromkeys(lines))  # a union reports one problem once per member


def validation_error_line(err: ValidationError, max_chars: int = 300) -> str:
    """format_validation_error on one bounded line: for files cnnsweep reads back (checkpoints, summaries,
    metrics), whose keys come from the file (a newline in one, thousands of them)."""
    text = " ".join("; ".join(format_validation_error(err).splitlines()).split())
    return text if len(text) <= max_chars else f"{text[:max_chars]}... ({err.error_count()} problems)"


def load_versioned_json(path: Path, schema: type[BaseModel], version: int, error: Callable[[str], Exception], *,
                        what: str, read_as: str, rerun: str) -> Any:
    """A JSON file cnnsweep wrote, read through its schema: `schema` instance, or `error(one line naming
    the file)` when it cannot be read, has no or another `version`, or does not fit the schema.
    `what` / `read_as` name the file's kind ("not {what}", "cannot be read as {read_as}"); `rerun` says
    how to get a current one."""
    def problem(text: str) -> Exception:
        return error(f"{path}: {' '.join(text.split())}")  # one line, whatever the file holds

    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise problem(f"cannot be read as {read_as} ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise problem(f"not {what} (a JSON {type(raw).__name__}, not an object)")
    if "version" not in raw:
        raise problem(f"no format version: written by an older cnnsweep, which this one does not read; {rerun}")
    if type(raw["version"]) is not int or raw["version"] != version:
        raise problem(f"{read_as} in format version {repr(raw['version'])[:20]}, but this cnnsweep reads "
                      f"version {version}: {rerun}")
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise problem(f"not {what} ({validation_error_line(err)})") from None


def _model_error(e: Any) -> Optional[tuple[str, str]]:
    """The model section's own messages: an unknown family names `model.name`, another family's field
    says so; the family key is taken out of every path."""
    loc = e["loc"]
    if loc[:1] != ("model",):
        return None
    if e["type"] == "model_family":
        if not isinstance(e["input"], dict):
            return "model", "must be a mapping of model fields (name: cnn, timm/<name> or torchvision/<name>, ...)"
        return "model.name", _unknown_model(e["input"].get("name"))
    if len(loc) < 3 or loc[1] not in MODEL_FAMILIES:
        return None
    path = ".".join(["model", *(str(p) for p in loc[2:])])
    if e["type"] == "extra_forbidden":
        return path, f"not a field of {str(loc[1]).rstrip('/')} models"
    return path, _short_message(e)


def _short_message(e: Any) -> str:
    msg = e["msg"]
    if e["type"].startswith("greater_than") or e["type"].startswith("less_than"):
        msg = msg.replace("Input should be", "must be")
    return msg.removeprefix("Value error, ")


def validate_config(raw: dict[str, Any]) -> RunConfig:
    """dict -> RunConfig, or ConfigError listing every problem by dotted path."""
    if not isinstance(raw, dict):
        raise ConfigError("config: must be a mapping of sections (data, model, train, ...)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, rewrite=_model_error)) from None


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
    """A deep copy of raw with `--set` style overrides applied (not yet validated).

    An override of `model.name` that changes the model family (a sweep trial of `timm/resnet18` on a
    `cnn` base) drops the base's fields of the old family first: they were set for that family. Fields
    the overrides set themselves are kept, so one that the new family lacks is still an error."""
    out = copy.deepcopy(raw)
    items = list(overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides))
    for key, value in items:
        if key == "model.name":
            _switch_family(out, value)
    for key, value in items:
        set_dotted(out, key, value)
    return out


def _switch_family(raw: dict[str, Any], name: Any) -> None:
    model = raw.get("model")
    if not isinstance(model, dict):
        return
    old, new = model_family(model.get("name", DEFAULT_MODEL)), model_family(name)
    if old != new and new is not None:
        fields = MODEL_FAMILIES[new].model_fields
        raw["model"] = {k: v for k, v in model.items() if k in fields}


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


def from_saved_config(raw: dict[str, Any]) -> RunConfig:
    """A config that cnnsweep wrote (save_config, a checkpoint): before model sections were per family,
    it held every family's fields with their defaults, so fields of other families are dropped here.
    Files a person writes go through validate_config, where such a field is an error."""
    model = raw.get("model") if isinstance(raw, dict) else None
    family = model_family(model.get("name", DEFAULT_MODEL)) if isinstance(model, dict) else None
    if family is not None:
        raw = raw | {"model": {k: v for k, v in model.items() if k in MODEL_FAMILIES[family].model_fields}}
    return validate_config(raw)


def check_resumed_config(cfg: RunConfig, saved: str | Path) -> None:
    """--resume: refuse a config that differs from the one the output was started with (`saved`, as
    `save_config` wrote it), naming each difference by dotted path. Resuming a run with another model,
    data or search space would mix two experiments in one folder (and one set of checkpoints)."""
    raw = load_yaml(saved)
    try:
        old = config_to_dict(from_saved_config(raw), with_search=True)  # fills in defaults added since
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

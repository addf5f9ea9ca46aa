"""A sweep file's `search` section: parsed, checked against the run schema, and sampled.

The YAML syntax (documented with examples in sweeps/*.yaml):

    search:
      metric: val/acc            # a key every epoch reports
      mode: max
      algorithm: optuna          # optuna (TPE, seeded) | random (seeded) | grid
      seed: 0                    # sampler seed: same seed, same sequence of trials
      num_samples: 12            # optuna/random: trials to run (grid: one trial per point and seed)
      max_concurrent: auto       # or an int; auto = what the cluster fits (see cnnsweep.distributed.tune)
      scheduler: {name: asha, grace_period: 2, reduction_factor: 3}   # or {name: fifo}
      space:                     # dotted run-config path -> one distribution
        train.lr: {loguniform: [1.0e-4, 1.0e-2]}
        model.num_stages: {int: [2, 4]}                       # inclusive; optional `step`
        model.activation: {choice: [relu, gelu, silu]}
        model.dropout: {choice: [0.0, {uniform: [0.1, 0.5]}]} # the rate is searched only when dropout is on
        data.clahe_clip: {uniform: [1.0, 4.0], when: {data.equalize: clahe}}
        model.freeze: {choice: [none, backbone], when: {model.name: "timm/*"}}
      seeds: [0, 1, 2]           # grid only: every point runs once per train.seed
      ablation:                  # grid only: one factor at a time, each against the base config
        no_batch_norm: {model.batch_norm: false}
        color_jitter: {augment.brightness: 0.3, augment.contrast: 0.3}

Conditional parameters use Optuna's define-by-run space: `when` names parameters sampled earlier in the
space (YAML order) and the values (or glob patterns, for strings) under which this one is sampled; a
`choice` option that is itself a distribution opens a branch whose parameter exists only when taken.
A parameter that is not sampled keeps the base config's value.

Pure pydantic + optuna: no ray, no torch. `cnnsweep.distributed.tune` turns this into a Ray Tune search.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
from typing import Annotated, Any, Literal, Optional, Union, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from cnnsweep.config import (MODEL_FAMILIES, ConfigError, RunConfig, Section, apply_overrides, config_to_dict,
                             format_validation_error, model_family, validate_config)
from cnnsweep import metrics as M
from cnnsweep.atomic import atomic_write_text

Scalar = Union[bool, int, float, str, None]
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
METRICS = M.MODES  # what search.metric may name, and its direction
MAX_GRID_INT_VALUES = 64  # an `int` range expands to every value in a grid; more is surely a mistake


# ---------------------------------------------------------------------------- schema


class Distribution(BaseModel):
    """One parameter's distribution; written in YAML as `{kind: args, when: {...}}`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["choice", "uniform", "loguniform", "int"]
    options: list[Union[Scalar, "Distribution"]] = []  # choice
    low: Optional[float] = None  # uniform/loguniform/int, inclusive
    high: Optional[float] = None
    step: Optional[float] = None  # int: spacing of the values (default 1)
    when: dict[str, list[Scalar]] = {}  # sampled only if every named parameter matches one value/pattern

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        if isinstance(raw, Distribution) or (isinstance(raw, dict) and "kind" in raw):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"must be a mapping like {{choice: [a, b]}}; one of {', '.join(DISTRIBUTIONS)}")
        kinds = [k for k in raw if k in DISTRIBUTIONS]
        unknown = [k for k in raw if k not in DISTRIBUTIONS and k not in ("when", "step")]
        if unknown or len(kinds) != 1:
            raise ValueError(f"expected exactly one of {', '.join(DISTRIBUTIONS)} (plus optional `when`, "
                             f"`step`), got {sorted(raw)}")
        kind, args = kinds[0], raw[kinds[0]]
        out: dict[str, Any] = {"kind": kind, "when": _as_when(raw.get("when") or {}), "step": raw.get("step")}
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise ValueError("choice needs a non-empty list of values")
            out["options"] = args
        else:
            if not (isinstance(args, list) and len(args) == 2 and all(_is_number(a) for a in args)):
                raise ValueError(f"{kind} needs [low, high] numbers")
            out["low"], out["high"] = args
        return out

    @model_validator(mode="after")
    def _check_bounds(self) -> "Distribution":
        if self.kind == "choice":
            if any(isinstance(o, Distribution) and (o.kind == "choice" or o.when) for o in self.options):
                raise ValueError("a branch inside choice must be uniform/loguniform/int without `when`")
            return self
        if not self.low < self.high:
            raise ValueError(f"{self.kind} needs low < high, got [{self.low}, {self.high}]")
        if self.kind == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        if self.kind == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("int needs integer bounds")
        if self.step is not None and (self.step <= 0 or self.kind == "loguniform"):
            raise ValueError("step must be > 0 and only applies to uniform and int")
        return self

    def branches(self) -> list["Distribution"]:
        return [o for o in self.options if isinstance(o, Distribution)]

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return DISTRIBUTION_SCHEMA  # the YAML form a file writes, not the parsed fields above


_SCALAR_SCHEMA = {"type": ["boolean", "integer", "number", "string", "null"]}
_RANGE_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                 "description": "[low, high], inclusive"}
DISTRIBUTION_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "exactly one of choice, uniform, loguniform, int; plus optional when, step",
    "properties": {
        "choice": {"type": "array", "minItems": 1, "description": "values; an option {uniform|loguniform|int: "
                   "[low, high]} is a branch whose value is searched only when it is taken",
                   "items": {"anyOf": [_SCALAR_SCHEMA, {"type": "object"}]}},
        "uniform": _RANGE_SCHEMA, "loguniform": _RANGE_SCHEMA | {"description": "[low, high], low > 0, "
                                                                 "sampled on a log scale"},
        "int": _RANGE_SCHEMA | {"description": "[low, high] integers, inclusive"},
        "step": {"type": "number", "exclusiveMinimum": 0, "description": "uniform/int: spacing of the values"},
        "when": {"type": "object", "description": "sampled only when each named earlier parameter has one of "
                 "these values (glob patterns for strings)"},
    },
    "oneOf": [{"required": [k]} for k in DISTRIBUTIONS],
}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _as_when(raw: Any) -> dict[str, list]:
    if not isinstance(raw, dict):
        raise ValueError("when must map parameter paths to a value or a list of values")
    return {k: v if isinstance(v, list) else [v] for k, v in raw.items()}


class SchedulerConfig(Section):
    """Early stopping of trials."""

    name: Literal["asha", "fifo"] = Field("asha", description="asha: stop the worse trials early at each "
                                          "rung; fifo: every trial runs all its epochs")
    grace_period: int = Field(1, gt=0, description="epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(3.0, gt=1, description="keep the best 1/reduction_factor of the trials "
                                    "at each rung")


class ExportSpec(Section):
    """search.export as a mapping: `{top: 3, ensemble: true}`; `export: true` is `{top: 1}`."""

    top: int = Field(1, gt=0, description="trials of the leaderboard to export (best first)")
    ensemble: bool = Field(False, description="the `top` trials as one ONNX ensemble instead of one file each")

    def __bool__(self) -> bool:  # `if search.export:` keeps meaning "export something"
        return True


def _export_kind(v: Any) -> str:
    return "spec" if isinstance(v, (dict, ExportSpec)) else "flag"


# A mapping is validated as ExportSpec only (its errors read `search.export.top: ...`, not twice).
ExportField = Annotated[Union[Annotated[bool, Tag("flag")], Annotated[ExportSpec, Tag("spec")]],
                        Discriminator(_export_kind)]


class SearchConfig(Section):
    """A sweep file's `search` section."""

    metric: str = Field(M.DEFAULT_METRIC, description="the reported metric trials are ranked by: "
                        + ", ".join(METRICS))
    mode: Literal["max", "min"] = Field("max", description="whether a larger or smaller metric is better")
    algorithm: Literal["optuna", "random", "grid"] = Field("optuna", description="optuna (TPE, seeded), "
                                                           "random (seeded) or grid (every point)")
    seed: int = Field(0, description="sampler seed (not the training seed: see seeds)")
    num_samples: int = Field(8, gt=0, description="optuna/random: trials to run")
    startup_trials: Optional[int] = Field(None, gt=0, description="optuna: random trials before TPE; "
                                          "null = half the trials, 4 to 10")
    multivariate: bool = Field(False, description="optuna: joint TPE over parameters that occur together")
    baseline_first: bool = Field(True, description="optuna/random: trial 1 is the base config itself")
    max_concurrent: Union[Literal["auto"], int] = Field("auto", description="trials at a time; auto = what "
                                                        "the cluster fits")
    scheduler: SchedulerConfig = Field(SchedulerConfig(), description="early stopping of trials")
    space: dict[str, Distribution] = Field({}, description="dotted run-config path -> its distribution")
    seeds: Optional[list[int]] = Field(None, description="grid: repeat every point with each train.seed")
    ablation: Optional[dict[str, dict[str, Any]]] = Field(None, description="grid: variant name -> the "
                                                          "run-config values it changes (one factor each)")
    unavailable: Literal["refuse", "drop"] = Field("refuse", description="a model branch that cannot run "
                                                   "here: refuse the sweep, or drop the branch with a warning")
    # `{top: K, ensemble: true}` also writes exports/ensemble_topK.onnx (one graph, the K best trials'
    # mean softmax)
    export: ExportField = Field(True, description="at the end, export the best trial to best/model.onnx "
                                "(true), or {top: K, ensemble: bool}")
    analyze: bool = Field(True, description="at the end, `cnnsweep analyze` the top-3 trials into "
                          "<output>/analysis")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"must be one of {', '.join(METRICS)} (reported every epoch)")
        return v

    @field_validator("max_concurrent")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v != "auto" and v < 1:
            raise ValueError("must be 'auto' or >= 1")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "SearchConfig":
        if METRICS[self.metric] != self.mode:
            raise ValueError(f"mode {self.mode!r} does not fit metric {self.metric!r} "
                             f"(use mode: {METRICS[self.metric]})")
        if self.algorithm != "grid" and (self.seeds or self.ablation):
            raise ValueError("`seeds` and `ablation` need algorithm: grid")
        if self.ablation and self.space:
            raise ValueError("give either `ablation` (one factor at a time) or `space`, not both")
        if not self.ablation and not self.space:
            raise ValueError("nothing to search: add a `space` (or, with algorithm: grid, an `ablation`)")
        return self

    @property
    def factors(self) -> list[str]:
        """What the ablation summary groups by: the searched paths, or the variant name (+ seed)."""
        if self.ablation:
            return ["variant"]
        return list(self.space) + (["train.seed"] if self.seeds and len(self.seeds) > 1 else [])


# ---------------------------------------------------------------------------- validation


def _sections(ann: Any) -> list[type[BaseModel]]:
    """The section classes an annotation holds: itself, or each member of a (tagged) union."""
    if isinstance(ann, type):
        return [ann] if issubclass(ann, BaseModel) else []
    return [cls for arg in get_args(ann) for cls in _sections(arg)]


def _leaf_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> set[str]:
    """Every dotted path that names a value (not a section) of the run config; a section that depends on
    its family (model) has the paths of every family."""
    out = set()
    for name, field in model.model_fields.items():
        sections = _sections(field.annotation)
        for section in sections:
            out |= _leaf_paths(section, f"{prefix}{name}.")
        if not sections and name != "search":
            out.add(prefix + name)
    return out


LEAF_PATHS = frozenset(_leaf_paths())


def _check_path(path: str, where: str) -> None:
    if path in LEAF_PATHS:
        return
    section = path.split(".")[0]
    near = sorted(p for p in LEAF_PATHS if p.startswith(section + "."))
    hint = f"; {section} has: {', '.join(p.split('.', 1)[1] for p in near)}" if near else \
        "; sections: data, augment, model, optim, sched, train, scaling"
    raise ConfigError(f"{where}: {path!r} is not a run-config path{hint}")


def _try_values(base: dict, overrides: dict[str, Any], where: str) -> None:
    try:
        validate_config(apply_overrides(base, overrides))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _probe_values(dist: Distribution) -> list[Any]:
    """Values that exercise the schema: every choice literal and both ends of every range."""
    if dist.kind == "choice":
        out: list[Any] = []
        for o in dist.options:
            out += _probe_values(o) if isinstance(o, Distribution) else [o]
        return out
    if dist.kind == "int":
        return [int(dist.low), int(dist.high)]
    return [dist.low, dist.high]


def _check_space(search: SearchConfig, base: dict) -> None:
    seen: list[str] = []
    for path, dist in search.space.items():
        where = f"search.space.{path}"
        _check_path(path, where)
        for cond in dist.when:
            if cond not in seen:
                raise ConfigError(f"{where}: `when` names {cond!r}, which is not a parameter listed "
                                  f"before it in search.space")
        for value in _probe_values(dist):
            _try_values(base, {path: value}, f"{where} = {value!r}")
        seen.append(path)


def _check_families(search: SearchConfig) -> None:
    """When `model.name` is searched across families, a searched field of one family must be conditioned
    (`when`, directly or through parameters it depends on) on the names of families that have it: a
    trial of another family would fail on it. Each path is probed alone above, so this is checked here."""
    names = search.space.get("model.name")
    if names is None or names.kind != "choice":
        return
    options = [o for o in names.options if isinstance(o, str) and model_family(o) is not None]
    reach: dict[str, set[str]] = {"model.name": {model_family(o) for o in options}}  # families a trial can have
    for path, dist in search.space.items():
        families = set(reach["model.name"])
        for cond, accepted in dist.when.items():
            if cond == "model.name":
                families &= {model_family(o) for o in options if matches(o, accepted)}
            families &= reach.get(cond, families)
        reach.setdefault(path, families)
        section, _, field = path.partition(".")
        lacking = sorted(f.rstrip("/") for f in families if field not in MODEL_FAMILIES[f].model_fields)
        if section == "model" and lacking:
            raise ConfigError(f"search.space.{path}: not a field of {', '.join(lacking)} models, which model.name "
                              f"can pick; sample it only for the others, e.g. `when: {{model.name: cnn}}`")


def _check_ablation(search: SearchConfig, base: dict) -> None:
    for name, variant in (search.ablation or {}).items():
        if not isinstance(variant, dict) or not variant:
            raise ConfigError(f"search.ablation.{name}: must map run-config paths to values")
        for path in variant:
            _check_path(path, f"search.ablation.{name}")
        _try_values(base, variant, f"search.ablation.{name}")


def load_search(cfg: RunConfig) -> SearchConfig:
    """The validated `search` section of a sweep, or ConfigError naming each problem by path."""
    if not cfg.search:
        raise ConfigError("search: this file has no `search` section (see sweeps/quickstart.yaml); "
                          "`cnnsweep train` runs a single config")
    try:
        search = SearchConfig.model_validate(cfg.search)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None
    base = config_to_dict(cfg)
    _check_space(search, base)
    _check_families(search)
    _check_ablation(search, base)
    if search.scheduler.name == "asha" and search.scheduler.grace_period > cfg.train.epochs:
        raise ConfigError(f"search.scheduler.grace_period ({search.scheduler.grace_period}) must be <= "
                          f"train.epochs ({cfg.train.epochs})")
    if search.algorithm != "grid" and search.baseline_first:
        baseline_params(search, base)  # raises when the base config lies outside the space
    if search.algorithm == "grid":
        for point in expand_grid(search):
            _try_values(base, point.overrides, f"search grid point {point.label}")
    return search


def _format(err: ValidationError) -> str:
    return format_validation_error(err, "search", noise=("Distribution", "is-instance[Distribution]", "flag", "spec"))


# ---------------------------------------------------------------------------- JSON Schema


def sweep_file_schema() -> dict[str, Any]:
    """The JSON Schema of a run or sweep file (the run config and its `search` section), every field
    with its description, so that editors complete and check sweep files."""
    schema = RunConfig.model_json_schema()
    search = SearchConfig.model_json_schema(ref_template="#/$defs/{model}")
    schema["$defs"] |= search.pop("$defs", {})
    search["properties"]["space"]["propertyNames"] = {"enum": sorted(LEAF_PATHS)}
    schema["$defs"]["SearchConfig"] = search
    described = schema["properties"]["search"]["description"]
    schema["properties"]["search"] = {"anyOf": [{"$ref": "#/$defs/SearchConfig"}, {"type": "null"}],
                                      "default": None, "description": described}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "cnnsweep run or sweep file", **{k: v for k, v in schema.items() if k != "title"}}


def write_schema(output: Optional[str] = None) -> str:
    """The schema as JSON text, also written to `output` when given (ConfigError when it cannot be)."""
    text = json.dumps(sweep_file_schema(), indent=2) + "\n"
    if output:
        try:
            atomic_write_text(output, text)
        except OSError as err:
            raise ConfigError(f"--output {output}: cannot write ({err.strerror or err})") from None
    return text


# ---------------------------------------------------------------------------- define-by-run sampling


def matches(value: Any, accepted: list[Any]) -> bool:
    for a in accepted:
        if isinstance(a, str) and isinstance(value, str) and fnmatch.fnmatchcase(value, a):
            return True
        if type(a) is type(value) and a == value:  # 1 == True in Python; a config switch is not a count
            return True
    return False


def is_active(dist: Distribution, chosen: dict[str, Any]) -> bool:
    """Whether `dist` is sampled, given the values chosen so far (absent = its condition failed)."""
    return all(cond in chosen and matches(chosen[cond], acc) for cond, acc in dist.when.items())


def option_label(option: Scalar | Distribution) -> Scalar:
    """How a choice option appears to Optuna (categorical values must be plain scalars)."""
    if isinstance(option, Distribution):
        return f"{option.kind}[{option.low:g}, {option.high:g}]"
    return option


def branch_name(path: str, branch: Distribution) -> str:
    """The Optuna parameter name of a branch inside a choice, e.g. `model.dropout:uniform`."""
    return f"{path}:{branch.kind}"


def _suggest_range(trial: Any, name: str, dist: Distribution) -> Any:
    if dist.kind == "int":
        return trial.suggest_int(name, int(dist.low), int(dist.high), step=int(dist.step or 1))
    return trial.suggest_float(name, dist.low, dist.high, log=dist.kind == "loguniform", step=dist.step)


def _suggest(trial: Any, path: str, dist: Distribution) -> Any:
    if dist.kind != "choice":
        return _suggest_range(trial, path, dist)
    labels = [option_label(o) for o in dist.options]
    picked = dist.options[labels.index(trial.suggest_categorical(path, labels))]
    if isinstance(picked, Distribution):
        return _suggest_range(trial, branch_name(path, picked), picked)
    return picked


def sample_overrides(search: SearchConfig, trial: Any) -> dict[str, Any]:
    """Optuna define-by-run: sample the space on `trial` (an optuna.Trial); returns config overrides."""
    chosen: dict[str, Any] = {}
    for path, dist in search.space.items():
        if is_active(dist, chosen):
            chosen[path] = _suggest(trial, path, dist)
    return chosen


def optuna_distributions(search: SearchConfig) -> dict[str, Any]:
    """Parameter name -> optuna distribution, matching `sample_overrides` (to rebuild a study)."""
    import optuna.distributions as od

    def rng(d: Distribution) -> Any:
        if d.kind == "int":
            return od.IntDistribution(int(d.low), int(d.high), step=int(d.step or 1))
        return od.FloatDistribution(d.low, d.high, log=d.kind == "loguniform", step=d.step)

    out: dict[str, Any] = {}
    for path, dist in search.space.items():
        if dist.kind != "choice":
            out[path] = rng(dist)
            continue
        out[path] = od.CategoricalDistribution([option_label(o) for o in dist.options])
        out.update({branch_name(path, b): rng(b) for b in dist.branches()})
    return out


def _baseline_param(path: str, dist: Distribution, value: Any) -> Optional[dict[str, Any]]:
    """The Optuna parameters that make `sample_overrides` reproduce `value` for `path` (None: cannot)."""
    if dist.kind != "choice":
        inside = dist.low <= value <= dist.high if _is_number(value) else False
        return {path: int(value) if dist.kind == "int" else float(value)} if inside else None
    for option in dist.options:
        if not isinstance(option, Distribution) and type(option) is type(value) and option == value:
            return {path: option}
    for branch in dist.branches():
        if _baseline_param("", branch, value) is not None:
            return {path: option_label(branch), branch_name(path, branch): value}
    return None


def baseline_params(search: SearchConfig, base: dict[str, Any]) -> dict[str, Any]:
    """Optuna parameters of the base config, to enqueue it as the first trial (`baseline_first`)."""
    from cnnsweep.config import get_dotted

    params: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for path, dist in search.space.items():
        if not is_active(dist, chosen):
            continue
        value = get_dotted(base, path)
        found = _baseline_param(path, dist, value)
        if found is None:
            raise ConfigError(f"search.baseline_first: the base config's {path} = {value!r} is not in "
                              f"search.space.{path}; add it there, or set baseline_first: false")
        params |= found
        chosen[path] = value
    return params


# ---------------------------------------------------------------------------- grid


class GridPoint(BaseModel):
    label: str  # "baseline", a variant name, or "model.width=16,train.lr=0.001"
    overrides: dict[str, Any]


def _grid_values(path: str, dist: Distribution) -> list[Any]:
    if dist.kind == "choice":
        if dist.branches():
            raise ConfigError(f"search.space.{path}: a grid needs literal choice values, not a branch")
        return list(dist.options)
    if dist.kind == "int":
        values = list(range(int(dist.low), int(dist.high) + 1, int(dist.step or 1)))
        if len(values) > MAX_GRID_INT_VALUES:
            raise ConfigError(f"search.space.{path}: int range has {len(values)} grid values "
                              f"(max {MAX_GRID_INT_VALUES}); use choice")
        return values
    raise ConfigError(f"search.space.{path}: algorithm grid needs choice or int, not {dist.kind} "
                      f"(write e.g. {{choice: [{dist.low:g}, {dist.high:g}]}})")


def _product(space: dict[str, Distribution]) -> list[dict[str, Any]]:
    """Cartesian product; a parameter whose `when` fails is left out of that point (so no duplicates)."""
    points: list[dict[str, Any]] = [{}]
    for path, dist in space.items():
        values = _grid_values(path, dist)
        points = [q for p in points
                  for q in ([p | {path: v} for v in values] if is_active(dist, p) else [p])]
    return points


def _label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "baseline"


def expand_grid(search: SearchConfig) -> list[GridPoint]:
    """Every trial of a grid sweep: the product of `space` (or baseline + each `ablation` variant),
    each repeated with every seed in `seeds`."""
    if search.ablation:
        base = [GridPoint(label="baseline", overrides={})]
        points = base + [GridPoint(label=n, overrides=dict(v)) for n, v in search.ablation.items()]
    else:
        points = [GridPoint(label=_label(p), overrides=p) for p in _product(search.space)]
    if not search.seeds:
        return points
    return [GridPoint(label=f"{p.label} seed={s}", overrides=p.overrides | {"train.seed": s})
            for p, s in itertools.product(points, search.seeds)]


def num_trials(search: SearchConfig) -> int:
    return len(expand_grid(search)) if search.algorithm == "grid" else search.num_samples


def default_startup_trials(search: SearchConfig) -> int:
    """TPE's random warm-up: half the trials, 4 to 10 (Optuna's default is 10). Fewer (a quarter, min 2)
    let TPE settle on a mediocre region (benchmarks/sweep_efficiency.py compares start-up counts;
    BENCHMARKS.md has the figures)."""
    return search.startup_trials or max(4, min(10, math.ceil(search.num_samples / 2)))

"""Before the first trial: can every `model.name` x `model.pretrained` branch of a sweep run?

A branch is one model name the space can pick (a `model.name` choice, or the base config's) with one
`model.pretrained` value it can take there (respecting `when`). It cannot run when the model is not
registered (timm: `timm.is_model`), or when it needs pretrained weights that are neither a local
`model.weights` file nor in the Hugging Face cache, and the hub is off (HF_HUB_OFFLINE=1) or does not
answer. `search.unavailable` says what happens then: `refuse` (default) stops the sweep with one line
per branch naming it and the fix; `drop` removes the branch from the space with a warning, so no trial
is spent (and errors) on it. Pure: no ray, no training; the checks read files and, online, send HEAD
requests (nothing is downloaded).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Optional

from cnnsweep.config import ConfigError, RunConfig, validate_config
from cnnsweep.sweep.space import Distribution, SearchConfig, matches, load_search

NAME, PRETRAINED = "model.name", "model.pretrained"


@dataclass(frozen=True)
class Branch:
    name: str  # model.name
    pretrained: bool
    problem: Optional[str] = None  # None: it can run; else why not and the fix

    @property
    def label(self) -> str:
        return f"{NAME}={self.name}, {PRETRAINED}={str(self.pretrained).lower()}"


def _literals(dist: Distribution) -> list[Any]:
    return [o for o in dist.options if not isinstance(o, Distribution)] if dist.kind == "choice" else []


def _pretrained_values(search: SearchConfig, name: str, base_pretrained: bool) -> list[bool]:
    """The values model.pretrained can take for `name`: the base value when the parameter is not
    sampled for it (absent, or its `when` on model.name fails), plus its choices when it is."""
    dist = search.space.get(PRETRAINED)
    if dist is None or (NAME in dist.when and not matches(name, dist.when[NAME])):
        return [base_pretrained]
    return list(dict.fromkeys(v for v in _literals(dist) if isinstance(v, bool)))


def enumerate_branches(cfg: RunConfig, search: SearchConfig) -> list[Branch]:
    names = _literals(search.space[NAME]) if NAME in search.space else [cfg.model.name]
    return [Branch(n, p) for n in dict.fromkeys(names) for p in _pretrained_values(search, n, cfg.model.pretrained)]


def check_branch(cfg: RunConfig, branch: Branch) -> Optional[str]:
    """Why `branch` cannot run (with the fix), or None."""
    from cnnsweep.models.availability import model_problem

    return model_problem(branch.name, branch.pretrained, cfg.model.weights)


def _refusal(bad: list[Branch]) -> ConfigError:
    return ConfigError("\n".join(f"search: branch {b.label} cannot run: {b.problem} "
                                 "(or set search.unavailable: drop to leave it out)" for b in bad))


def _drop_dependents(space: dict[str, Any], removed: str) -> None:
    """Remove `removed` and every parameter whose `when` names it (recursively)."""
    space.pop(removed, None)
    for path in [p for p, d in space.items() if isinstance(d, dict) and removed in (d.get("when") or {})]:
        _drop_dependents(space, path)


def _kept_names(branches: list[Branch], base_pretrained: bool) -> tuple[list[str], list[str]]:
    """(names to keep in model.name, of those the ones that keep every model.pretrained value)."""
    keep, full = [], []
    for name in dict.fromkeys(b.name for b in branches):
        mine = [b for b in branches if b.name == name]
        ok = {b.pretrained for b in mine if b.problem is None}
        if len(ok) == len(mine):
            keep.append(name)
            full.append(name)
        elif base_pretrained in ok:  # model.pretrained not sampled for it -> it keeps the base value
            keep.append(name)
    return keep, full


def drop_branches(cfg: RunConfig, search: SearchConfig, branches: list[Branch]) -> RunConfig:
    """`cfg` whose `search.space` no longer offers the branches that cannot run."""
    raw = copy.deepcopy(cfg.search)
    space = raw["space"]
    keep, full = _kept_names(branches, cfg.model.pretrained)
    if NAME in space and "choice" in space[NAME]:
        space[NAME]["choice"] = [o for o in space[NAME]["choice"] if not isinstance(o, str) or o in keep]
    if PRETRAINED in space:
        if NAME in space:
            when = dict(space[PRETRAINED].get("when") or {})
            accepted = [n for n in keep if n in full and (NAME not in when or matches(n, _as_list(when[NAME])))]
            space[PRETRAINED]["when"] = when | {NAME: accepted}
            if not accepted:
                _drop_dependents(space, PRETRAINED)
        elif "choice" in space[PRETRAINED]:  # one model: take the failing values out of the pretrained choice
            ok = {b.pretrained for b in branches if b.problem is None}
            space[PRETRAINED]["choice"] = [o for o in space[PRETRAINED]["choice"] if o in ok]
    return validate_config(cfg.model_dump(mode="json") | {"search": raw})


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def preflight_sweep(cfg: RunConfig, check: Callable[[RunConfig, Branch], Optional[str]] = check_branch
                    ) -> tuple[RunConfig, list[str]]:
    """(the sweep to run, warnings). Refuses (ConfigError) or drops the branches that cannot run."""
    search = load_search(cfg)
    branches = [Branch(b.name, b.pretrained, check(cfg, b)) for b in enumerate_branches(cfg, search)]
    bad = [b for b in branches if b.problem]
    if not bad:
        return cfg, []
    base = next((b for b in bad if (b.name, b.pretrained) == (cfg.model.name, cfg.model.pretrained)), None)
    if search.unavailable == "refuse" or len(bad) == len(branches):
        raise _refusal(bad)
    if base is not None:  # the base config is the fallback of every unsampled parameter: cannot drop it
        raise ConfigError(f"search: the base config's branch {base.label} cannot run: {base.problem}")
    out = drop_branches(cfg, search, branches)
    load_search(out)  # the reduced space must still be a valid sweep
    return out, [f"search.unavailable=drop: left out {b.label}: {b.problem}" for b in bad]

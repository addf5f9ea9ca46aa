"""Sweep efficiency: Optuna TPE + ASHA against random search without early stopping.

Same search space (the project's `search` syntax, sampled by cnnsweep.sweep.space), the same budget in
trial-epochs, at least 5 seeds, medians reported. The data (scikit-learn's embedded digits, 8x8,
1,527 train / 270 validation images) makes a trial take seconds, and the space mixes settings that
reach 97-99% with many that stay far below, so "who finds a best configuration first" has an answer.
For each seed:

  random    N trials x E epochs, no early stopping (the budget B = N*E trial-epochs). Its target is
            the best validation accuracy any of its epochs reached; its cost, the trial-epochs spent
            until it first got there.
  tpe+asha  The project's defaults (cnnsweep.sweep.samplers: TPE, start-up trials from
            `default_startup_trials`, multivariate) with Optuna's asynchronous successive halving at
            the rungs of `search.scheduler` (the algorithm of Ray Tune's ASHAScheduler), run until
            the same budget B is spent. Its cost: trial-epochs until it first came within
            --tolerance of random's best (never: counted as "-", and as > B in the median).

The summary also says why the ratio is what it is: epochs per configuration (against the ideal of
`ideal_epochs_per_config`, which sets the ratio to expect from --epochs and the rungs alone),
configurations needed against random search's, and how well each rung's accuracy ranks the final one.

Trials run one after another with the bare engine (`cnnsweep.engine.fit`, no Ray): Ray's per-trial
start-up (~20 s on 2 cores) would dominate trials of seconds; trial-epochs do not depend on the executor.

    .venv/bin/python benchmarks/sweep_efficiency.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field

import optuna
import torch

from cnnsweep.config import apply_overrides, validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import FitHooks, fit
from cnnsweep.sweep.samplers import build_pruner, build_sampler
from cnnsweep.sweep.space import SearchConfig, sample_overrides
from cnnsweep import metrics as M

SPACE = {  # plausible values each; only some combinations are good (lr x optimizer, width, BN)
    "optim.name": {"choice": ["adamw", "sgd", "nesterov"]},
    "train.lr": {"loguniform": [1e-4, 3e-1]},
    "model.width": {"choice": [4, 8, 16, 32]},
    "model.convs_per_stage": {"int": [1, 2]},
    "model.batch_norm": {"choice": [True, False]},
    "model.dropout": {"choice": [0.0, {"uniform": [0.1, 0.5]}]},
    "train.label_smoothing": {"uniform": [0.0, 0.2]},
    "augment.rotation": {"uniform": [0.0, 20.0]},
}


def build_base(args) -> dict:
    return {"name": "bench", "data": {"name": "digits"},
            "model": {"num_stages": 2, "head": "gap"}, "sched": {"name": args.sched},
            "optim": {"momentum": 0.0},  # sgd is plain sgd; nesterov needs momentum: set per trial below
            "train": {"epochs": args.epochs, "batch_size": 64, "amp": "off", "eval_batch_size": 2048,
                      "checkpoint_every": 10_000},
            "scaling": {"num_workers": 1}}


def trial_config(base: dict, search: SearchConfig, trial: optuna.Trial):
    overrides = sample_overrides(search, trial)
    if overrides["optim.name"] == "nesterov":
        overrides["optim.momentum"] = 0.9  # torch's nesterov requires momentum > 0
    return validate_config(apply_overrides(base, overrides))


class PruningHooks(FitHooks):
    """Report each epoch's val/acc to the Optuna trial; stop the fit when the pruner says so."""

    def __init__(self, trial: optuna.Trial, device: str, prune: bool, log: list):
        super().__init__(device)
        self.trial, self.prune, self.log = trial, prune, log

    def report(self, metrics, checkpoint_state) -> None:
        self.log.append(float(metrics[M.VAL_ACC]))
        self.trial.report(float(metrics[M.VAL_ACC]), int(metrics["epoch"]) + 1)  # step = epochs done
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned()


@dataclass
class Run:
    curve: list[float] = field(default_factory=list)  # best-so-far val/acc after each trial-epoch
    trial_curves: list[list[float]] = field(default_factory=list)  # val/acc per epoch, per trial
    trials: int = 0
    pruned: int = 0
    seconds: float = 0.0

    def epochs_to(self, target: float) -> int | None:
        return next((i + 1 for i, v in enumerate(self.curve) if v >= target), None)

    def trials_to(self, target: float) -> int | None:
        """Configurations started until the target was first reached (that one included)."""
        n = self.epochs_to(target)
        if n is None:
            return None
        spent = itertools.accumulate(len(c) for c in self.trial_curves)  # trial-epochs after each trial
        return next(i + 1 for i, total in enumerate(spent) if total >= n)


def run_search(base: dict, search: SearchConfig, dataset, study: optuna.Study, budget: int, args,
               prune: bool) -> Run:
    run, best, start = Run(), 0.0, time.perf_counter()
    while len(run.curve) < budget:
        trial = study.ask()
        accs: list[float] = []
        try:
            fit(trial_config(base, search, trial), dataset, PruningHooks(trial, args.device, prune, accs))
            study.tell(trial, max(accs))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            run.pruned += 1
        for a in accs[: budget - len(run.curve)]:
            best = max(best, a)
            run.curve.append(best)
        run.trial_curves.append(accs)
        run.trials += 1
    run.seconds = time.perf_counter() - start
    return run


def ideal_epochs_per_config(epochs: int, grace: int, eta: float) -> float:
    """Epochs one configuration costs on average under successive halving when every rung keeps exactly
    1/eta of the configurations that reach it (rungs at grace * eta^k < epochs): the segment between
    rung k and rung k+1 is trained by eta^-k of them. Random search pays `epochs` per configuration, so
    with rank-perfect rungs, and a sampler that needs as many configurations as random search to find
    one as good, the trial-epoch ratio comes to about ideal / epochs: at 9 epochs (rungs 1, 3)
    2.33 / 9 = 0.26, at 27 (rungs 1, 3, 9) 3.0 / 27 = 0.11. Imperfect rungs and asynchronous promotion
    (the first trials at a rung always go on) cost more epochs; a better sampler needs fewer configurations."""
    bounds = [0, *asha_rungs(epochs, grace, eta), epochs]
    return sum(eta ** -k * (b - a) for k, (a, b) in enumerate(zip(bounds, bounds[1:])))


def asha_rungs(epochs: int, grace: int, eta: float) -> list[int]:
    """The rungs (epochs done) before the last epoch: grace, grace*eta, ... as the Optuna pruner places them."""
    rungs = []
    while grace * int(eta) ** len(rungs) < epochs:
        rungs.append(grace * int(eta) ** len(rungs))
    return rungs


def one_seed(seed: int, base: dict, search: SearchConfig, dataset, args) -> tuple[dict, list[list[float]]]:
    """The seed's row, and random search's per-trial val/acc curves (for the rung correlations)."""
    budget = args.random_trials * args.epochs
    rand = run_search(base, search, dataset, optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed)), budget, args, prune=False)
    target = rand.curve[-1]
    # TPE's start-up trials come from its own random sampler: a different seed, or they would replay the
    # random search's first trials exactly and the comparison would start from a copy
    tpe = run_search(base, search, dataset, optuna.create_study(
        direction="maximize", sampler=build_sampler(search, seed=seed + 1000), pruner=build_pruner(search)),
        budget, args, prune=True)
    reach = tpe.epochs_to(target - args.tolerance)
    # why a ratio is what it is: (epochs per configuration) x (configurations needed), each vs random
    tpe_trials = tpe.trials_to(target - args.tolerance)
    return {"seed": seed, "budget_epochs": budget, "random_best": round(target, 4),
            "random_epochs_to_best": rand.epochs_to(target), "random_trials": rand.trials,
            "tpe_asha_best": round(tpe.curve[-1], 4), "tpe_asha_epochs_to_target": reach,
            "tpe_asha_trials": tpe.trials, "tpe_asha_pruned": tpe.pruned,
            "random_trials_to_best": rand.trials_to(target), "tpe_asha_trials_to_target": tpe_trials,
            "tpe_asha_epochs_per_trial": None if reach is None else round(reach / tpe_trials, 2),
            "ratio": None if reach is None else round(reach / rand.epochs_to(target), 3),
            "seconds": round(rand.seconds + tpe.seconds, 1)}, rand.trial_curves


def rung_rank_correlations(curves: list[list[float]], search: SearchConfig, epochs: int) -> dict[int, float]:
    """Spearman correlation, over random search's (full-length) trials, between the accuracy at each
    ASHA rung and the accuracy after the last epoch: how well a rung ranks configurations."""
    from scipy.stats import spearmanr  # scikit-learn's own dependency

    s = search.scheduler
    full = [c for c in curves if len(c) == epochs]
    if len(full) < 3:
        return {}
    return {rung: round(float(spearmanr([c[rung - 1] for c in full], [c[-1] for c in full]).statistic), 3)
            for rung in asha_rungs(epochs, s.grace_period, s.reduction_factor)}


def summarize(rows: list[dict], curves: list[list[float]], search: SearchConfig, args) -> str:
    never = args.random_trials * args.epochs + 1  # "not reached within the budget" sorts last
    rand = statistics.median(r["random_epochs_to_best"] for r in rows)
    tpe = statistics.median(r["tpe_asha_epochs_to_target"] or never for r in rows)
    ratio = statistics.median(r["ratio"] if r["ratio"] is not None else float("inf") for r in rows)
    reached = [r for r in rows if r["ratio"] is not None]
    s = search.scheduler
    ideal = ideal_epochs_per_config(args.epochs, s.grace_period, s.reduction_factor)
    per_trial = statistics.median(r["tpe_asha_epochs_per_trial"] for r in reached) if reached else float("nan")
    configs = (statistics.median(r["tpe_asha_trials_to_target"] / r["random_trials_to_best"] for r in reached)
               if reached else float("nan"))
    return (f"median trial-epochs to random's best (-{args.tolerance * 100:.1f} pt): random {rand:g}, "
            f"tpe+asha {tpe:g} ({len(reached)}/{len(rows)} seeds reached it); median ratio {ratio:.2f}; "
            f"median random best {statistics.median(r['random_best'] for r in rows):.4f}\n"
            f"why: epochs per configuration, tpe+asha {per_trial:.2f} (ideal successive halving "
            f"{ideal:.2f}, i.e. a floor ratio of {ideal / args.epochs:.2f}) vs random {args.epochs}; "
            f"configurations needed, tpe+asha / random: median {configs:.2f}; "
            f"rank correlation of rung accuracy with final accuracy (random's trials, Spearman): "
            f"{rung_rank_correlations(curves, search, args.epochs)}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=9, help="epochs per trial (E)")
    p.add_argument("--random-trials", type=int, default=16, help="budget B = random trials x epochs")
    p.add_argument("--sched", default="cosine", help="lr schedule of every trial (sched.name)")
    p.add_argument("--search", type=json.loads, default={},
                   help='SearchConfig overrides as JSON, e.g. \'{"startup_trials": 4, "multivariate": false}\'')
    p.add_argument("--tolerance", type=float, default=0.0, help="0.004 = 0.4 accuracy points (~1 image)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = build_base(args)
    search = SearchConfig.model_validate({"space": SPACE, "baseline_first": False,
                                          "num_samples": args.random_trials} | args.search)
    dataset = load_dataset(validate_config(base).data)
    print(f"device {args.device}; budget {args.random_trials} x {args.epochs} = "
          f"{args.random_trials * args.epochs} trial-epochs; search {search.model_dump(exclude={'space'})}")
    rows, curves = [], []
    for seed in args.seeds:
        row, seed_curves = one_seed(seed, base, search, dataset, args)
        rows.append(row)
        curves += seed_curves
        print(json.dumps(rows[-1]), flush=True)
    print(summarize(rows, curves, search, args))


if __name__ == "__main__":
    main()

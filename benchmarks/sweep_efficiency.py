"""Sweep efficiency: Optuna TPE + ASHA against random search without early stopping.

Same search space (the project's `search` syntax, sampled by cnnsweep.sweep.space), same budget cap
in trial-epochs, over several seeds. For each seed:

  random   N trials x E epochs, no early stopping (the budget: N*E trial-epochs). Its target is the
           best validation accuracy any of its epochs reached, and its cost the trial-epochs spent
           until it first got there.
  tpe+asha TPE (seeded, a few random start-up trials) with asynchronous successive halving
           (Optuna's SuccessiveHalvingPruner: rungs at 1 and 3 epochs, keep the best third), run
           until the same budget is spent. Its cost: trial-epochs until it first came within
           --tolerance of the random search's best.

Trials run one after another with the bare engine (`cnnsweep.engine.fit`, no Ray): on 2 CPU cores
Ray's ~20 s per-trial start-up would dominate epochs of a few seconds and measure Ray, not search.
The pruner and sampler are the ones the Ray sweeps use (Ray Tune's ASHA and OptunaSearch implement
the same algorithms); trial-epochs do not depend on the executor.

    .venv/bin/python benchmarks/sweep_efficiency.py --data ../shared/data/gtsrb --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field

import optuna
import torch

from cnnsweep.config import apply_overrides, validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import FitHooks, fit
from cnnsweep.sweep.space import SearchConfig, sample_overrides

SPACE = {  # what one would search on GTSRB: every value is plausible, only some combinations are good
    "train.lr": {"loguniform": [3e-4, 3e-2]},
    "optim.name": {"choice": ["adamw", "nesterov"]},
    "model.width": {"choice": [8, 16, 32]},
    "model.convs_per_stage": {"int": [1, 2]},
    "model.batch_norm": {"choice": [True, False]},
    "model.dropout": {"choice": [0.0, {"uniform": [0.1, 0.5]}]},
    "augment.rotation": {"uniform": [0.0, 20.0]},
}


def build_base(args) -> dict:
    data = ({"name": "gtsrb_pickle", "root": args.data, "max_train_samples": args.max_train,
             "max_val_samples": args.max_val} if args.data else {"name": "digits"})
    return {"name": "bench", "data": data, "model": {"num_stages": 3}, "sched": {"name": "onecycle"},
            # batch 32: a 3,000-image subset needs many steps per epoch to learn anything in 6 epochs
            "train": {"epochs": args.epochs, "batch_size": 32, "amp": "bf16" if args.device == "cpu" else "auto",
                      "eval_batch_size": 2048, "checkpoint_every": 10_000},
            "scaling": {"num_workers": 1}}


class PruningHooks(FitHooks):
    """Report each epoch's val/acc to the Optuna trial; stop the fit when the pruner says so."""

    def __init__(self, trial: optuna.Trial, device: str, prune: bool, log: list):
        super().__init__(device)
        self.trial, self.prune, self.log = trial, prune, log

    def report(self, metrics, checkpoint_state) -> None:
        self.log.append(float(metrics["val/acc"]))
        self.trial.report(float(metrics["val/acc"]), int(metrics["epoch"]) + 1)  # step = epochs done
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned()


@dataclass
class Run:
    curve: list[float] = field(default_factory=list)  # best-so-far val/acc after each trial-epoch
    trials: int = 0
    seconds: float = 0.0

    def epochs_to(self, target: float) -> int | None:
        return next((i + 1 for i, v in enumerate(self.curve) if v >= target), None)


def run_search(base: dict, search: SearchConfig, dataset, study: optuna.Study, budget: int, args,
               prune: bool) -> Run:
    run, best, start = Run(), 0.0, time.perf_counter()
    while len(run.curve) < budget:
        trial = study.ask()
        cfg = validate_config(apply_overrides(base, sample_overrides(search, trial)))
        accs: list[float] = []
        try:
            fit(cfg, dataset, PruningHooks(trial, args.device, prune, accs))
            study.tell(trial, max(accs))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        for a in accs[: budget - len(run.curve)]:
            best = max(best, a)
            run.curve.append(best)
        run.trials += 1
    run.seconds = time.perf_counter() - start
    return run


def one_seed(seed: int, base: dict, search: SearchConfig, dataset, args) -> dict:
    budget = args.random_trials * args.epochs
    rand = run_search(base, search, dataset, optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed)), budget, args, prune=False)
    target = rand.curve[-1]
    # TPE's start-up trials come from its own random sampler: a different seed, or they would replay the
    # random search's first trials exactly and the comparison would start from a copy
    tpe = run_search(base, search, dataset, optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed + 1000, n_startup_trials=args.startup),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)),
        budget, args, prune=True)
    reach = tpe.epochs_to(target - args.tolerance)
    return {"seed": seed, "budget_epochs": budget, "random_best": target,
            "random_epochs_to_best": rand.epochs_to(target), "random_trials": rand.trials,
            "tpe_asha_best": tpe.curve[-1], "tpe_asha_epochs_to_target": reach, "tpe_asha_trials": tpe.trials,
            "ratio": None if reach is None else reach / rand.epochs_to(target),
            "seconds": round(rand.seconds + tpe.seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="GTSRB pickle folder; default: the embedded digits")
    p.add_argument("--max-train", type=int, default=6000)
    p.add_argument("--max-val", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=6, help="epochs per trial (ASHA rungs at 1 and 3)")
    p.add_argument("--random-trials", type=int, default=12, help="budget = random trials x epochs")
    p.add_argument("--startup", type=int, default=4, help="TPE's random start-up trials")
    p.add_argument("--tolerance", type=float, default=0.002, help="0.002 = 0.2 accuracy points")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = build_base(args)
    search = SearchConfig.model_validate({"space": SPACE, "baseline_first": False})
    dataset = load_dataset(validate_config(base).data)
    print(f"device {args.device}; train {len(dataset.train.labels)}, valid {len(dataset.valid.labels)}; "
          f"budget {args.random_trials} x {args.epochs} = {args.random_trials * args.epochs} trial-epochs")
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(seed, base, search, dataset, args))
        print(json.dumps(rows[-1]), flush=True)
    ratios = [r["ratio"] for r in rows]
    reached = [r for r in ratios if r is not None]
    print(f"TPE+ASHA reached random search's best (-{args.tolerance * 100:.1f} pt) in {len(reached)}/{len(rows)} "
          f"seeds; epochs ratio TPE+ASHA / random: {', '.join('-' if r is None else f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()

"""Ray Tune layer: a sweep runs many candidates; each Tune trial drives one Ray Train run (`TorchTrainer`).

    run_sweep(cfg, output, resume=False, address=None) -> summary dict      # what `cnnsweep tune` calls

A trial is a plain Tune function (`trial.run_trial`) that builds a TorchTrainer with
`distributed.train.build_trainer` and reports each epoch back to Tune through `TuneReportCallback`
(Ray 2.60's replacement for passing a trainer to `Tuner`). Layout of an output folder (a local path,
or a URI such as s3://bucket/sweep):

    sweep.yaml        the resolved sweep (base config + search)
    tune/             Ray Tune's experiment: trial_<id>/ with progress.csv, result.json, TensorBoard events
    train/trial_<id>/ each trial's Ray Train run: its best `train.num_to_keep` checkpoints (by search.metric)
    best/             a copy of the best trial's best checkpoint (checkpoint.pt + config.yaml)
    leaderboard.csv history.csv ablation.csv curves/*.png importances.json summary.json

Modules: `trial` (the trial function), `search` (search algorithm, scheduler), `resources` (what a trial
reserves, concurrency, waiting for a sweep's reservations to be released), `storage` (paths and URIs), `progress` (live table),
`tuner` (building / restoring the Tuner), `results` (records, report, best/), `run` (the entry point).
Every point where the code touches Ray is marked `# Ray:`.
"""

from cnnsweep.distributed.tune.resources import derive_max_concurrent, trial_footprint
from cnnsweep.distributed.tune.run import plan_sweep, run_sweep

__all__ = ["derive_max_concurrent", "plan_sweep", "run_sweep", "trial_footprint"]

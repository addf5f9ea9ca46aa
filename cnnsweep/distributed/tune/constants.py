"""Names and fixed resources shared by the sweep modules (what an output folder looks like)."""

from __future__ import annotations


EXPERIMENT = "tune"  # Tune experiment folder under the output
TRAIN_RUNS = "train"  # Ray Train runs folder under the output
# The trial function only waits on its TorchTrainer, whose workers hold the real CPUs/GPUs. Reserving a
# CPU for it too would make 2 trials of 2x1-CPU workers need 6 CPUs, and on a 2-core box the workers of
# a trial could wait forever behind their own driver. Ray rejects an all-zero bundle, hence 1 byte.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 1}
SYNC_PERIOD_LOCAL_S = 5  # a local copy: cheap
SYNC_PERIOD_URI_S = 60  # an upload to object storage: each sync costs requests

# Tune reruns a failed trial this many times. A worker crash is first Ray Train's to retry
# (scaling.max_failures, from the last checkpoint); what reaches Tune is the trial driver lost with its
# node, or Train giving up. A rerun keeps the trial's Train run name, so it too continues from the last
# checkpoint. 1, not more: a trial that fails every time (a bad config) is tried
# (1 + TRIAL_MAX_FAILURES) x (1 + scaling.max_failures) times before the sweep marks it errored.
TRIAL_MAX_FAILURES = 1

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


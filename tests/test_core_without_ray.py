"""The core (config, data, transforms, models, engine, checkpoint) must import and train with ray hidden."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import sys
sys.modules['ray'] = None  # any `import ray` now raises ImportError
import torch
import cnnsweep.config, cnnsweep.data, cnnsweep.transforms, cnnsweep.models
import cnnsweep.engine, cnnsweep.checkpoint, cnnsweep.models.summary
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import fit
cfg = validate_config({"data": {"name": "digits", "max_train_samples": 200},
                       "model": {"num_stages": 1, "width": 4, "convs_per_stage": 1},
                       "train": {"epochs": 1, "batch_size": 50, "micro_batch_size": 25}})
result = fit(cfg, load_dataset(cfg.data))
assert 0.0 <= result.metrics["val/acc"] <= 1.0
assert sys.modules.get("ray") is None  # still our blocker: nothing imported the real ray
assert not [m for m in sys.modules if m.startswith("ray.")]
print("OK")
"""


def test_core_imports_and_trains_with_ray_hidden():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")

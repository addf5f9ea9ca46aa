"""`cnnsweep analyze` on Ray: the split's inference spread over the cluster's workers as Ray tasks.

Thin: the model is put in the object store once (ray.put), the images are cut into batched chunks, one
task per chunk runs the same `predict_local` as the local path, and the logits come back in order. The
rest of the analysis (metrics, plots, report) is cnnsweep.analysis, unchanged. Every Ray touch: `# Ray:`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import ray
import torch

from cnnsweep.analysis.metrics_file import AnalysisMetrics
from cnnsweep.analysis.predictions import BATCH_SIZE, predict_local

CHUNKS_PER_WORKER = 2  # a little slack so a slow worker does not hold up the last chunk alone


@ray.remote(num_cpus=1)  # Ray: one CPU per task; `--workers N` caps how many run at once
def _predict_chunk(predictor: Any, images: torch.Tensor) -> np.ndarray:
    torch.set_num_threads(1)  # one intra-op thread per task: the tasks are the parallelism
    return predict_local(predictor, images)


def ray_predict(workers: int) -> Callable[[Any, torch.Tensor], np.ndarray]:
    """A `predict` for analyze_target: chunks of >= BATCH_SIZE images, at most `workers` in flight."""

    def predict(predictor: Any, images: torch.Tensor) -> np.ndarray:
        model_ref = ray.put(predictor)  # Ray: shipped to the object store once, shared by every task
        size = max(BATCH_SIZE, -(-len(images) // (workers * CHUNKS_PER_WORKER)))
        chunks = [images[i:i + size] for i in range(0, len(images), size)]
        refs, results = [], []
        for chunk in chunks:
            if len(refs) >= workers:  # at most `workers` tasks in flight; taken back in submission order
                results.append(ray.get(refs.pop(0)))  # Ray
            refs.append(_predict_chunk.remote(model_ref, chunk))  # Ray
        results += ray.get(refs)  # Ray
        return np.concatenate(results).astype(np.float32)

    return predict


def run_analysis(target: str | Path, *, workers: int = 2, address: Optional[str] = None,
                 **kwargs: Any) -> AnalysisMetrics:
    """analyze_target with its inference on Ray (the cluster at `address`, or a private local one)."""
    from cnnsweep.analysis.run import analyze_target
    from cnnsweep.distributed.cluster import start_ray

    start_ray(address)  # Ray: connect, or start the private 127.0.0.1 instance
    return analyze_target(target, predict=ray_predict(workers), **kwargs)

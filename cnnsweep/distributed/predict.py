"""`cnnsweep predict --address`: the same `predict_chunk` as Ray tasks over chunks of the inputs.

The driver reads each chunk (file bytes or split pixels) and sends it with the task, so workers need
no shared filesystem; the .onnx bytes go into the object store once. Each task builds its own ORT
session with one thread per Ray CPU it holds. Results come back in input order; at most
`max_in_flight` chunks are pending, so driver memory stays bounded for any number of files.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import ray

from cnnsweep.distributed.cluster import start_ray
from cnnsweep.predict import InputSet, PredictError, PredictSummary, load_predictor, predict_chunk
from cnnsweep.predict.run import BATCH_SIZE, CHUNK_SIZE, ChunkResult, check_top_k, write_predictions

CPUS_PER_TASK = 1  # one ORT thread per task: many small tasks spread over the cluster's cores


@ray.remote(num_cpus=CPUS_PER_TASK)
def _predict_task(model_bytes: bytes, chunk, top_k: int, batch_size: int, skip_bad: bool) -> ChunkResult:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model_bytes)
        return predict_chunk(load_predictor(path, num_threads=CPUS_PER_TASK), chunk, top_k, batch_size, skip_bad)


def _get(ref) -> ChunkResult:
    try:
        return ray.get(ref)  # Ray
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, PredictError):  # a bad image: its one line, not the worker's traceback
            raise err.cause from None
        raise


def _ordered_results(refs_in: Iterator, max_in_flight: int) -> Iterator[ChunkResult]:
    pending: list = []
    for ref in refs_in:
        pending.append(ref)
        if len(pending) >= max_in_flight:
            yield _get(pending.pop(0))  # the oldest chunk first keeps the CSV in input order
    for ref in pending:
        yield _get(ref)


def predict_on_ray(onnx_path: str | Path, inputs: InputSet, output: str | Path, *, address: Optional[str] = None,
                   top_k: int = 1, batch_size: int = BATCH_SIZE, chunk_size: int = CHUNK_SIZE,
                   max_in_flight: int = 16, exported_from: Optional[str] = None,
                   skip_bad: bool = False) -> PredictSummary:
    check_top_k(top_k)
    started = time.perf_counter()
    start_ray(address)
    model_ref = ray.put(Path(onnx_path).read_bytes())  # Ray: once, shared by every task
    refs = (_predict_task.remote(model_ref, c, top_k, batch_size, skip_bad) for c in inputs.chunks(chunk_size))
    return write_predictions(_ordered_results(refs, max_in_flight), inputs, output, top_k=top_k,
                             started=started, exported_from=exported_from)

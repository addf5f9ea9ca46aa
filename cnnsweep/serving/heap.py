"""Keep Python's cyclic garbage collector from pausing a serving process for hundreds of milliseconds.

A replica holds ~470,000 objects from its imports (ray, torch, onnxruntime, FastAPI) and the loaded
models. A full (generation 2) collection walks all of them with the GIL held, hundreds of milliseconds
on a small machine, so every thread of the replica stops (event loop, batcher, ORT hand-off), and requests
that arrive meanwhile wait it out; the same pause in a load generator shows in its p99 (BENCHMARKS.md,
"A lean load generator and garbage-collector pauses", has the measurements).
`gc.freeze()` moves the objects alive after start-up to a permanent generation that collections skip
(the technique of Instagram's Django servers, and what the gc module documents it for); reference
counting still frees them, only cycles among them are never collected. Collections then walk only
what was allocated since (the frozen load generator's longest: 8-34 ms with its collector on).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once (garbage from start-up is not frozen), then freeze what is left; -> objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

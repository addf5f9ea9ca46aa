"""Server-side batching without Ray: concurrent single-image calls -> one ONNX Runtime run per batch.

`@serve.batch` does this inside Ray Serve's request path; the fast HTTP path (`fast_server.py`) runs
outside it, on its own event loop, so it batches here. One consumer task per model: while a batch
runs on the ORT thread (ORT releases the GIL), the loop keeps accepting requests, and the next batch
is whatever queued meanwhile. So under load batches fill without waiting; `wait_s` is paid only when
the queue is shorter than a batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from typing import Callable, Optional

import numpy as np

from cnnsweep.serving.model import ServedModel
from cnnsweep.serving.settings import ServeSettings


def split_rows(out: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """A batch's output -> one block of rows per request, in order (`parts`: the requests' inputs)."""
    return np.split(out, np.cumsum([len(x) for x in parts])[:-1])


class MicroBatcher:
    """`await batcher(x)`: x (N x ...) joins a batch of at most `max_batch_size` images; returns its rows
    of `run(concatenated batch)`. A request is never split; one larger than the limit runs alone."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch_size: int, wait_s: float,
                 executor: Optional[Executor] = None):
        self.run, self.max_batch_size, self.wait_s, self.executor = run, max_batch_size, wait_s, executor
        self._queue: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._queued = 0  # images waiting
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self._wakeup: Optional[asyncio.Event] = None  # something is queued
        self._full: Optional[asyncio.Event] = None  # a whole batch is queued

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._task.done():  # first call on this loop: events and task belong to it
            self._loop, self._queue, self._queued = loop, deque(), 0
            self._wakeup, self._full = asyncio.Event(), asyncio.Event()
            self._task = loop.create_task(self._consume(), name="cnnsweep-batcher")
        future = loop.create_future()
        self._queue.append((x, future))
        self._queued += len(x)
        self._wakeup.set()
        if self._queued >= self.max_batch_size:
            self._full.set()
        return await future

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The oldest requests that fit in one batch (at least one)."""
        items, size = [], 0
        while self._queue and (not items or size + len(self._queue[0][0]) <= self.max_batch_size):
            x, future = self._queue.popleft()
            items.append((x, future))
            size += len(x)
        self._queued -= size
        if self._queued < self.max_batch_size:
            self._full.clear()
        if not self._queue:
            self._wakeup.clear()
        return items

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self._queued < self.max_batch_size and self.wait_s > 0:
                try:  # a short wait for the batch to fill (at low load this is pure added latency)
                    await asyncio.wait_for(self._full.wait(), self.wait_s)
                except asyncio.TimeoutError:
                    pass
            items = [(x, f) for x, f in self._take() if not f.cancelled()]  # clients that gave up: skipped
            if items:
                await self._run(loop, items)

    async def _run(self, loop: asyncio.AbstractEventLoop, items: list) -> None:
        xs = [x for x, _ in items]
        try:
            out = await loop.run_in_executor(self.executor, self.run, xs[0] if len(xs) == 1 else np.concatenate(xs))
        except Exception as err:  # every request of the batch gets the error (the app answers 500)
            for _, future in items:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), part in zip(items, split_rows(out, xs)):
            if not future.done():
                future.set_result(part)


class BatchingHub:
    """The `Hub` the HTTP app needs (settings, models, `infer`), batching with `MicroBatcher`s that
    share one ORT thread: batches of different models run one after another."""

    def __init__(self, settings: ServeSettings, models: dict[str, ServedModel], executor: Executor):
        self.settings, self.models = settings, models
        wait = settings.batch_wait_timeout_s
        self._batchers = {name: MicroBatcher(m.run, settings.max_batch_size, wait, executor)
                          for name, m in models.items()}
        self._pixel_batchers = {name: MicroBatcher(m.run_pixels, settings.max_batch_size, wait, executor)
                                for name, m in models.items()}

    async def infer(self, name: str, x: np.ndarray) -> np.ndarray:
        """Normalized float32 N x C x H x W -> logits N x K, batched with concurrent requests."""
        return await self._batchers[name](x)

    async def infer_pixels(self, name: str, pixels: np.ndarray) -> np.ndarray:
        """One uint8 upload of the model's native shape -> logits 1 x K (preprocessed per batch)."""
        return await self._pixel_batchers[name](pixels[None])

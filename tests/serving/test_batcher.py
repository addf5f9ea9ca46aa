"""MicroBatcher (the fast HTTP front's batching, no Ray): concurrent calls share runs, rows come back to
the right caller, a failing run fails only its own batch, and callers that gave up are skipped."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cnnsweep.serving.batcher import MicroBatcher


class Recorder:
    """run(x) = x * 10, recording each batch's size; optionally blocks until released."""

    def __init__(self, fail_when=None):
        self.sizes, self.fail_when = [], fail_when
        self.release = threading.Event()
        self.release.set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.release.wait(10)
        self.sizes.append(len(x))
        if self.fail_when is not None and self.fail_when(x):
            raise ValueError("bad batch")
        return x * 10


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_calls_share_batches_and_get_their_own_rows():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=4, wait_s=0.05, executor=ThreadPoolExecutor(1))

    async def main():
        return await asyncio.gather(*(batcher(np.full((1, 2), i, np.float32)) for i in range(10)))

    out = _run(main())
    assert [o.tolist() for o in out] == [[[10.0 * i] * 2] for i in range(10)]
    assert sum(run.sizes) == 10 and max(run.sizes) <= 4 and len(run.sizes) == 3, run.sizes  # 4 + 4 + 2


def test_a_lone_call_waits_at_most_wait_s_and_large_requests_are_never_split():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=4, wait_s=0.01, executor=None)

    async def main():
        alone = await asyncio.wait_for(batcher(np.ones((1, 1), np.float32)), 2)
        big = await asyncio.gather(batcher(np.ones((6, 1), np.float32)), batcher(np.ones((3, 1), np.float32)))
        return alone, big

    alone, (six, three) = _run(main())
    assert alone.shape == (1, 1) and six.shape == (6, 1) and three.shape == (3, 1)
    assert run.sizes == [1, 6, 3]  # 6 > max runs alone; 3 cannot join it


def test_while_a_batch_runs_the_next_one_fills_without_waiting():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=8, wait_s=5.0, executor=ThreadPoolExecutor(1))

    async def main():
        run.release.clear()
        first = asyncio.ensure_future(batcher(np.ones((8, 1), np.float32)))  # full: runs at once, then blocks
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher(np.ones((1, 1), np.float32))) for _ in range(8)]
        await asyncio.sleep(0.05)
        run.release.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 3)  # far less than wait_s: the queue was full

    _run(main())
    assert run.sizes == [8, 8]


def test_a_failing_batch_fails_its_callers_only():
    run = Recorder(fail_when=lambda x: bool((x < 0).any()))
    batcher = MicroBatcher(run, max_batch_size=2, wait_s=0.05, executor=None)

    async def main():
        bad = await asyncio.gather(batcher(-np.ones((1, 1), np.float32)), batcher(np.ones((1, 1), np.float32)),
                                   return_exceptions=True)
        good = await batcher(np.full((1, 1), 2, np.float32))
        return bad, good

    bad, good = _run(main())
    assert all(isinstance(b, ValueError) for b in bad)
    assert good.tolist() == [[20.0]]


def test_callers_that_gave_up_are_not_run():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=4, wait_s=0.2, executor=None)

    async def main():
        gone = asyncio.ensure_future(batcher(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0)
        gone.cancel()
        kept = await batcher(np.full((1, 1), 3, np.float32))
        with pytest.raises(asyncio.CancelledError):
            await gone
        return kept

    assert _run(main()).tolist() == [[30.0]]
    assert run.sizes == [1]


def test_a_new_event_loop_gets_a_working_batcher():
    """Test clients and scripts may call from one loop, then another: the first loop's task is gone."""
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=4, wait_s=0.01, executor=None)
    for i in range(3):  # asyncio.run: a fresh loop each time
        assert _run(asyncio.wait_for(batcher(np.full((1, 1), i, np.float32)), 5)).tolist() == [[10.0 * i]]

"""evaluate() across 2 gloo processes: strided shards, padding of the last shard, all-gather: every rank
returns exactly the single-process metrics, for a split size that does not divide by the world size."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from cnnsweep.engine.evaluate import evaluate

N, CLASSES = 23, 5  # 23 = 12 + 11: rank 1's shard is padded by one repeated sample


def _split():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES))
    return model, images, labels


def _metrics(rank: int = 0, world_size: int = 1) -> dict:
    model, images, labels = _split()
    return evaluate(model, images, labels, lambda x: x.float() / 255, num_classes=CLASSES, prefix="val",
                    batch_size=4, rank=rank, world_size=world_size)


def _worker(rank: int, world_size: int, init: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    try:
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(_metrics(rank, world_size), f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_return_the_single_process_metrics(tmp_path):
    single = _metrics()
    # fork: the children inherit the imported modules (a spawn re-imports torch + sklearn: ~10 s each)
    mp.start_processes(_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2,
                       join=True, start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # every worker reports the same numbers
    assert ranks[0].keys() == single.keys()
    for k, v in single.items():
        assert ranks[0][k] == pytest.approx(v, abs=1e-6), k  # the padded duplicate is not counted twice


def test_single_process_metrics_match_a_direct_computation():
    model, images, labels = _split()
    with torch.no_grad():
        logits = model(images.float() / 255)
    m = _metrics()
    assert m["val/acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert m["val/loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)

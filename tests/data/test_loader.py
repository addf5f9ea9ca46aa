"""DeviceBatches: seeded epochs, disjoint equal DDP shards, batches gathered on the device."""

from __future__ import annotations

import functools

import pytest
import torch

from cnnsweep.data import DeviceBatches, build_epoch_indices
from cnnsweep.data.loader import shard_for_eval

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(n: int, device: str = "cpu"):
    """Image i is filled with i % 256 and its label is i, so a batch reveals which items it holds."""
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return images.to(device), torch.arange(n).to(device)


def _epoch(batches: DeviceBatches, epoch: int) -> torch.Tensor:
    batches.set_epoch(epoch)
    return torch.cat([y.cpu() for _, y in batches])


@pytest.mark.parametrize("n, world", [(100, 2), (101, 3), (7, 4)])
def test_ranks_take_disjoint_equal_shards_that_cover_the_data(n, world):
    images, labels = _data(n)
    shards = [_epoch(DeviceBatches(images, labels, 8, seed=1, rank=r, world_size=world), 2)
              for r in range(world)]
    lengths = {len(s) for s in shards}
    assert lengths == {-(-n // world)}  # equal: every rank runs the same number of steps
    everything = torch.cat(shards)
    assert torch.equal(everything.unique(), torch.arange(n))  # covered
    assert len(everything) - n == (-n) % world  # the only repeats are the wrap-around padding
    steps = {len(DeviceBatches(images, labels, 8, rank=r, world_size=world)) for r in range(world)}
    assert len(steps) == 1


def test_order_depends_on_seed_and_epoch_only():
    images, labels = _data(64)
    a = DeviceBatches(images, labels, 10, seed=5)
    b = DeviceBatches(images, labels, 10, seed=5)
    assert torch.equal(_epoch(a, 3), _epoch(b, 3))
    assert not torch.equal(_epoch(a, 3), _epoch(a, 4))
    assert not torch.equal(_epoch(a, 0), _epoch(DeviceBatches(images, labels, 10, seed=6), 0))
    assert not torch.equal(_epoch(DeviceBatches(images, labels, 10, seed=0), 1),
                           _epoch(DeviceBatches(images, labels, 10, seed=1), 0))


@pytest.mark.parametrize("device", DEVICES)
def test_batches_gather_the_right_images_on_the_device(device):
    images, labels = _data(300, device)
    batches = DeviceBatches(images, labels, 64, seed=0)
    assert len(batches) == 5
    sizes = []
    for x, y in batches:
        assert x.device.type == device and x.dtype == torch.uint8
        assert torch.equal(x[:, 0, 0, 0].long(), y % 256)  # image and label stay paired
        sizes.append(len(y))
    assert sizes == [64, 64, 64, 64, 44]
    dropping = DeviceBatches(images, labels, 64, drop_last=True)
    assert len(dropping) == 4 and [len(y) for _, y in dropping] == [64] * 4


def test_no_shuffle_keeps_order():
    images, labels = _data(10)
    assert _epoch(DeviceBatches(images, labels, 3, shuffle=False), 5).tolist() == list(range(10))


def test_indices_fn_balances_and_passes_the_augment_mask():
    labels = torch.tensor([0] * 30 + [1] * 6)
    images = torch.zeros(36, 1, 2, 2, dtype=torch.uint8)
    fn = functools.partial(build_epoch_indices, labels, "oversample_augment")
    per_rank = [DeviceBatches(images, labels, 7, seed=2, rank=r, world_size=2, indices_fn=fn)
                for r in range(2)]
    ys, masks = [], []
    for b in per_rank:
        for _, y, m in b.batches_with_mask():
            ys.append(y)
            masks.append(m)
    y, m = torch.cat(ys), torch.cat(masks)
    assert y.bincount().tolist() == [30, 30] and int(m.sum()) == 24 and bool(m[y == 0].any()) is False


def test_shard_for_eval_counts_each_item_once():
    for n, world in [(10, 3), (2, 4), (4320, 2)]:
        parts = [list(range(n))[shard_for_eval(n, r, world)] for r in range(world)]
        assert sum(parts, []) == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_bad_arguments():
    images, labels = _data(4)
    with pytest.raises(ValueError):
        DeviceBatches(images, labels[:3], 2)
    with pytest.raises(ValueError):
        DeviceBatches(images, labels, 2, rank=2, world_size=2)

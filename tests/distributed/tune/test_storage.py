"""copy_tree to a local folder (the sweep's best/): replaced whole, never left half-copied."""

from __future__ import annotations

import os

import pytest

from cnnsweep.distributed.tune.storage import copy_tree


def test_copy_tree_replaces_the_folder(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "best"
    src.mkdir()
    (src / "checkpoint.pt").write_bytes(b"new")
    dst.mkdir()
    (dst / "stale.txt").write_text("from the last sweep")
    copy_tree(str(src), str(dst))
    assert sorted(p.name for p in dst.iterdir()) == ["checkpoint.pt"] and (dst / "checkpoint.pt").read_bytes() == b"new"


def test_a_failed_copy_leaves_the_previous_best(tmp_path, disk_full_after):
    src, dst = tmp_path / "src", tmp_path / "best"
    src.mkdir()
    (src / "checkpoint.pt").write_bytes(os.urandom(64 * 1024))
    dst.mkdir()
    (dst / "checkpoint.pt").write_bytes(b"previous best")
    with disk_full_after(4096), pytest.raises(OSError):  # the disk fills up mid-copy
        copy_tree(str(src), str(dst))
    assert (dst / "checkpoint.pt").read_bytes() == b"previous best"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "src"]  # no partial copy left beside it

"""Atomic writes: a kill at any point leaves the old file (or folder) or the new one, never a mix."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from cnnsweep import atomic
from cnnsweep.atomic import (atomic_dir, atomic_path, atomic_write, atomic_write_bytes, atomic_write_json,
                             atomic_write_text, replace_dir, restore_dir)


class Killed(BaseException):
    """Stands in for the process dying: not an Exception, so nothing catches it by accident."""


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_text_and_json(tmp_path):
    atomic_write_text(tmp_path / "sub" / "a.txt", "hello\n")
    atomic_write_json(tmp_path / "b.json", {"val/acc": 0.5}, sort_keys=True)
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello\n"
    assert json.loads((tmp_path / "b.json").read_text()) == {"val/acc": 0.5}
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_kill_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"epoch": 1})

    def die(*args):
        raise Killed

    monkeypatch.setattr(atomic.os, "replace", die)
    with pytest.raises(Killed):
        atomic_write_json(path, {"epoch": 2})
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert _leftovers(tmp_path) == []  # the temp file is cleaned up


def test_kill_while_writing_leaves_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")

    def half_then_die(f):
        f.write(b"ne")
        raise Killed

    with pytest.raises(Killed):
        atomic_write(path, half_then_die)
    assert path.read_bytes() == b"old"


def test_unserializable_json_leaves_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, [1])
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})
    assert json.loads(path.read_text()) == [1]


def test_temp_names_are_unique_per_write(tmp_path, monkeypatch):
    names = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (names.append(a), real(a, b)))
    for _ in range(2):
        atomic_write_text(tmp_path / "a", "x")
    assert len(set(names)) == 2


def _make(folder, text):
    folder.mkdir()
    (folder / "checkpoint.pt").write_text(text)
    (folder / "config.yaml").write_text(text)


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    best = tmp_path / "best"
    _make(best, "old")
    (best / "stale.onnx").write_text("old")
    with atomic_dir(best) as tmp:
        (tmp / "checkpoint.pt").write_text("new")
    assert sorted(p.name for p in best.iterdir()) == ["checkpoint.pt"]
    assert (best / "checkpoint.pt").read_text() == "new" and _leftovers(tmp_path) == []


def test_error_while_building_the_folder_leaves_the_old_one(tmp_path):
    best = tmp_path / "best"
    _make(best, "old")
    with pytest.raises(Killed):
        with atomic_dir(best) as tmp:
            (tmp / "checkpoint.pt").write_text("half")
            raise Killed
    assert (best / "checkpoint.pt").read_text() == "old" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_kill_during_the_folder_swap_leaves_old_or_new(tmp_path, monkeypatch, exchange):
    best, new = tmp_path / "best", tmp_path / ".best.new"
    _make(best, "old")
    _make(new, "new")
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def die_on_second(src, dst):
        if str(src) == str(new):
            raise Killed  # the process dies after moving the old folder aside
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", die_on_second)
    with pytest.raises(Killed) if not exchange else contextlib.nullcontext():
        replace_dir(new, best)
    monkeypatch.undo()
    restore_dir(best)  # what the next replace_dir (or a reader) runs first
    assert (best / "checkpoint.pt").read_text() == ("new" if exchange else "old")
    assert (best / "config.yaml").read_text() == (best / "checkpoint.pt").read_text()  # never a mix


def test_a_full_disk_mid_write_leaves_the_old_file_and_no_temp(tmp_path, disk_full_after):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old\n")
    with pytest.raises(OSError), disk_full_after(4096):
        atomic_write_bytes(path, b"x" * 1_000_000)
    assert path.read_text() == "old\n" and _leftovers(tmp_path) == []


def test_atomic_path_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"good")
    with pytest.raises(ValueError), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_bytes(b"half")
        raise ValueError("the new file failed its check")
    assert path.read_bytes() == b"good" and _leftovers(tmp_path) == []
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new" and _leftovers(tmp_path) == []


def test_atomic_path_whose_writer_replaced_the_temp_still_cleans_up(tmp_path):
    path = tmp_path / "model.onnx"
    with pytest.raises(Killed), atomic_path(path) as tmp:
        atomic_write_bytes(tmp, b"written by a nested atomic writer")
        raise Killed
    assert not path.exists() and _leftovers(tmp_path) == []

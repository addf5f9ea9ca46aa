"""The output folder lock: a second holder is refused at once; the lock ends with its holder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnsweep.config import ConfigError
from cnnsweep.lockfile import LOCK_NAME, folder_entries, hold_output_lock


def test_second_holder_is_refused_and_the_lock_is_released_after(tmp_path):
    out = tmp_path / "run"
    with hold_output_lock(out) as lock:
        assert lock == out / LOCK_NAME and lock.is_file()
        with pytest.raises(ConfigError, match=r"in use by another cnnsweep process \(pid \d+ on .+\)"):
            with hold_output_lock(out):
                pass
    with hold_output_lock(out):  # released when the block ended
        pass


def test_another_process_holding_the_lock_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    code = (f"import sys, time; from cnnsweep.lockfile import hold_output_lock\n"
            f"with hold_output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="in use"):
            with hold_output_lock(out):
                pass
    finally:
        proc.kill()  # SIGKILL: no cleanup runs in the holder
        proc.wait()
    with hold_output_lock(out):  # the kernel dropped the dead holder's lock
        pass


def test_folder_entries_ignore_the_lock_file(tmp_path):
    assert folder_entries(tmp_path / "missing") == []
    with hold_output_lock(tmp_path):
        assert folder_entries(tmp_path) == []
        (tmp_path / "config.yaml").write_text("x: 1\n")
        assert folder_entries(tmp_path) == ["config.yaml"]


def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    out, victim = tmp_path / "run", tmp_path / "precious.txt"
    out.mkdir()
    victim.write_text("keep me\n")
    (out / LOCK_NAME).symlink_to(victim)  # planted by someone who can write the output folder
    with pytest.raises(ConfigError, match="symlink"):
        with hold_output_lock(out):
            pass
    assert victim.read_text() == "keep me\n"  # not truncated, not overwritten with a pid


def test_a_hard_linked_lock_file_is_refused_and_its_other_name_left_alone(tmp_path):
    out, victim = tmp_path / "run", tmp_path / "precious.txt"
    out.mkdir()
    victim.write_text("keep me\n")
    (out / LOCK_NAME).hardlink_to(victim)
    with pytest.raises(ConfigError, match="not a plain file"):
        with hold_output_lock(out):
            pass
    assert victim.read_text() == "keep me\n"

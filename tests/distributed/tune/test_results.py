"""summary.json: a failed rewrite leaves the previous summary."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnsweep.distributed.tune.results import save_summary


def test_summary_json_survives_a_failed_rewrite(tmp_path, disk_full_after):
    plan = SimpleNamespace(output=str(tmp_path))  # a local output: nothing is uploaded
    save_summary(plan, {"best": {"trial_id": "a"}}, tmp_path)
    before = (tmp_path / "summary.json").read_bytes()
    with disk_full_after(len(before) + 10), pytest.raises(OSError):
        save_summary(plan, {"best": {"trial_id": "b"}, "notes": ["x" * 100] * 50}, tmp_path)
    assert (tmp_path / "summary.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

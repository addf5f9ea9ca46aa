"""The end-of-sweep hook writes the ensemble `search.export: {top: K, ensemble: true}` asks for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnsweep.distributed.tune.run import _export_top
from cnnsweep.sweep.space import ExportSpec
from cnnsweep.sweep.summary import SweepSummary, TrialCounts

pytestmark = pytest.mark.slow


def _summary() -> SweepSummary:
    return SweepSummary(trials=TrialCounts(), output="o", report_dir="r", files=[], importances={},
                        metric="val/acc", mode="max", algorithm="grid", max_concurrent=1)


def test_export_top_ensemble_into_the_summary(tiny_gtsrb_sweep):
    plan = SimpleNamespace(search=SimpleNamespace(export=ExportSpec(top=2, ensemble=True)), output=str(tiny_gtsrb_sweep))
    summary = _summary()
    _export_top(plan, summary)
    ens = summary.ensemble
    assert ens.verification["ok"] and len(ens.members) == 2 and summary.notes == []
    assert ens.onnx == str(tiny_gtsrb_sweep / "exports" / "ensemble_top2.onnx") and 0 <= ens.metrics["val/acc"] <= 1


def test_plain_true_exports_nothing_more(tiny_gtsrb_sweep):
    summary = _summary()
    _export_top(SimpleNamespace(search=SimpleNamespace(export=True), output=str(tiny_gtsrb_sweep)), summary)
    assert summary == _summary()

"""metrics.json of `cnnsweep analyze` is written and read through AnalysisMetrics: round trip, versions,
unknown keys (no model or data needed: the file's shape is what is tested)."""

from __future__ import annotations

import json

import pytest

from cnnsweep.analysis import AnalysisError
from cnnsweep.analysis.run import write_report
from cnnsweep.analysis.metrics_file import FORMAT_VERSION, METRICS_FILE, load_metrics, save_metrics


def _write(tmp_path, raw) -> str:
    path = tmp_path / METRICS_FILE
    path.write_text(json.dumps(raw))
    return str(path)


def test_round_trip(tmp_path, tiny_metrics):
    metrics = tiny_metrics(atlas={"models": ["a", "b"], "ensemble_accuracy": 0.9})
    save_metrics(metrics, tmp_path / METRICS_FILE)
    raw = json.loads((tmp_path / METRICS_FILE).read_text())
    assert raw["version"] == FORMAT_VERSION and raw["explain"] is None
    loaded = load_metrics(tmp_path)  # the report folder will do
    assert loaded == metrics
    assert loaded.models[0].summary.accuracy == 0.75 and loaded.target.kind == "checkpoint"
    assert loaded.atlas["ensemble_accuracy"] == 0.9  # a section's part is its own free-form map


@pytest.mark.parametrize("change, words", [
    (lambda raw: raw | {"version": FORMAT_VERSION + 1}, f"format version {FORMAT_VERSION + 1}, but this cnnsweep "
                                                        f"reads version {FORMAT_VERSION}: run `cnnsweep analyze` again"),
    (lambda raw: raw | {"version": None}, "format version None"),
    (lambda raw: {k: v for k, v in raw.items() if k != "version"}, "no format version: written by an older"),
    (lambda raw: raw | {"extra": 1}, "not an analysis metrics file \\(extra: unknown key\\)"),
    (lambda raw: raw | {"models": [raw["models"][0] | {"summary": raw["models"][0]["summary"] | {"top3_accuracy": 1}}]},
     "models.0.summary.top3_accuracy: unknown key"),
    (lambda raw: raw | {"target": {"kind": "folder", "path": "x"}}, "target.kind: Input should be 'sweep'"),
    (lambda raw: raw | {"models": []}, "models: List should have at least 1 item"),
    (lambda raw: "metrics", "not an analysis metrics file \\(a JSON str"),
])
def test_another_version_or_shape_is_one_analysis_error_line(tmp_path, tiny_metrics, change, words):
    path = _write(tmp_path, change(tiny_metrics().to_json_dict()))
    with pytest.raises(AnalysisError, match=words) as err:
        load_metrics(path)
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_a_missing_or_broken_file_is_one_line(tmp_path):
    with pytest.raises(AnalysisError, match="cannot be read as analysis metrics \\(FileNotFoundError"):
        load_metrics(tmp_path)
    (tmp_path / METRICS_FILE).write_bytes(b"\xff{")
    with pytest.raises(AnalysisError, match="cannot be read as analysis metrics \\(UnicodeDecodeError"):
        load_metrics(tmp_path)


def test_the_page_is_drawn_from_what_the_file_holds(tmp_path, tiny_metrics, monkeypatch):
    from cnnsweep.analysis import run as analyze

    seen = []
    monkeypatch.setattr(analyze, "build_sections", lambda m: seen.append(m) or [])
    write_report(tiny_metrics(), tmp_path)
    assert seen == [json.loads((tmp_path / METRICS_FILE).read_text())]
    assert "checkpoint.pt (valid split)" in (tmp_path / "report.html").read_text()

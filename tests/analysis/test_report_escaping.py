"""report.html shows every string from a file (class names, trial ids, factors, file names) as text."""

from __future__ import annotations

from cnnsweep.analysis import sections as S
from cnnsweep.analysis.html import figure, page, table, write_page

EVIL = '<script>alert(1)</script>"\'&'
UNDECODABLE = b"caf\xe9".decode("utf-8", "surrogateescape")


def _assert_escaped(html: str) -> None:
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_per_class_section_escapes_the_model_name():
    m = {"per_class": {"model": EVIL, "table": [], "confused_pairs": [], "galleries": [],
                       "figures": {"confusion_counts": "a.png", "confusion_normalized": "b.png"}}}
    _assert_escaped(S.per_class_section(m))


def test_ablation_section_escapes_factor_and_values():
    value = {"value": EVIL, "reference": True, "num_trials": 1, "accuracy_mean": 0.5, "accuracy_std": None,
             "accuracy_best": 0.5}
    html = S.ablation_section({"num_trials": 1, "factors": [{"factor": EVIL, "values": [value], "figure": "f.png"}]})
    _assert_escaped(html)
    assert "<h3><script>" not in html


def test_model_card_note_is_escaped():
    card = {"memory_bytes": {"predict_one": {}, "train_batch": {}}, "params": {"total": 1, "trainable": 1},
            "flops": {"predict_one": 1, "train_batch": 1}, "batch_size": 2, "optimizer": EVIL, "note": EVIL}
    _assert_escaped(S.model_card_section({"model_card": card}))


def test_headers_attributes_and_titles_are_escaped():
    html = page(EVIL, [(EVIL, EVIL, table([EVIL], [[EVIL]]) + figure(EVIL, EVIL))])
    assert "<script>alert" not in html.replace("<script>document", "")
    assert 'id="&lt;script' in html and 'href="#&lt;script' in html


def test_undecodable_file_names_do_not_break_the_page(tmp_path):
    path = write_page(tmp_path, UNDECODABLE, [("s", UNDECODABLE, table([UNDECODABLE], [[UNDECODABLE]]))])
    text = path.read_text(encoding="utf-8")
    assert "caf\\xe9" in text

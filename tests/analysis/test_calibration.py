"""Calibration: ECE against a by-hand computation, temperature scaling recovers a known temperature, and
the analysis report's section, figure and metrics.json keys on a real tiny digits model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnsweep.analysis.calibration import calibration_report
from cnnsweep.analysis.predictions import Predictions
from cnnsweep.engine.calibration import (MAX_TEMPERATURE, MIN_TEMPERATURE, clamp_temperature,
                                         expected_calibration_error, fit_temperature, nll, softmax)


def _ece_by_hand(probs, labels, bins=15):
    """Guo et al.'s definition, looped: bins (lo, hi], weight |B|/n, |acc(B) - conf(B)|."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        sel = [i for i in range(len(labels)) if lo < conf[i] <= hi]
        if sel:
            acc = np.mean([pred[i] == labels[i] for i in sel])
            total += len(sel) / len(labels) * abs(acc - np.mean(conf[sel]))
    return total


def _overconfident(n=20000, k=10, true_t=2.5, seed=0):
    """Labels drawn from softmax(g); the "model" reports g * true_t, so the right temperature is true_t."""
    rng = np.random.default_rng(seed)
    g = rng.normal(0, 2.0, (n, k))
    p = softmax(g)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return (g * true_t).astype(np.float32), labels


def test_ece_two_bins_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 1])
    # bins of 2: (0.5, 1]: confidences 0.9, 0.8, 0.7, 0.55, right 3 of 4 -> |0.75 - 0.7375| = 0.0125
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.0125)


def test_ece_matches_the_definition_on_random_predictions():
    logits, labels = _overconfident(n=3000)
    probs = softmax(logits)
    assert expected_calibration_error(probs, labels) == pytest.approx(_ece_by_hand(probs, labels), abs=1e-12)


def test_temperature_scaling_recovers_the_true_temperature():
    logits, labels = _overconfident(true_t=2.5)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    assert nll(logits, labels, t) < nll(logits, labels)
    before, after = (expected_calibration_error(softmax(logits, x), labels) for x in (1.0, t))
    assert after < 0.02 < before
    under, labels_u = _overconfident(true_t=0.5, seed=1)  # underconfident: T < 1 sharpens
    assert fit_temperature(under, labels_u) == pytest.approx(0.5, rel=0.05)


def test_runaway_fits_are_bounded():
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 50, np.float32)
    labels = np.array([0, 1] * 50)  # every image right: NLL keeps falling as T -> 0, until it is flat
    t = fit_temperature(logits, labels)
    assert MIN_TEMPERATURE <= t < 1 and nll(logits, labels, t) < nll(logits, labels)
    assert fit_temperature(logits * 1e4, labels) >= MIN_TEMPERATURE  # saturated softmax: no NaN, in bounds
    assert fit_temperature(np.zeros((0, 3), np.float32), np.zeros(0, np.int64)) == 1.0
    assert clamp_temperature(float("nan")) == 1.0 and clamp_temperature(1e9) == MAX_TEMPERATURE


class _Fake:
    name = "fake"


def test_report_fits_on_validation_and_measures_on_the_split(tmp_path):
    logits, labels = _overconfident(n=4000, true_t=3.0)
    test = Predictions(labels[:2000], logits[:2000], 0.0)
    valid = Predictions(labels[2000:], logits[2000:], 0.0)
    c = calibration_report(_Fake(), None, "valid", valid, tmp_path)  # fit on the analyzed split: said so
    assert "optimistic" in c["notes"][0] and c["num_fit"] == 2000
    c = calibration_report(_Fake(), None, "test", test, tmp_path)  # no dataset.valid: T = 1, said so
    assert c["temperature"] == 1.0 and c["ece_after"] == c["ece_before"] and c["fit_split"] is None
    assert (tmp_path / "reliability.png").stat().st_size > 0


@pytest.mark.slow
def test_analyze_reports_calibration(digits_checkpoint, tmp_path):
    from cnnsweep.analysis.run import analyze_target

    m = analyze_target(digits_checkpoint, split="valid", output=tmp_path, explain=False)
    c = json.loads((tmp_path / "metrics.json").read_text())["calibration"]
    assert c == json.loads(json.dumps(m.calibration))
    assert MIN_TEMPERATURE <= c["temperature"] <= MAX_TEMPERATURE and c["bins"] == 15
    assert c["nll_after"] <= c["nll_before"] + 1e-9  # T minimises NLL on this very split
    assert sum(r["count"] for r in c["reliability"]["before"]) == c["num_images"] == m.data.num_images
    assert (tmp_path / c["figure"]).is_file()
    html = (tmp_path / "report.html").read_text()
    assert "Calibration" in html and c["figure"] in html

"""The report's calibration part: reliability diagram, expected calibration error (15 equal-width bins)
and temperature scaling fitted on the validation split, measured on the analyzed split.

The numbers come from cnnsweep.engine.calibration, the code the export uses to fit the temperature it
stores in the .onnx file, so the report's T is the exported model's T (same model, same split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnsweep.analysis.html import escape, figure, fmt, notes, table
from cnnsweep.analysis.plotting import DPI, write_figure
from cnnsweep.analysis.predictions import PredictFn, Predictions, predict_split
from cnnsweep.engine.calibration import calibration_summary, fit_temperature, reliability_bins, softmax

FIGURE = "reliability.png"


def _fit_logits(candidate: Any, dataset: Any, split: str, analyzed: Predictions,
                predict: Optional[PredictFn]) -> tuple[Optional[Predictions], list[str]]:
    """Predictions on the validation split (reused when that is the analyzed split), and notes."""
    if split == "valid":
        return analyzed, ["the temperature was fitted on the analyzed (validation) split itself: the ECE "
                          "after scaling is optimistic"]
    valid = getattr(dataset, "valid", None)
    if valid is None or not len(valid.labels):
        return None, ["no validation split: no temperature fitted (T = 1)"]
    return predict_split(candidate.predictor, valid.images, valid.labels, predict), []


def _draw(ax: Any, rows: list[dict], title: str) -> None:
    used = [r for r in rows if r["count"]]
    width = rows[0]["hi"] - rows[0]["lo"]
    ax.bar([r["lo"] for r in used], [r["accuracy"] for r in used], width=width, align="edge",
           color="tab:blue", edgecolor="black", linewidth=0.5, label="accuracy")
    ax.bar([r["lo"] for r in used], [r["confidence"] - r["accuracy"] for r in used], width=width,
           bottom=[r["accuracy"] for r in used], align="edge", color="tab:red", alpha=0.35,
           label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy", title=title)
    ax.legend(loc="upper left", fontsize=7)


def reliability_diagram(before: list[dict], after: list[dict], c: dict[str, Any], path: Path) -> Path:
    """Two panels, before and after temperature scaling: accuracy per confidence bin vs the diagonal."""
    fig = Figure(figsize=(9, 4.2), dpi=DPI)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _draw(left, before, f"before: ECE {c['ece_before']:.4f}")
    _draw(right, after, f"after T = {c['temperature']:.3f}: ECE {c['ece_after']:.4f}")
    fig.tight_layout()
    return write_figure(fig, path)


def calibration_report(candidate: Any, dataset: Any, split: str, analyzed: Predictions, out: Path,
                       predict: Optional[PredictFn] = None) -> dict[str, Any]:
    """metrics.json's `calibration`: T fitted on the validation split; ECE/NLL before and after on `split`."""
    fit_on, notes = _fit_logits(candidate, dataset, split, analyzed, predict)
    t = fit_temperature(fit_on.logits, fit_on.labels) if fit_on is not None else 1.0
    c = calibration_summary(analyzed.logits, analyzed.labels, t)
    before = reliability_bins(softmax(analyzed.logits), analyzed.labels, c["bins"])
    after = reliability_bins(softmax(analyzed.logits, t), analyzed.labels, c["bins"])
    reliability_diagram(before, after, c, out / FIGURE)
    return {"model": candidate.name, "split": split, "fit_split": "valid" if fit_on is not None else None,
            "num_fit": int(len(fit_on.labels)) if fit_on is not None else 0, **c, "notes": notes,
            "reliability": {"before": before, "after": after}, "figure": FIGURE}


def calibration_section(c: dict[str, Any]) -> str:
    """The report's HTML for `calibration_report`'s dict."""
    rows = [["temperature T (fitted on the validation split)", c["temperature"]],
            [f"ECE, {c['bins']} equal-width bins: before / after", f"{fmt(c['ece_before'])} / {fmt(c['ece_after'])}"],
            ["NLL (nats per image): before / after", f"{fmt(c['nll_before'])} / {fmt(c['nll_after'])}"],
            ["images: fitted on / measured on", f"{c['num_fit']} ({c['fit_split']}) / {c['num_images']} ({c['split']})"]]
    text = (f"<p>Model: {escape(c['model'])}. Temperature scaling divides the logits by T (the predicted "
            "class never changes); <code>cnnsweep export</code> fits T on the same validation split and stores "
            "it in the .onnx metadata (<code>cnnsweep.temperature</code>).</p>")
    return text + table(["", ""], rows) + notes(c["notes"]) + figure(c["figure"], "Reliability diagram (bars: accuracy per "
                                                         "confidence bin; dashed: perfect calibration)")

"""`analyze_target`: what `cnnsweep analyze TARGET` runs. Loads the target, predicts the split, writes the
PNGs, metrics.json (every number the page shows), predictions and report.html into one folder.

`predict` is the one seam for the Ray path (cnnsweep.distributed.analysis_tasks): everything else is local.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from cnnsweep.analysis import sections as S
from cnnsweep.analysis.ablation import ablation_report
from cnnsweep.analysis.atlas import error_atlas
from cnnsweep.analysis.calibration import calibration_report, calibration_section
from cnnsweep.analysis.charts import confusion_heatmap
from cnnsweep.analysis.data_report import analyze_data
from cnnsweep.analysis.gallery import save_error_galleries
from cnnsweep.analysis.html import write_page
from cnnsweep.analysis.metrics_file import METRICS_FILE, AnalysisMetrics, save_metrics
from cnnsweep.analysis.predictions import PredictFn, Predictions, predict_split, save_predictions
from cnnsweep.analysis.scores import (confused_pairs, confusion, per_class_table, row_normalized,
                                      summary_metrics, worst_classes)
from cnnsweep.analysis.split import choose_split, load_analysis_data
from cnnsweep.analysis.target import Candidate, Target, load_target

REPORT_DIR = "analysis"
Progress = Callable[[str], None]


def default_output(t: Target) -> Path:
    if t.kind == "onnx":
        return t.path.parent / f"{t.path.stem}-analysis"
    base = t.path if t.path.is_dir() else t.path.parent
    return base / REPORT_DIR


def _predict_all(cands: list[Candidate], split, predict: Optional[PredictFn], say: Progress) -> dict[str, Predictions]:
    out = {}
    for i, c in enumerate(cands, start=1):
        say(f"predicting {len(split.labels)} images with {c.name} ({i}/{len(cands)})")
        out[c.name] = predict_split(c.predictor, split.images, split.labels, predict)
    return out


def _per_class(c: Candidate, p: Predictions, images, out: Path) -> dict[str, Any]:
    names = c.class_names
    cm = confusion(p, len(names))
    confusion_heatmap(cm, names, out / "confusion_counts.png", normalized=False)
    confusion_heatmap(row_normalized(cm), names, out / "confusion_normalized.png", normalized=True)
    rows = per_class_table(p, names)
    return {"model": c.name, "table": rows, "confusion_counts": cm.tolist(),
            "confused_pairs": confused_pairs(cm, names), "worst_classes": worst_classes(rows),
            "galleries": save_error_galleries(c, p, images, worst_classes(rows), out),
            "figures": {"confusion_counts": "confusion_counts.png", "confusion_normalized": "confusion_normalized.png"}}


def _explain(c: Candidate, split, out: Path, steps: Optional[int], seed: int,
             others: list[Candidate]) -> Optional[dict[str, Any]]:
    """Explain views of `c`; its class images are judged by `others` (the sweep's other top-K models:
    trained separately, with another configuration; the seed differs only where the sweep varies it)."""
    if c.model is None:
        return None
    from cnnsweep.analysis.class_images import ClassImageSettings
    from cnnsweep.analysis.explain import explain_model

    settings = ClassImageSettings(steps=steps) if steps else ClassImageSettings()
    result = explain_model(c.model, c.preprocess, split.images, split.labels, c.class_names, out / "explain",
                           seed=seed, class_image_settings=settings, optimizer=c.config.optim.name,
                           judges=[(o.name, o.predictor) for o in others])
    for f in result["figures"]:
        f["path"] = str(Path(f["path"]).resolve().relative_to(out.resolve()))
    return result


def _sweep_predictions(t: Target, preds: dict[str, Predictions], split, predict, say) -> dict[str, Predictions]:
    """Predictions of every sweep trial with a checkpoint, keyed by trial id (the top-K are reused)."""
    out = {}
    for c in t.sweep_trials:
        out[c.trial_id] = preds.get(c.name) or _predict_all([c], split, predict, say)[c.name]
    return out


def _models(t: Target, preds: dict[str, Predictions], out: Path) -> list[dict[str, Any]]:
    rows = []
    for c in t.candidates:
        p = preds[c.name]
        stem = "predictions" if len(t.candidates) == 1 else f"predictions_{c.name.split()[0]}"
        files = save_predictions(p, c.class_names, out, stem)
        rows.append({"name": c.name, "trial_id": c.trial_id, "source": c.source, "predictions": files,
                     "summary": summary_metrics(p, len(c.class_names))})
    return rows


def analyze_target(target: str | Path, *, split: str = "test", data_root: Optional[str] = None, top: int = 3,
                   output: Optional[str | Path] = None, predict: Optional[PredictFn] = None,
                   explain: bool = True, class_image_steps: Optional[int] = None, seed: int = 0,
                   progress: Optional[Progress] = None) -> AnalysisMetrics:
    """Analyze TARGET on `split` (falling back to the next split that exists); returns what metrics.json holds."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    say("loading the target")
    t = load_target(target, top)
    main = t.candidates[0]
    out = Path(output) if output else default_output(t)
    out.mkdir(parents=True, exist_ok=True)
    say("loading the data")
    dataset = load_analysis_data(main.config.data, data_root)
    name, images, notes = choose_split(dataset, split)
    preds = _predict_all(t.candidates, images, predict, say)
    m: dict[str, Any] = {"target": {"kind": t.kind, "path": str(t.path)}, "split": name,
                         "notes": list(dataset.notes) + notes, "output": str(out.resolve()),
                         "data": {"name": main.config.data.name, "root": data_root or main.config.data.root,
                                  "num_images": int(len(images.labels)), "class_names": main.class_names}}
    m["models"] = _models(t, preds, out)
    say("per-class errors and Grad-CAM")
    m["per_class"] = _per_class(main, preds[main.name], images.images, out)
    say("calibration (temperature fitted on the validation split)")
    m["calibration"] = calibration_report(main, dataset, name, preds[main.name], out, predict)
    say("data analysis")
    m["data_analysis"] = analyze_data(dataset.train.images, dataset.train.labels, main.config.data,
                                      main.class_names, out, seed)
    m["ablation"] = m["atlas"] = m["explain"] = None
    if t.kind == "sweep":
        say("ablation comparison")
        m["ablation"] = ablation_report(t.path, _sweep_predictions(t, preds, images, predict, say),
                                        main.class_names, out)
    if len(t.candidates) > 1:
        m["atlas"] = error_atlas([c.name for c in t.candidates], [preds[c.name] for c in t.candidates], out)
    if explain:
        say("what the CNN sees (feature maps, deconvolution, class images)")
        m["explain"] = _explain(main, images, out, class_image_steps, seed, t.candidates[1:])
        if m["explain"] is None:
            m["notes"].append("ONNX model: feature maps, deconvolution, class images and Grad-CAM need the "
                              "PyTorch checkpoint")
    m["seconds"] = round(time.perf_counter() - start, 2)
    metrics = AnalysisMetrics.model_validate(m)  # the sections build their parts as dicts; the file is checked
    write_report(metrics, out)
    return metrics


def build_sections(m: dict[str, Any]) -> list[tuple[str, str, str]]:
    secs = [("summary", "Summary", S.summary_section(m)), ("per-class", "Per-class errors", S.per_class_section(m))]
    if m["calibration"]:  # optional in AnalysisMetrics
        secs.append(("calibration", "Calibration", calibration_section(m["calibration"])))
    secs.append(("data", "Data analysis", S.data_section(m["data_analysis"])))
    if m["ablation"]:
        secs.append(("ablation", "Ablation comparison", S.ablation_section(m["ablation"])))
    if m["atlas"]:
        secs.append(("atlas", "Cross-trial error atlas", S.atlas_section(m["atlas"])))
    if m["explain"]:
        secs.append(("sees", "What the CNN sees", S.explain_section(m["explain"])))
        secs.append(("card", "Model card", S.model_card_section(m["explain"])))
    return [(anchor, f"{i}. {title}", body) for i, (anchor, title, body) in enumerate(secs, start=1)]


def write_report(metrics: AnalysisMetrics, out: Path) -> Path:
    save_metrics(metrics, out / METRICS_FILE)  # a failed write keeps the old file
    title = f"cnnsweep analyze: {Path(metrics.target.path).name} ({metrics.split} split)"
    return write_page(out, title, build_sections(metrics.to_json_dict()))  # the page shows what the file holds

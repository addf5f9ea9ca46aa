"""Numbers from predictions (scikit-learn): summary, per-class table, confusion matrix, confused pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support,
                             top_k_accuracy_score)

from cnnsweep.analysis.predictions import Predictions

TOP_K = 5


def summary_metrics(p: Predictions, num_classes: int) -> dict[str, Any]:
    """accuracy, macro/weighted precision, recall, F1, top-5 accuracy, log loss, errors, time."""
    labels = list(range(num_classes))
    y, pred = p.labels, p.pred
    out: dict[str, Any] = {"num_images": int(len(y)), "accuracy": float(accuracy_score(y, pred))}
    for avg in ("macro", "weighted"):
        prec, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        out |= {f"precision_{avg}": float(prec), f"recall_{avg}": float(rec), f"f1_{avg}": float(f1)}
    k, out[f"top{TOP_K}_accuracy"] = top_k_accuracy(p, num_classes)
    out["top_k"] = k
    out["log_loss"] = float(log_loss(y, p.probs, labels=labels))
    out["num_errors"] = int((y != pred).sum())
    out["seconds"] = round(p.seconds, 3)
    out["images_per_s"] = round(len(y) / p.seconds, 1) if p.seconds > 0 else None
    return out


def top_k_accuracy(p: Predictions, num_classes: int) -> tuple[int, float]:
    """(k, top-k accuracy) with k = TOP_K, or fewer where there are fewer classes: k must be below the
    number of classes (top-K of K classes is always right). scikit-learn takes no 2-d scores for 2
    classes, and there top-1 is the only informative k: it is the accuracy."""
    if num_classes <= 2:
        return 1, float(accuracy_score(p.labels, p.pred))
    k = min(TOP_K, num_classes - 1)
    return k, float(top_k_accuracy_score(p.labels, p.logits, k=k, labels=list(range(num_classes))))


def per_class_table(p: Predictions, class_names: list[str]) -> list[dict[str, Any]]:
    """One row per class: precision, recall, F1, support, errors (missed images of the class)."""
    labels = list(range(len(class_names)))
    prec, rec, f1, support = precision_recall_fscore_support(p.labels, p.pred, labels=labels, zero_division=0)
    missed = np.bincount(p.labels[p.labels != p.pred], minlength=len(labels))
    return [{"class_id": c, "name": class_names[c], "precision": float(prec[c]), "recall": float(rec[c]),
             "f1": float(f1[c]), "support": int(support[c]), "errors": int(missed[c])} for c in labels]


def confusion(p: Predictions, num_classes: int) -> np.ndarray:
    """Counts: rows = true class, columns = predicted class."""
    return confusion_matrix(p.labels, p.pred, labels=list(range(num_classes)))


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its class's support (a row with no images stays 0)."""
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape, dtype=float), where=totals > 0)


def confused_pairs(cm: np.ndarray, class_names: list[str], limit: int = 15) -> list[dict[str, Any]]:
    """Off-diagonal cells, most images first: (true, predicted, count, share of the true class)."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows = cm.sum(axis=1)
    order = np.argsort(-off, axis=None, kind="stable")[:limit]
    pairs = []
    for flat in order:
        t, q = divmod(int(flat), cm.shape[1])
        if off[t, q] == 0:
            break
        pairs.append({"true": t, "true_name": class_names[t], "pred": q, "pred_name": class_names[q],
                      "count": int(off[t, q]), "share_of_true": float(off[t, q] / rows[t])})
    return pairs


def worst_classes(table: list[dict[str, Any]], limit: int = 3) -> list[int]:
    """The classes with the lowest recall (that have images and errors), worst first."""
    rows = [r for r in table if r["support"] and r["errors"]]
    return [r["class_id"] for r in sorted(rows, key=lambda r: (r["recall"], -r["errors"]))[:limit]]

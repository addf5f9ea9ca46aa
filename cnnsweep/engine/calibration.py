"""Confidence calibration on logits: expected calibration error and temperature scaling (Guo et al. 2017).

Temperature scaling divides every logit by one scalar T > 0 fitted to minimise the negative log-likelihood
on held-out (validation) images; the predicted class never changes, only how sure the model says it is.
Here, below export and analysis, so both fit T the same way: the export stores it in the .onnx file, the
analysis report shows what it does (cnnsweep/analysis/calibration.py). Pure torch + numpy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15  # equal-width confidence bins, the usual choice since Guo et al.
# T outside this range means the fit ran away (every validation image right: NLL keeps falling as T -> 0);
# the same bounds apply when a file's metadata is read.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


def clamp_temperature(t: float) -> float:
    """T bounded to [MIN_TEMPERATURE, MAX_TEMPERATURE]; not finite -> 1.0 (no scaling)."""
    return min(MAX_TEMPERATURE, max(MIN_TEMPERATURE, float(t))) if math.isfinite(t) else 1.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)  # stable: exp of values <= 0
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats per image) of `labels` under softmax(logits / T)."""
    z = torch.from_numpy(logits.astype(np.float64)) / temperature
    return float(F.cross_entropy(z, torch.from_numpy(labels.astype(np.int64))))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin (lo, hi]: images, mean confidence, accuracy (None when empty)."""
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (k/bins, (k+1)/bins] -> k
    rows = []
    for k in range(bins):
        sel = idx == k
        n = int(sel.sum())
        rows.append({"lo": k / bins, "hi": (k + 1) / bins, "count": n,
                     "confidence": float(conf[sel].mean()) if n else None,
                     "accuracy": float(correct[sel].mean()) if n else None})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (images in bin / all images) x |accuracy - mean confidence| (0..1)."""
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"])
                     for r in reliability_bins(probs, labels, bins) if r["count"]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The T > 0 minimising nll(logits / T) (L-BFGS on log T, so T stays positive), clamped; 1.0 for
    no images."""
    if len(labels) == 0:
        return 1.0
    z = torch.from_numpy(logits.astype(np.float64))
    y = torch.from_numpy(labels.astype(np.int64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    bounds = (math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(*bounds).exp(), y)  # flat (gradient 0) outside the bounds
        loss.backward()
        return loss

    opt.step(closure)
    return clamp_temperature(float(log_t.detach().exp()))


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float,
                        bins: int = ECE_BINS) -> dict:
    """ECE and NLL of `logits` before (T = 1) and after dividing by `temperature`."""
    return {"temperature": temperature, "num_images": int(len(labels)), "bins": bins,
            "ece_before": expected_calibration_error(softmax(logits), labels, bins),
            "ece_after": expected_calibration_error(softmax(logits, temperature), labels, bins),
            "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature)}

"""`cnnsweep export SWEEP --top K --ensemble`: K checkpoints -> one verified .onnx averaging their softmax.

Verification compares ONNX Runtime, fed raw pixels (the graph does the shared
preprocessing), with the PyTorch ensemble run the way each member was trained (its own Preprocess from its checkpoint, its model, softmax, mean):
100% top-1 agreement and max |probability difference| <= PROB_ATOL on real validation images, or the
export fails and a previous file at the target is left as it was. The ensemble's own validation
accuracy is then measured in ORT on the whole validation split and written into the metadata beside
every member's metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from cnnsweep.atomic import atomic_path
from cnnsweep.checkpoint import LoadedModel, load_model_from_checkpoint
from cnnsweep.config import config_to_dict
from cnnsweep.export.ensemble import EnsembleError, build_ensemble, plan_shared
from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import OnnxModelInfo
from cnnsweep.export.onnx_export import export_onnx, rewrite_metadata
from cnnsweep.export.pipeline import PREPROCESS_CHUNK, ExportReport, load_export_data
from cnnsweep.export.runner import OnnxRunner
from cnnsweep.export.sources import ExportSource, resolve_sources
from cnnsweep.export.verify import BATCH_SIZES, PROB_ATOL, VerifyReport, compare_batch, take_wrapped
from cnnsweep import metrics as M

# The config fields that tell members apart, for the metadata's member list (dotted paths).
# leaderboard rows looked at when picking members (a trial whose preprocessing cannot join is skipped)
MAX_CANDIDATES = 100
SUMMARY_FIELDS = ("model.name", "model.num_stages", "model.width", "model.convs_per_stage", "model.dropout",
                  "model.pooling", "model.head", "data.grayscale", "data.equalize", "data.image_size",
                  "optim.name", "train.lr", "train.epochs", "train.seed")


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def config_summary(lm: LoadedModel) -> dict[str, Any]:
    full = config_to_dict(lm.config)
    out = {}
    for dotted in SUMMARY_FIELDS:
        section, key = dotted.split(".")
        out[dotted] = full.get(section, {}).get(key)
    return out


def member_entry(rank: int, src: ExportSource, lm: LoadedModel) -> dict[str, Any]:
    metrics = {k: float(v) for k, v in lm.metrics.items() if k.startswith(("val/", "test/")) or k == M.EPOCH}
    return {"rank": rank, "trial_id": src.trial_id or src.label, "checkpoint": str(lm.path), "metrics": metrics,
            "config": config_summary(lm), "preprocess": lm.preprocess.to_dict()}


@torch.inference_mode()
def reference_probs(members: Sequence[LoadedModel], images: torch.Tensor) -> np.ndarray:
    """The PyTorch ensemble on uint8 N x C x H x W: each member's own preprocessing, mean softmax."""
    probs = [torch.softmax(lm.model(lm.preprocess(images)).float(), dim=1).double() for lm in members]
    return torch.stack(probs).mean(dim=0).numpy()


def verify_ensemble(runner: OnnxRunner, members: Sequence[LoadedModel], images: torch.Tensor,
                    atol: float = PROB_ATOL) -> VerifyReport:
    """ORT probabilities (raw pixels through the graph) vs the PyTorch ensemble (members' own
    preprocessing and models), per batch size."""
    if len(images) == 0:
        raise ExportError("verification: the validation split is empty")
    report, start, idx = VerifyReport(atol=atol), 0, np.arange(len(images))
    for n in BATCH_SIZES:
        x = images[torch.from_numpy(take_wrapped(idx, start, n))]
        start += n
        got = softmax(runner.split_logits(x))
        report.checks.append(compare_batch(reference_probs(members, x), got, n))
    return report


def ensemble_metrics(runner: OnnxRunner, split) -> dict[str, float]:
    """val/acc and val/f1_macro of the ONNX ensemble on a whole split, chunk by chunk."""
    from sklearn.metrics import f1_score

    pred, y = runner.split_logits(split.images, PREPROCESS_CHUNK).argmax(1), split.labels.numpy()
    return {M.VAL_ACC: float((pred == y).mean()), M.VAL_F1: float(f1_score(y, pred, average="macro")),
            "val/num_images": float(len(y))}


def choose_members(sources: Sequence[ExportSource], top: int) -> tuple[list[ExportSource], list[LoadedModel],
                                                                       list[str]]:
    """The `top` best trials that can share one ensemble graph with the best, in leaderboard order.

    A sweep that searches preprocessing (e.g. `data.equalize`) ranks trials whose inputs cannot run in one
    graph; such a trial is left out with a note and the next one is tried, rather than refusing the export.
    """
    chosen: list[ExportSource] = []
    members: list[LoadedModel] = []
    notes: list[str] = []
    for source in sources:
        lm = load_model_from_checkpoint(source.checkpoint)
        try:
            if members and lm.class_names != members[0].class_names:
                raise EnsembleError("trained on another class list")
            plan_shared([m.preprocess for m in members] + [lm.preprocess])
        except EnsembleError as err:
            notes.append(f"{source.label} left out of the ensemble: {err}")
            continue
        chosen.append(source)
        members.append(lm)
        if len(members) == top:
            break
    if len(members) < top:
        notes.append(f"{len(members)} of the {top} members asked for: no other trial can join the best")
    return chosen, members, notes


def export_ensemble(sweep: str | Path, output: Optional[str | Path] = None, *, top: int = 3,
                    data_root: Optional[str] = None, atol: float = PROB_ATOL) -> ExportReport:
    """The best `top` trials of a sweep's leaderboard as one ONNX ensemble; raises ExportError if unverified."""
    start = time.perf_counter()
    sources, members, member_notes = choose_members(resolve_sources(sweep, MAX_CANDIDATES), top)
    model, shared = build_ensemble([lm.model for lm in members], [lm.preprocess for lm in members])
    dataset = load_export_data(members[0], data_root)
    entries = [member_entry(i, s, lm) for i, (s, lm) in enumerate(zip(sources, members), start=1)]
    target = Path(output) if output else Path(sweep) / "exports" / f"ensemble_top{len(members)}.onnx"
    info = OnnxModelInfo(members[0].class_names, shared, {}, {}, "fp32", str(sweep),
                         {"combine": "mean_softmax", "output": "log of the members' mean softmax probability",
                          "members": entries})
    with atomic_path(target) as staged:  # replaces `target` only once verified: a failure keeps the old file
        export_onnx(model, info, staged)
        runner = OnnxRunner.load(staged)
        verification = verify_ensemble(runner, members, dataset.valid.images[:sum(BATCH_SIZES)], atol)
        report = ExportReport(str(sweep), str(target), staged.stat().st_size, verification.to_dict(),
                              max((e["metrics"].get(M.VAL_ACC, float("nan")) for e in entries)),
                              notes=member_notes + list(dataset.notes))
        if not verification.ok:  # an ensemble that does not reproduce must not be served by accident
            raise ExportError(verification.failure_message().replace("max|diff|", "max|prob diff|"), report)
        info.metrics = ensemble_metrics(runner, dataset.valid)
        rewrite_metadata(staged, info)  # the measured metrics go inside, beside the members'
    report.ensemble = {"members": entries, "metrics": info.metrics}
    report.seconds = time.perf_counter() - start
    return report

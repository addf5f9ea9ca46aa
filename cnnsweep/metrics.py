"""Metric keys: the one place their names are spelled.

Every epoch reports `split/name` keys (`train/loss`, `val/acc`, `test/f1_macro`, ...) plus a few
unnamespaced bookkeeping keys. The engine writes them, Ray Train ranks checkpoints by one of them,
Tune schedules on one, and the reports read them: all through these constants. Pure Python.
"""

from __future__ import annotations

# bookkeeping (not namespaced: they describe the epoch, not a split)
EPOCH = "epoch"  # 0-based index of the epoch just finished
EPOCHS_DONE = "epochs_done"  # 1-based; the time axis of ASHA and the live table
LR = "lr"
EPOCH_END_TIME = "epoch_end_time"  # time.time() (s) when the epoch's metrics were reported; not
# "timestamp": Tune writes its own (whole seconds) under that name and would overwrite it
IMAGES_PER_S = "images_per_s"  # training throughput over all workers
CHECKPOINT_PATH = "checkpoint_path"
BACKBONE_FROZEN = "backbone_frozen"  # 1 during model.freeze_epochs' warm-up, 0 after (reported only then)

SPLITS = ("train", "val", "test")
EVAL_NAMES = ("acc", "precision_macro", "recall_macro", "f1_macro", "loss")  # what `evaluate` computes


def key(split: str, name: str) -> str:
    """`key("val", "acc") -> "val/acc"`."""
    return f"{split}/{name}"


TRAIN_LOSS, TRAIN_ACC, TRAIN_SECONDS = key("train", "loss"), key("train", "acc"), key("train", "seconds")
VAL_LOSS, VAL_ACC = key("val", "loss"), key("val", "acc")
VAL_PRECISION, VAL_RECALL, VAL_F1 = key("val", "precision_macro"), key("val", "recall_macro"), key("val", "f1_macro")
TEST_LOSS, TEST_ACC = key("test", "loss"), key("test", "acc")
TEST_PRECISION, TEST_RECALL, TEST_F1 = (key("test", "precision_macro"), key("test", "recall_macro"),
                                        key("test", "f1_macro"))

# the direction of each metric a sweep may optimize (`search.metric`) and Ray Train may rank by
MODES = {VAL_ACC: "max", VAL_F1: "max", VAL_PRECISION: "max", VAL_RECALL: "max", TRAIN_ACC: "max",
         VAL_LOSS: "min", TRAIN_LOSS: "min"}
DEFAULT_METRIC = VAL_ACC

# the per-epoch keys a sweep keeps for its history and leaderboard
REPORT_KEYS = (EPOCH, EPOCHS_DONE, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, VAL_PRECISION, VAL_RECALL, VAL_F1,
               TEST_ACC, TEST_PRECISION, TEST_RECALL, TEST_F1, IMAGES_PER_S, LR, CHECKPOINT_PATH)

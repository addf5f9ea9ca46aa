"""The training engine: plain PyTorch, no Ray."""

from cnnsweep.engine.amp import AmpSettings, build_scaler, resolve_amp
from cnnsweep.engine.evaluate import classification_metrics, evaluate, predict_logits
from cnnsweep.engine.fit import FitResult, checkpoint_state, fit
from cnnsweep.engine.hooks import FitHooks, LocalHooks
from cnnsweep.engine.optim import build_optimizer, build_scheduler
from cnnsweep.engine.seed import seed_everything
from cnnsweep.engine.step import StepState, train_step

__all__ = ["AmpSettings", "build_scaler", "resolve_amp", "classification_metrics", "evaluate",
           "predict_logits", "FitResult", "checkpoint_state", "fit", "FitHooks", "LocalHooks",
           "build_optimizer", "build_scheduler", "seed_everything", "StepState", "train_step"]

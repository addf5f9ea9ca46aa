"""The training engine: plain PyTorch, no Ray.

The names below load their module on first use (PEP 562): the engine pulls in torchvision (through the
batch augmentation) and scikit-learn (metrics), seconds of imports per process, and a process that only
needs `FitHooks` or a config, such as Ray Train's controller or a Tune trial's driver, should not pay them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULE_OF = {
    "AmpSettings": "amp", "build_scaler": "amp", "resolve_amp": "amp",
    "classification_metrics": "evaluate", "evaluate": "evaluate", "predict_logits": "evaluate",
    "FitResult": "fit", "checkpoint_state": "fit", "fit": "fit",
    "FitHooks": "hooks", "LocalHooks": "hooks",
    "build_optimizer": "optim", "build_scheduler": "optim",
    "seed_everything": "seed",
    "StepState": "step", "train_step": "step",
}
__all__ = list(_MODULE_OF)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from cnnsweep.engine.amp import AmpSettings, build_scaler, resolve_amp  # noqa: F401
    from cnnsweep.engine.evaluate import classification_metrics, evaluate, predict_logits  # noqa: F401
    from cnnsweep.engine.fit import FitResult, checkpoint_state, fit  # noqa: F401
    from cnnsweep.engine.hooks import FitHooks, LocalHooks  # noqa: F401
    from cnnsweep.engine.optim import build_optimizer, build_scheduler  # noqa: F401
    from cnnsweep.engine.seed import seed_everything  # noqa: F401
    from cnnsweep.engine.step import StepState, train_step  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

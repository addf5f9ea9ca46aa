"""Live progress: Tune callbacks feeding the CLI's table of trials."""

from __future__ import annotations

from typing import Any, Callable, Optional

from ray import tune


ProgressSink = Callable[[list[dict[str, Any]]], None]
_progress_sink: Optional[ProgressSink] = None


def set_progress_sink(sink: Optional[ProgressSink]) -> None:
    """Where SweepProgress sends its rows (the CLI's live table), or None to stop."""
    global _progress_sink
    _progress_sink = sink


class SweepProgress(tune.Callback):  # Ray: Tune calls these in this process as trials change state
    """Feeds the CLI's live table. It reads the module-level sink rather than holding one, because
    Tune pickles its callbacks into the experiment state (for --resume) and a terminal does not pickle."""

    def __init__(self, metric: str, mode: str):
        self.metric, self.mode = metric, mode
        self._best: dict[str, float] = {}

    def _row(self, trial: Any) -> dict[str, Any]:
        last = trial.last_result or {}
        value = last.get(self.metric)
        if isinstance(value, (int, float)):
            old = self._best.get(trial.trial_id)
            better = old is None or (value > old if self.mode == "max" else value < old)
            self._best[trial.trial_id] = value if better else old
        return {"trial_id": trial.trial_id, "status": trial.status, "epochs": last.get("epochs_done", 0),
                "last": value, "best": self._best.get(trial.trial_id),
                "params": (trial.config.get("point") or {}).get("overrides", {}),
                "label": (trial.config.get("point") or {}).get("label", "")}

    def _emit(self, trials: list[Any]) -> None:
        if _progress_sink is not None:
            _progress_sink([self._row(t) for t in trials])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._emit(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

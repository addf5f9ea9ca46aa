"""`cnnsweep tune SWEEP`: a Ray Tune + Optuna sweep with a live table of trials and a leaderboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cnnsweep import metrics as M
from cnnsweep.cli.app import app, err, friendly_errors, out, print_json

if TYPE_CHECKING:  # for annotations only: the command imports the library when it runs
    from cnnsweep.sweep.summary import SweepSummary

MAX_LIVE_ROWS = 20  # the newest trials; the leaderboard at the end has them all
LEADERBOARD_ROWS = 10
STATUS_STYLE = {"RUNNING": "cyan", "TERMINATED": "green", "ERROR": "red", "PENDING": "dim", "PAUSED": "yellow"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _params_text(params: dict[str, Any], label: str) -> str:
    if label:
        return label
    return "  ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in params.items())


def trials_table(rows: list[dict[str, Any]], metric: str, epochs: int) -> Table:
    table = Table(title=f"trials ({len(rows)})", title_justify="left")
    for col in ("trial", "status", "epochs", f"{metric} last", f"{metric} best", "parameters"):
        table.add_column(col, overflow="fold")
    for r in rows[-MAX_LIVE_ROWS:]:
        style = STATUS_STYLE.get(r["status"], "")
        table.add_row(r["trial_id"], Text(r["status"], style=style),
                      f"{r['epochs']}/{epochs}", _fmt(r["last"]), _fmt(r["best"]),
                      _params_text(r["params"], r["label"]))
    return table


def leaderboard_table(report_dir: str, metric: str) -> Table:
    import pandas as pd

    board = pd.read_csv(Path(report_dir) / "leaderboard.csv")
    table = Table(title=f"leaderboard (top {min(LEADERBOARD_ROWS, len(board))} of {len(board)}, by {metric})",
                  title_justify="left")
    cols = [c for c in ("rank", "trial_id", "label", "status", "epochs", M.VAL_ACC, M.VAL_PRECISION, M.VAL_RECALL,
                       M.VAL_LOSS)
            if c in board] + [c for c in board if c.startswith("param:")]
    for c in cols:
        table.add_column(c.removeprefix("param:"), overflow="fold")
    for _, row in board.head(LEADERBOARD_ROWS).iterrows():
        table.add_row(*[_fmt(row[c]) if row[c] == row[c] else "" for c in cols])  # NaN -> ""
    return table


def _print_results(summary: SweepSummary) -> None:
    out.print(leaderboard_table(summary.report_dir, summary.metric))
    if summary.importances:
        imp = "  ".join(f"{k}={v:.2f}" for k, v in summary.importances.items())
        out.print(f"parameter importances (Optuna): {imp}", highlight=False)
    best, t = summary.best, summary.trials
    out.print(f"trials: {t.finished} finished, {t.stopped_early} stopped early, {t.errored} errored "
              f"in {summary.seconds or 0:.0f} s", highlight=False)
    if best:
        out.print(f"best: trial {best.trial_id}  val/acc {_fmt(best.val_acc)}  -> {best.checkpoint}",
                  highlight=False)
    out.print(f"report: {summary.report_dir} ({', '.join(summary.files[:4])}, ...)", highlight=False)
    for note in summary.notes:
        err.print(f"note: {note}", highlight=False)
    if summary.analysis:
        out.print(f"analysis: {summary.analysis}", highlight=False)


def default_output(name: str) -> str:
    return str(Path("runs") / f"{name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}")


@app.command("tune")
@friendly_errors
def tune_cmd(
    sweep: str = typer.Argument(..., help="sweep YAML: a run config plus a `search` section"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override: dotted.key=value (repeatable)"),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="output folder or URI (s3://...) [runs/<name>-sweep-<time>]"),
    resume: bool = typer.Option(False, "--resume", help="continue the interrupted sweep in --output"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address [RAY_ADDRESS or local]"),
    report_dir: Optional[str] = typer.Option(None, "--report-dir",
                                             help="local folder for the report when --output is a URI"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Search architectures and training settings with Ray Tune + Optuna (ASHA early stopping)."""
    from cnnsweep.config import ConfigError, load_config
    from cnnsweep.sweep.space import load_search

    cfg = load_config(sweep, set_ or [])
    search = load_search(cfg)  # a bad space exits 2 here, before Ray is imported
    if resume and not output:
        raise ConfigError("--resume needs --output: the folder of the sweep to continue")
    from cnnsweep.distributed.tune import run_sweep

    live = Live(console=err, transient=json_out, refresh_per_second=2)  # shown from the first trial on

    def on_progress(rows: list[dict[str, Any]]) -> None:
        if not live.is_started:
            live.start()
        live.update(trials_table(rows, search.metric, cfg.train.epochs))

    try:
        summary = run_sweep(cfg, output or default_output(cfg.name), resume=resume, address=address,
                            report_dir=report_dir, on_progress=on_progress)
    finally:
        live.stop()
    if json_out:
        print_json(summary.to_json_dict())  # the object summary.json holds
    else:
        _print_results(summary)

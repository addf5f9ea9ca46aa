"""`cnnsweep train CONFIG`."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cnnsweep.cli.app import app, err, friendly_errors, out, print_json


def _progress_line(m: dict) -> str:
    return (f"epoch {int(m['epoch']) + 1}: train/loss {m.get('train/loss', float('nan')):.4f}  "
            f"val/acc {m.get('val/acc', float('nan')):.4f}  {m.get('images_per_s', 0):,.0f} img/s")


def _print_summary(summary: dict) -> None:
    table = Table(title="cnnsweep train", show_header=False)
    for key in ("val_acc", "val_f1_macro", "test_acc", "epochs", "seconds", "checkpoint", "output"):
        value = summary.get(key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) and key != "seconds" else str(value))
    out.print(table)
    for note in summary.get("notes", []):
        err.print(f"note: {note}", highlight=False)


@app.command("train")
@friendly_errors
def train_cmd(
    config: str = typer.Argument(..., help="run or sweep YAML (a sweep's `search` section is ignored)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override: dotted.key=value (repeatable)"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="output folder [runs/<name>-<time>]"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --output from its last checkpoint"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address [RAY_ADDRESS or local]"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Train one candidate with Ray Train (DDP, AMP, gradient accumulation)."""
    from cnnsweep.config import ConfigError, load_config
    from cnnsweep.distributed.train_job import run_train_job

    cfg = load_config(config, set_ or [])
    if resume and not output:
        raise ConfigError("--resume needs --output: the folder of the run to continue")
    # markup off: the run's name comes from its config file
    with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                  TextColumn("{task.fields[line]}", markup=False),
                  TimeElapsedColumn(), console=err, transient=json_out) as progress:
        task = progress.add_task(cfg.name, total=cfg.train.epochs,
                                 line="resuming the run..." if resume else "starting Ray Train...")

        def on_epoch(m: dict) -> None:
            progress.update(task, completed=int(m["epoch"]) + 1, line=_progress_line(m))

        summary = run_train_job(cfg, output=output, address=address, on_epoch=on_epoch, resume=resume)
    if json_out:
        print_json({k: v for k, v in summary.items() if k != "metrics"} | {"metrics": summary["metrics"]})
    else:
        _print_summary(summary)

"""`cnnsweep summary CONFIG`."""

from __future__ import annotations

from typing import List, Optional

import typer

from cnnsweep.cli.app import app, friendly_errors, out, print_json


@app.command("summary")
@friendly_errors
def summary_cmd(
    config: str = typer.Argument(..., help="run or sweep YAML"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override: dotted.key=value (repeatable)"),
    memory: Optional[str] = typer.Option(None, "--memory", help="device memory budget, e.g. 8GiB: "
                                         "suggest micro-batch size and accumulation steps that fit"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Per-layer shapes and parameters, FLOPs per image, and memory estimates."""
    from cnnsweep.config import load_config
    from cnnsweep.models.summary import summarize_config

    cfg = load_config(config, set_ or [])
    report = summarize_config(cfg, memory=memory)
    if json_out:
        print_json(report.to_dict())
    else:
        report.print(out)

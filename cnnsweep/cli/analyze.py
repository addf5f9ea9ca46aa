"""`cnnsweep analyze TARGET`: per-class errors, data analysis, ablation, visualizations -> report.html."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cnnsweep.cli.app import USAGE_EXIT, app, err, friendly_errors, out, print_json, styled

if TYPE_CHECKING:  # for annotations only: the command imports the library when it runs
    from cnnsweep.analysis.metrics_file import AnalysisMetrics


def _print_summary(m: AnalysisMetrics) -> None:
    for model in m.models:
        s = model.summary
        out.print(f"{model.name}: accuracy {s.accuracy:.4f}  macro F1 {s.f1_macro:.4f}  "
                  f"top-{s.top_k} {s.top5_accuracy:.4f}  errors {s.num_errors}/{s.num_images}",
                  highlight=False)
    if m.atlas:  # a section's own map (cnnsweep.analysis.atlas)
        out.print(f"ensemble of {len(m.atlas['models'])} (mean softmax): accuracy "
                  f"{m.atlas['ensemble_accuracy']:.4f}", highlight=False)
    for note in m.notes:
        err.print(f"note: {note}", highlight=False)
    out.print(f"report: {m.output}/report.html", highlight=False)


@app.command("analyze")
@friendly_errors
def analyze_cmd(
    target: str = typer.Argument(..., help="sweep folder (top-K trials), run folder, checkpoint, or .onnx file"),
    split: str = typer.Option("test", "--split", help="test | valid (a missing split falls back to the other)"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="dataset folder [the model's data.root]"),
    top: int = typer.Option(3, "--top", help="sweep folder: analyze the best K trials of leaderboard.csv"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="report folder [<target>/analysis]"),
    workers: int = typer.Option(0, "--workers", help="predict with N Ray tasks at a time (0: in this process)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address [RAY_ADDRESS or local]"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Analyze trained models: per-class errors, data, ablation, what the CNN sees -> report.html."""
    from cnnsweep.analysis import AnalysisError

    kwargs = dict(split=split, data_root=data_root, top=top, output=output)
    # markup off: the progress lines name trials and models, which come from files
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("analyze")

        def say(msg: str) -> None:
            progress.update(task, description=msg)

        try:
            if workers > 0:
                from cnnsweep.distributed.analysis_tasks import run_analysis

                m = run_analysis(target, workers=workers, address=address, progress=say, **kwargs)
            else:
                from cnnsweep.analysis.run import analyze_target

                m = analyze_target(target, progress=say, **kwargs)
        except AnalysisError as e:
            err.print(styled("error:", "bold red", e), highlight=False, soft_wrap=True)
            raise typer.Exit(USAGE_EXIT) from None
    if json_out:
        print_json({"output": m.output, "report": f"{m.output}/report.html", "split": m.split, "notes": m.notes,
                    "models": [r.model_dump() for r in m.models], "seconds": m.seconds,
                    "ensemble_accuracy": (m.atlas or {}).get("ensemble_accuracy")})
    else:
        _print_summary(m)

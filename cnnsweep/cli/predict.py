"""`cnnsweep predict MODEL INPUTS... [--output predictions.csv] [--top-k N] [--address ADDR]`."""

from __future__ import annotations

import tempfile
from typing import List, Optional

import typer

from cnnsweep.cli.app import app, err, friendly_errors, out, print_json, styled

EXPORT_FAILED_EXIT = 1  # an on-the-fly export did not reproduce PyTorch (as `cnnsweep export`)


@app.command("predict")
@friendly_errors
def predict_cmd(
    model: str = typer.Argument(..., help=".onnx file, or a checkpoint / run / sweep folder (exported on the "
                                "fly to a temporary, verified .onnx; a sweep's best/model.onnx is used as is)"),
    inputs: List[str] = typer.Argument(..., help="image folder, image files, a .txt list of paths, or one "
                                       "dataset split NAME:ROOT:SPLIT (gtsrb_pickle:../shared/data/gtsrb:valid)"),
    output: str = typer.Option("predictions.csv", "--output", "-o", help="CSV: id,label,class_name,prob"),
    top_k: int = typer.Option(1, "--top-k", min=1, help="also write the N best classes (topN_label, ...)"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="images per ONNX Runtime call"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ORT threads (local) [one per core]"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: run as Ray tasks over chunks "
                                          "of the inputs (`auto` = RAY_ADDRESS / the local `ray start`)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="leave out images that cannot be read or decoded "
                                  "(listed in the summary) instead of stopping at the first"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Predict a class for every input and write a leaderboard-style CSV, through ONNX Runtime."""
    from cnnsweep.export import ExportError
    from cnnsweep.predict import load_predictor, predict, resolve_inputs, resolve_model

    items = resolve_inputs(inputs)  # input errors before any export
    with tempfile.TemporaryDirectory(prefix="cnnsweep-predict-") as tmp:
        try:
            onnx_path, exported_from = resolve_model(model, tmp)
        except ExportError as e:
            err.print(styled("export failed:", "bold red", e), highlight=False, soft_wrap=True)
            raise typer.Exit(EXPORT_FAILED_EXIT) from None
        if address:
            from cnnsweep.distributed.predict import predict_on_ray

            load_predictor(onnx_path)  # a broken model fails here, with one line, before Ray starts
            summary = predict_on_ray(onnx_path, items, output, address=address, top_k=top_k,
                                     batch_size=batch_size, exported_from=exported_from, skip_bad=skip_bad)
        else:
            predictor = load_predictor(onnx_path, num_threads=threads)
            predictor.exported_from = exported_from
            summary = predict(predictor, items, output, top_k=top_k, batch_size=batch_size, skip_bad=skip_bad)
    _report(summary.to_dict(), json_out)


def _report(s: dict, json_out: bool) -> None:
    if json_out:
        print_json(s)
        return
    acc = f", accuracy {s['accuracy']:.4f} (true labels known)" if s["accuracy"] is not None else ""
    out.print(f"wrote {s['num_images']} predictions to {s['output']} in {s['seconds']:.1f} s{acc}", highlight=False)
    if s["num_skipped"]:
        first = s["skipped"][0]
        err.print(styled(f"skipped {s['num_skipped']} bad image(s)", "yellow", f"first: {first['id']}: {first['error']}"),
                  highlight=False, soft_wrap=True)

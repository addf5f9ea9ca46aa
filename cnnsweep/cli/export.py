"""`cnnsweep export RUN_OR_CHECKPOINT`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from cnnsweep.cli.app import USAGE_EXIT, app, err, friendly_errors, out, print_json, styled

EXPORT_FAILED_EXIT = 1  # the export ran but did not reproduce PyTorch (bad input exits 2)


def _print_report(r: dict) -> None:
    v = r["verification"]
    table = Table(title=f"cnnsweep export: {r['onnx']}", show_header=False)
    table.add_row("checkpoint", r["checkpoint"])
    table.add_row("size", f"{r['size_bytes'] / 1024:,.1f} KiB")
    for b in v["batches"]:
        table.add_row(f"batch {b['batch_size']}", f"max|{'prob' if r.get('ensemble') else 'logit'} diff| {b['max_abs_diff']:.2e}  "
                      f"top-1 agreement {b['agreement']:.2%}")
    table.add_row("verified", f"{'yes' if v['ok'] else 'NO'} (tolerance {v['atol']:g})")
    if r.get("ensemble"):
        for m in r["ensemble"]["members"]:
            table.add_row(f"member {m['rank']}", f"{m['trial_id']}  val/acc {m['metrics'].get('val/acc', float('nan')):.4f}")
        table.add_row("ensemble val/acc", f"{r['ensemble']['metrics']['val/acc']:.4f} "
                      f"({int(r['ensemble']['metrics']['val/num_images'])} images, ONNX Runtime)")
    if r.get("int8"):
        q = r["int8"]
        table.add_row("int8", f"{q['onnx']} ({q['size_bytes'] / 1024:,.1f} KiB)")
        table.add_row("val/acc fp32 / int8", f"{q['val_acc_fp32']:.4f} / {q['val_acc_int8']:.4f} "
                      f"({q['accuracy_drop_points']:.2f} points lost, {q['num_val']} images)")
    out.print(table)


@app.command("export")
@friendly_errors
def export_cmd(
    source: str = typer.Argument(..., help="checkpoint (file or folder), run folder, or sweep folder"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=".onnx path (a folder with --top) "
                                         "[next to the checkpoint; <sweep>/best/model.onnx]"),
    top: Optional[int] = typer.Option(None, "--top", help="sweep folder: export the best N trials of "
                                      "leaderboard.csv into <sweep>/exports/"),
    ensemble: bool = typer.Option(False, "--ensemble", help="with --top K: ONE .onnx that runs the K best "
                                  "trials and averages their softmax [<sweep>/exports/ensemble_topK.onnx]"),
    int8: bool = typer.Option(False, "--int8", help="also write <name>_int8.onnx (static quantization, "
                              "calibrated on training images) and compare its val accuracy"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="dataset folder, when it moved since "
                                            "training (verification needs the real validation images)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Export to ONNX (dynamic batch, metadata inside), verify against PyTorch, optionally int8."""
    from cnnsweep.export import ExportError, export_path
    from cnnsweep.export.ensemble_export import export_ensemble

    if ensemble and (top is None or int8):
        err.print(styled("error:", "bold red", "--ensemble needs --top K (the K best trials of a sweep) and cannot "
                         "be combined with --int8"), highlight=False)
        raise typer.Exit(USAGE_EXIT)
    try:
        if ensemble:
            reports = [export_ensemble(source, output, top=top, data_root=data_root).to_dict()]
        else:
            reports = [r.to_dict() for r in export_path(source, output, top=top, int8=int8, data_root=data_root)]
    except ExportError as e:
        err.print(styled("export failed:", "bold red", e), highlight=False, soft_wrap=True)
        if json_out:
            print_json({"ok": False, "error": str(e), "report": e.report.to_dict() if e.report else None})
        raise typer.Exit(EXPORT_FAILED_EXIT) from None
    if json_out:
        print_json(reports[0] if len(reports) == 1 else {"ok": True, "exports": reports})
    else:
        for r in reports:
            _print_report(r)

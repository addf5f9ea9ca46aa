"""`cnnsweep schema`."""

from __future__ import annotations

from typing import Optional

import typer

from cnnsweep.cli.app import app, friendly_errors, print_json


@app.command("schema")
@friendly_errors
def schema_cmd(
    output: Optional[str] = typer.Option(None, "--output", "-o", help="write the schema to this file "
                                         "instead of stdout"),
    json_out: bool = typer.Option(False, "--json", help="with --output: print {\"output\": FILE} as the last line"),
) -> None:
    """The JSON Schema of run and sweep files (every field with its description and unit), for editors:
    start a YAML file with `# yaml-language-server: $schema=<FILE>`."""
    from cnnsweep.sweep.space import write_schema

    text = write_schema(output)
    if output is None:
        typer.echo(text, nl=False)
    elif json_out:
        print_json({"output": output})
    else:
        typer.echo(f"wrote {output}")

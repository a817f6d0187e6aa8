"""`ringfence convert`: turn a GGUF into the Hugging Face layout labs publish."""

from __future__ import annotations

from pathlib import Path

import typer

from ringfence.cli.output import console
from ringfence.errors import InvalidInput
from ringfence.formats.convert import gguf_to_hf

convert_app = typer.Typer(help="Convert weights between formats.", no_args_is_help=True)


@convert_app.command("gguf-to-hf")
def gguf_to_hf_command(
    file: Path = typer.Argument(..., help="A llama-architecture GGUF file."),
    outdir: Path = typer.Argument(..., help="Directory to write the converted model into."),
) -> None:
    """Dequantise a llama GGUF into bf16 safetensors, config and tokenizer files."""
    if not file.is_file():
        raise InvalidInput(f"{file} is not a file", hint="give the path of a .gguf file")
    if outdir.exists() and any(outdir.iterdir()):
        raise InvalidInput(f"{outdir} is not empty", hint="choose a new or empty directory")
    with console.status(f"converting {file.name}") as status:
        gguf_to_hf(file, outdir, progress=lambda name: status.update(f"converting {name}"))
    console.print(f"converted {file.name} -> {outdir}")


def register(app: typer.Typer) -> None:
    """Add the convert commands."""
    app.add_typer(convert_app, name="convert")

"""Assembles the typer app from one module per verb; verbs import their heavy dependencies lazily."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from edgeproj import __version__
from edgeproj.errors import EdgeprojError


class _Group(TyperGroup):
    """Turns every EdgeprojError raised by a verb into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeprojError as exc:
            typer.echo(f"edgeproj: error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="edgeproj",
    help="Energy-based projection for anomaly localization: train, export, calibrate, run on the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"edgeproj {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """edgeproj command line."""


def _register() -> None:
    from edgeproj.cli import bench, calibrate, data, demo, evaluate, export, inpaint, inspect, project, train

    app.add_typer(data.app, name="data")
    app.command("train")(train.command)
    app.command("export")(export.command)
    app.command("project")(project.command)
    app.command("inpaint")(inpaint.command)
    app.command("calibrate")(calibrate.command)
    app.command("evaluate")(evaluate.command)
    app.command("inspect")(inspect.command)
    app.command("bench")(bench.command)
    app.command("demo")(demo.command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="edgeproj")

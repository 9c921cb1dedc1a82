"""Assembles the typer app from one module per verb; verbs import their heavy dependencies lazily."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as _cx

from edgeproj import __version__
from edgeproj.cli.helpformat import MARKUP, Command
from edgeproj.errors import EdgeprojError


class _Group(TyperGroup):
    """One abort path: every user-facing failure is one line on stderr and exit code 2.

    That covers EdgeprojError raised by a verb, a bad option or value (click's usage errors, which
    would otherwise print a usage box), and an operating-system refusal (a read-only or full folder).
    """

    def make_context(self, *args, **kwargs):
        try:  # `edgeproj --help | head` closes the pipe here
            return super().make_context(*args, **kwargs)
        except (BrokenPipeError, SystemExit) as exc:
            _reader_left_or_raise(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (BrokenPipeError, SystemExit) as exc:  # `edgeproj VERB --help | head`, `edgeproj doctor --json | head -1`
            _reader_left_or_raise(exc)
        except EdgeprojError as exc:
            _fail(str(exc))
        except OSError as exc:  # permissions, full disk, a path below a file: the user's to fix
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            _fail(f"{exc.strerror or exc}{where}")

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _cx.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except _cx.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            typer.echo(f"edgeproj: error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except _cx.ClickException as exc:
            typer.echo(f"edgeproj: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("edgeproj: aborted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


# Verbs whose stdout is their product while they run: a reader that leaves stops them early, which is not
# a normal end (frames still in flight get no printed verdict).
STOPPED_BY_A_CLOSED_STDOUT = {"inspect"}


def _pipe_closed(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or isinstance(exc.__context__, BrokenPipeError)


class _Verb(Command):
    """A verb; one whose stdout is its product while it runs ends with exit 1 when its reader leaves."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (BrokenPipeError, SystemExit) as exc:
            if self.name not in STOPPED_BY_A_CLOSED_STDOUT or not _pipe_closed(exc):
                raise
            typer.echo(f"edgeproj: error: stdout was closed by its reader: {self.name} stopped early; the frames "
                       "judged so far are in its results database", err=True)  # fmt: skip
            _quiet_stdout()
            raise typer.Exit(1) from None


def _reader_left_or_raise(exc: BaseException):
    """The reader of stdout went away: not an error, nothing more to say (exit 0); anything else is re-raised.

    Rich turns a broken pipe into SystemExit(1) raised while handling the BrokenPipeError, which is how
    that exit is told apart from a verb's own. stdout is pointed at /dev/null so the interpreter's last
    flush does not fail on the closed pipe again.
    """
    if not _pipe_closed(exc):
        raise exc
    _quiet_stdout()
    sys.exit(0)


def _quiet_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _fail(message: str):
    typer.echo(f"edgeproj: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


app = typer.Typer(
    cls=_Group,
    name="edgeproj",
    help="Energy-based projection for anomaly localization: train, export, calibrate, run on the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP,
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


# One line per verb for `edgeproj --help` (the verbs' docstrings are paragraphs, cut mid-sentence there).
VERBS = {
    "train": "Train an autoencoder on normal images (stops when it has learned).",
    "export": "Write the ONNX graphs with the energy gradient, and the manifest.",
    "project": "Anomaly maps, overlays and verdicts for image files.",
    "inpaint": "Inpaint an image: a known mask (eq. 7) or blind (eq. 8).",
    "calibrate": "Thresholds and the frame gate from good parts, into the manifest.",
    "evaluate": "Pixel AUROC, AU-PRO, image AUROC: baseline vs projection.",
    "inspect": "Judge frames from a camera, stream, video or folder.",
    "bench": "Iterations per millisecond of every backend, against PyTorch.",
    "demo": "The whole pipeline on the embedded procedural data.",
    "doctor": "Which backends run here, and exactly why the others do not.",
}


def _register() -> None:
    from edgeproj.cli import bench, calibrate, data, demo, doctor, evaluate, export, inpaint, inspect, project, train

    verbs = {"train": train, "export": export, "project": project, "inpaint": inpaint, "calibrate": calibrate,
             "evaluate": evaluate, "inspect": inspect, "bench": bench, "demo": demo, "doctor": doctor}  # fmt: skip
    app.add_typer(data.app, name="data", short_help="Generate the demo data set; check a data folder.")
    for name, module in verbs.items():
        app.command(name, cls=_Verb, short_help=VERBS[name])(module.command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="edgeproj")

"""Option groups: declared once, shown as one help panel, handed to the verb as one value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeproj.cli.groups import OptionGroup, flag, takes


@dataclass
class Speed:
    rate: int
    fast: bool


SPEED = OptionGroup(
    "speed",
    "Speed",
    (flag("rate", int, 3, "--rate", min=1, max=9, help="How many."), flag("fast", bool, False, "--fast", help="Hurry.")),
    Speed,
)


def _app(fn) -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(fn)
    app.command("other")(lambda: None)
    return app


def test_a_group_reaches_the_verb_as_one_value_and_keeps_its_checks():
    seen = []

    @takes(SPEED)
    def verb(path: Path = typer.Argument(...), speed: Speed = None, name: str = typer.Option("x")):
        seen.append((path, speed, name))

    app = _app(verb)
    res = CliRunner().invoke(app, ["verb", "p", "--rate", "5", "--fast", "--name", "y"])
    assert res.exit_code == 0, res.output
    assert seen == [(Path("p"), Speed(5, True), "y")]
    assert CliRunner().invoke(app, ["verb", "p", "--rate", "10"]).exit_code == 2  # the range travels with the flag
    help_text = CliRunner().invoke(app, ["verb", "--help"], terminal_width=80).output
    assert "Speed" in help_text and "--rate" in help_text


def test_a_verb_without_the_group_parameter_or_with_a_clashing_option_is_refused_at_definition():
    with pytest.raises(TypeError, match="no parameter speed"):
        takes(SPEED)(lambda path: None)
    with pytest.raises(TypeError, match="declared twice"):

        @takes(SPEED)
        def clash(speed: Speed = None, rate: int = typer.Option(1)):
            pass

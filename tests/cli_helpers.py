"""Helpers for tests that drive the CLI in-process."""

from __future__ import annotations


def run_cli(*args):
    """Invoke `edgeproj ARGS...` through typer's CliRunner (stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from edgeproj.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res, *needles: str) -> str:
    """Assert exit code 2 with exactly one 'edgeproj: error:' line naming each needle, no traceback."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("edgeproj: error:"), lines[0]
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]

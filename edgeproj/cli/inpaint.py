"""`edgeproj inpaint` (placeholder until implemented)."""

import typer


def command():
    """Not implemented yet."""
    raise typer.Exit(1)

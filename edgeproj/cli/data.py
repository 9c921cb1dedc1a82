"""`edgeproj data ...` (placeholder)."""

import typer

app = typer.Typer(help="Data helpers: generate the demo data set, check a data folder.", no_args_is_help=True)

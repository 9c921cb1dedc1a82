"""Help that reads at 80 columns: plain text wrapped by click, the options in one section per panel.

Rich's option table gives every column a share of the width, so at 80 columns long option names and
values were cut with "..." and the help text got a 19-character column. Click's plain layout puts a long
option on its own line and wraps the help under it: nothing is cut. The panels that option groups
declare (`edgeproj.cli.groups`) become the section headings.
"""

from __future__ import annotations

from typer.core import TyperCommand

MARKUP = None  # plain help: the typer apps pass rich_markup_mode=MARKUP


class Command(TyperCommand):
    """A verb whose --help lists arguments, then the options panel by panel."""

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            default = "Arguments" if param.param_type_name == "argument" else "Options"
            sections.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        for name in sorted(sections, key=lambda n: (n != "Arguments", n != "Options")):
            with formatter.section(name):
                formatter.write_dl(sections[name])

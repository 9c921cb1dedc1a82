"""Option groups: a set of CLI options declared once, shown as one help panel, handed to the verb as one value.

A verb that takes the backend flags, or the sink flags of `inspect`, does not list them one by one: it
names a parameter for the group's value (a dataclass) and decorates itself with `@takes(GROUP)`. The
decorator adds the group's options to the signature typer reads, and on a call builds the value from
them, so every verb taking a group takes the same flags, with the same help, checked the same way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer


@dataclass(frozen=True)
class Flag:
    """One option of a group: its parameter name, type and typer.Option (made without a help panel)."""

    name: str
    annotation: Any
    option: Any


@dataclass(frozen=True)
class OptionGroup:
    """Options shown under `panel` in --help and turned into one value by `build(**flags)`."""

    param: str
    panel: str
    flags: tuple[Flag, ...]
    build: Callable[..., Any]

    def parameters(self) -> list[inspect.Parameter]:
        out = []
        for f in self.flags:
            option = f.option
            option.rich_help_panel = self.panel
            out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=f.annotation))
        return out


def takes(*groups: OptionGroup):
    """Decorator: the verb receives each group's built value in the parameter the group names."""

    def decorate(fn):
        own = inspect.signature(fn)
        replaced = {g.param for g in groups}
        missing = replaced - set(own.parameters)
        if missing:
            raise TypeError(f"{fn.__qualname__} has no parameter {', '.join(sorted(missing))} for its option group")
        # Only the options typer reads are resolved: a group's value may be annotated with a type imported
        # for type checking only, so that --help does not import the runtime.
        params = [_resolved(p, fn.__globals__) for p in own.parameters.values() if p.name not in replaced]
        taken = {p.name for p in params}
        for g in groups:
            for p in g.parameters():
                if p.name in taken:
                    raise TypeError(f"{fn.__qualname__}: option {p.name} is declared twice")
                taken.add(p.name)
                params.append(p)
        # Typer reads keyword-only parameters like any other; keep the verb's own ones first (arguments in order).
        params.sort(key=lambda p: p.kind == inspect.Parameter.KEYWORD_ONLY)

        @functools.wraps(fn)
        def verb(*args, **kwargs):
            for g in groups:
                kwargs[g.param] = g.build(**{f.name: kwargs.pop(f.name) for f in g.flags})
            return fn(*args, **kwargs)

        verb.__signature__ = own.replace(parameters=params)
        verb.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty}
        del verb.__wrapped__  # typer must read the new signature, not the verb's own
        return verb

    return decorate


def _resolved(p: inspect.Parameter, namespace: dict) -> inspect.Parameter:
    if isinstance(p.annotation, str):
        return p.replace(annotation=eval(p.annotation, namespace))  # noqa: S307 - the verb's own annotation
    return p


def flag(name: str, annotation: Any, default: Any, *decls: str, **option: Any) -> Flag:
    """A Flag from typer.Option arguments (`decls` are the option names, e.g. "--backend", "-b")."""
    return Flag(name, annotation, typer.Option(default, *decls, **option))

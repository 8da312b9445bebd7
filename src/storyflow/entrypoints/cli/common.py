"""Shared CLI plumbing: options, the service context, and output (JSON or human)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from storyflow.entrypoints.cli.plain import json_text, open_session

if TYPE_CHECKING:
    from storyflow.services.context import Context

F = TypeVar("F", bound=Callable[..., Any])

option = functools.partial(click.option, show_envvar=True)


def json_option(fn: F) -> F:
    return option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")(fn)


def actor_option(fn: F) -> F:
    return option(
        "--actor",
        envvar="STORYFLOW_ACTOR",
        help="Who acts (recorded in history and the Agent Log; default: your user name).",
    )(fn)


@contextmanager
def service_context(
    actor: str | None = None, *, new_database_ok: bool = False
) -> Iterator[Context]:
    """Open the workspace named by the root options; close the database afterwards."""
    root = click.get_current_context().find_root().obj or {}
    with open_session(
        root.get("workspace"), root.get("database_url"), actor, new_database_ok=new_database_ok
    ) as ctx:
        yield ctx


def emit_json(data: Any) -> None:
    click.echo(json_text(data))


def echo(text: str = "") -> None:
    click.echo(text)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A plain aligned table (Rich stays out of the hot path of scripting)."""
    if title:
        click.echo(title)
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(columns[i]), *(len(r[i]) for r in cells)) for i in range(len(columns))]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

"""The command-line reference page, from the Click command tree itself: every command, its
help, its arguments and its options with the STORYFLOW_* variable each one reads.

Rendered without Click's help formatter (which wraps to the terminal's width), so the page
is the same on every machine.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import click

from storyflow.services.reference_pages import code, table


def _walk(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    yield command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx))


def _help(command: click.Command) -> str:
    text = inspect.cleandoc(command.help or "").split("\f", 1)[0]
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def _envvar(option: click.Option, ctx: click.Context) -> str:
    if isinstance(option.envvar, str):
        return option.envvar
    if option.envvar:
        return ", ".join(option.envvar)
    if option.allow_from_autoenv and ctx.auto_envvar_prefix and option.name:
        return f"{ctx.auto_envvar_prefix}_{option.name.upper()}"
    return ""


def _value(option: click.Option) -> str:
    if option.is_flag:
        return ""
    if isinstance(option.type, click.Choice):
        return " [" + "\\|".join(str(c) for c in option.type.choices) + "]"
    return " " + (option.metavar or option.type.name.upper())


def _default(option: click.Option) -> str:
    default = option.default
    if not option.show_default or option.is_flag or default in (None, (), []):
        return ""
    return "(computed)" if callable(default) else code(default)


def _options(command: click.Command, ctx: click.Context) -> str:
    rows = []
    for param in command.params:
        if not isinstance(param, click.Option) or not param.expose_value:
            continue
        flags = ", ".join(param.opts + param.secondary_opts)
        env = _envvar(param, ctx)
        rows.append(
            [
                code(flags + _value(param)),
                code(env) if env else "-",
                _default(param) or "-",
                (param.help or "") + (" (repeatable)" if param.multiple else ""),
            ]
        )
    if not rows:
        return ""
    return "\n" + table(["option", "variable", "default", "what it does"], rows)


def _arguments(command: click.Command) -> str:
    names = [
        (p.human_readable_name + ("..." if p.nargs == -1 else ""), p.required)
        for p in command.params
        if isinstance(p, click.Argument)
    ]
    if not names:
        return ""
    listed = ", ".join(code(n) + ("" if required else " (optional)") for n, required in names)
    return f"\nArguments: {listed}.\n"


def cli_reference(root: click.Command, prog: str = "storyflow") -> str:
    """The Markdown page for ``root`` and every command below it."""
    # The root's own settings (help option names, variable prefix), as when it runs: Click
    # caches each command's help option from the first context that asks for it.
    settings = {"auto_envvar_prefix": prog.upper(), **root.context_settings}
    top = click.Context(root, info_name=prog, **settings)
    entries = list(_walk(root, top))
    toc = [
        f"- [`{ctx.command_path}`](#{ctx.command_path.replace(' ', '-')})"
        for command, ctx in entries[1:]
        if not isinstance(command, click.Group)
    ]
    parts = [
        "# Command-line reference\n\n"
        "Every option also reads the `STORYFLOW_*` variable shown (a flag beats its "
        "variable, which beats `storyflow.yaml` and the default). Every data command takes "
        "`--json`; errors and exit statuses are in [errors](errors.md).\n\n" + "\n".join(toc) + "\n"
    ]
    for command, ctx in entries:
        usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
        subcommands = ""
        if isinstance(command, click.Group):
            names = [
                f"[`{n}`](#{ctx.command_path.replace(' ', '-')}-{n})"
                for n in command.list_commands(ctx)
            ]
            subcommands = "\nCommands: " + ", ".join(names) + ".\n"
        parts.append(
            f"## `{ctx.command_path}`\n\n```\n{usage}\n```\n\n{_help(command)}\n"
            + _arguments(command)
            + subcommands
            + _options(command, ctx)
        )
    return "\n".join(parts)

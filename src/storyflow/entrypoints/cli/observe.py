"""storyflow trace, storyflow metrics: what happened, and what it added up to."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from storyflow.config import Config
from storyflow.domain.events import EVENT_TYPES, parse_event_type
from storyflow.entrypoints.cli.common import echo, emit_json, json_option, option, service_context
from storyflow.entrypoints.cli.render import (
    render_metrics,
    trace_header,
    trace_row,
)


def _config() -> Config:
    from storyflow.bootstrap import load_config

    root = click.get_current_context().find_root().obj or {}
    workspace = root.get("workspace")
    return load_config(
        workspace=Path(workspace) if workspace else None,
        flags={"database_url": root.get("database_url")},
    )


@click.command()
@click.argument("story_id", required=False)
@option(
    "--workspace",
    "whole_workspace",
    is_flag=True,
    help="The workspace trace: every event, of every story and of none.",
)
@option("--follow", "-f", is_flag=True, help="Keep printing new lines until interrupted (Ctrl-C).")
@option(
    "--type",
    "types",
    multiple=True,
    help="Only events of this type (repeatable): " + ", ".join(EVENT_TYPES) + ".",
)
@option("--tail", type=click.IntRange(min=0), help="Start with only the last N lines.")
@option(
    "--export-otlp",
    "otlp_endpoint",
    metavar="URL",
    help="Send the lines as spans to an OTLP/HTTP endpoint (pip install 'storyflow[otel]').",
)
@json_option
def trace(
    story_id: str | None,
    whole_workspace: bool,
    follow: bool,
    types: tuple[str, ...],
    tail: int | None,
    otlp_endpoint: str | None,
    as_json: bool,
) -> None:
    """A story's trace (STORY_ID) or the workspace's (--workspace): one line per event, with
    its trace and span ids. --json prints the JSONL lines as they are stored."""
    from storyflow.adapters.telemetry.jsonl import parse_line
    from storyflow.bootstrap import open_tracer
    from storyflow.domain.model import parse_story_id
    from storyflow.errors import UsageError

    if (story_id is None) == (not whole_workspace):
        raise UsageError(
            "name a story, or pass --workspace (not both)",
            hint="storyflow trace FLOW-001  |  storyflow trace --workspace",
        )
    if story_id is not None:
        parse_story_id(story_id)
        story_id = story_id.strip()
    wanted = {parse_event_type(t) for t in types}  # a typo would match nothing, silently
    config = _config()
    tracer = open_tracer(config)
    if story_id is not None and not tracer.path_for(story_id).exists():
        with service_context() as ctx:
            ctx.story(story_id)  # not found: exit 6; found: it has no events yet

    def keep(text: str) -> dict[str, Any] | None:
        line = parse_line(text)
        if line is None or (wanted and line.get("type") not in wanted):
            return None
        return line

    if otlp_endpoint:
        from storyflow.adapters.telemetry.otel import export

        parsed = [line for text in tracer.read(story_id) if (line := keep(text))]
        sent = export(parsed, otlp_endpoint)
        if as_json:
            emit_json({"exported_spans": sent, "endpoint": otlp_endpoint})
        else:
            echo(f"exported {sent} span(s) to {otlp_endpoint}")
        return

    with_story = story_id is None
    if not as_json:
        echo(trace_header(with_story))
    texts = list(tracer.read(story_id))
    start = 0  # the index of the first line to print
    if tail is not None:
        matching = [i for i, text in enumerate(texts) if keep(text) is not None]
        start = matching[-tail] if 0 < tail <= len(matching) else (0 if tail else len(texts))
    source = tracer.follow(story_id) if follow else iter(texts)
    try:
        for index, text in enumerate(source):
            if index >= start and (line := keep(text)) is not None:
                click.echo(text if as_json else trace_row(line, with_story))
                if follow:
                    sys.stdout.flush()
    except KeyboardInterrupt:
        return  # the way --follow ends


@click.command()
@click.argument("target", required=False, metavar="[ID|PREFIX]")
@option("--epic", help="The metrics of one epic (same as giving its PREFIX).")
@json_option
def metrics(target: str | None, epic: str | None, as_json: bool) -> None:
    """Tokens and USD per phase, story, epic and model; phase durations; gate pass rates;
    rework loops; cycle time; time in status. For a story (ID), an epic, or the workspace."""
    from storyflow.services.metrics import metrics as collect

    with service_context() as ctx:
        data = collect(ctx, target, epic)
    if as_json:
        emit_json(data)
        return
    render_metrics(data)

"""storyflow artifact submit|list|show|validate|schema."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from storyflow.entrypoints.cli.common import (
    actor_option,
    echo,
    emit_json,
    json_option,
    option,
    service_context,
    table,
)


@click.group()
def artifact() -> None:
    """Artifacts: story, elaboration, plan, proof, code_review, verification, qa_gate."""


@artifact.command("submit")
@click.argument("story_id")
@click.argument("kind")
# readable=False: an unreadable file is WORKSPACE_UNREADABLE (exit 7), not a usage error
@click.argument("path", required=False, type=click.Path(dir_okay=False, readable=False))
@actor_option
@json_option
def artifact_submit(
    story_id: str, kind: str, path: str | None, actor: str | None, as_json: bool
) -> None:
    """Validate, hash and store a new version of KIND for STORY_ID.

    PATH defaults to the newest conventionally named file in the story folder; a file from
    elsewhere is copied in under the layout's name."""
    from storyflow.services.artifacts import submit

    with service_context(actor) as ctx:
        # realpath, unlike resolve(), does not raise on a symlink loop: reading reports it
        source = Path(os.path.realpath(path)) if path else None
        result = submit(ctx, story_id, kind, source)
    if as_json:
        emit_json(result)
        return
    verdict = f" ({result['verdict']})" if result["verdict"] else ""
    state = "unchanged" if result["unchanged"] else "stored"
    echo(
        f"{result['story']}: {result['kind']} v{result['version']}{verdict} {state} "
        f"-> {result['path']}"
    )


@artifact.command("list")
@click.argument("story_id")
@json_option
def artifact_list(story_id: str, as_json: bool) -> None:
    """Every submitted version of every kind."""
    from storyflow.services.artifacts import artifact_json, list_artifacts

    with service_context() as ctx:
        rows = [artifact_json(a) for a in list_artifacts(ctx, story_id)]
    if as_json:
        emit_json(rows)
        return
    table(
        ["kind", "version", "verdict", "submitted", "by", "path"],
        [
            [
                r["kind"],
                r["version"],
                r["verdict"] or "",
                r["submitted_at"][:19],
                r["submitted_by"],
                r["path"],
            ]
            for r in rows
        ],
    )


@artifact.command("show")
@click.argument("story_id")
@click.argument("kind")
@option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    help="A past version (default: the latest).",
)
@option("--raw", is_flag=True, help="Print the file as submitted.")
@json_option
def artifact_show(story_id: str, kind: str, version: int | None, raw: bool, as_json: bool) -> None:
    """One version of an artifact: metadata and parsed content (or --raw text)."""
    from storyflow.services.artifacts import artifact_json, show_artifact

    with service_context() as ctx:
        found, text = show_artifact(ctx, story_id, kind, version)
    if raw and not as_json:
        click.echo(text, nl=False)
        return
    data = artifact_json(found, content=True)
    if raw:
        data["raw"] = text
    if as_json:
        emit_json(data)
        return
    from storyflow.adapters.files.yamlio import dump_yaml

    echo(
        f"{data['story']} {data['kind']} v{data['version']}"
        + (f" {data['verdict']}" if data["verdict"] else "")
        + f"  {data['path']}  ({data['submitted_by']}, {data['submitted_at'][:19]})"
    )
    click.echo(dump_yaml(data["content"]), nl=False)


@artifact.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, readable=False))
@option("--kind", required=True, help="The artifact kind to validate against.")
@option(
    "--coverage-threshold",
    type=float,
    help="Threshold for code reviews (default: the story's epic, else the workspace default).",
)
@json_option
def artifact_validate(
    path: str, kind: str, coverage_threshold: float | None, as_json: bool
) -> None:
    """Check a file against its schema and its own evidence, without storing anything."""
    from storyflow.adapters.files.atomic import read_text
    from storyflow.adapters.files.story_files import parse_artifact_text
    from storyflow.bootstrap import load_config
    from storyflow.config import load
    from storyflow.domain.artifacts import parse_kind
    from storyflow.errors import UsageError
    from storyflow.services.artifacts import check_content

    parsed_kind = parse_kind(kind)
    source = Path(path)
    threshold = coverage_threshold
    try:
        config = load_config()
    except UsageError:  # validation works outside a workspace too
        config = load(cwd=Path.cwd(), require_file=False)
    max_bytes = config.max_file_bytes
    if threshold is None:
        threshold = config.coverage_threshold
    raw = read_text(source, max_bytes=max_bytes, display=path)
    data = parse_artifact_text(raw, parsed_kind, source.name, path)
    content = check_content(
        parsed_kind, data, source=path, threshold=threshold, today=datetime.now(UTC).date()
    )
    if as_json:
        emit_json({"file": path, "kind": parsed_kind.value, "valid": True, "content": content})
    else:
        echo(f"{path}: valid {parsed_kind.value}")


@artifact.command("schema")
@click.argument("kind")
def artifact_schema(kind: str) -> None:
    """The JSON Schema of KIND."""
    from storyflow.domain.artifacts import parse_kind
    from storyflow.schemas.artifacts import json_schema

    emit_json(json_schema(parse_kind(kind)))

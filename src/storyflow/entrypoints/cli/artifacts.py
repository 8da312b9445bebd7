"""storyflow artifact submit|list|show|validate|schema."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from storyflow.domain.artifacts import ArtifactKind


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
    "--story",
    metavar="ID",
    help="Judge the file as 'artifact submit ID KIND PATH' would for this story (default: "
    "the story whose folder holds PATH, if any).",
)
@option(
    "--coverage-threshold",
    type=float,
    help="Threshold for code reviews (default: the story's epic's when the story is known, "
    "else the workspace default).",
)
@json_option
def artifact_validate(
    path: str, kind: str, story: str | None, coverage_threshold: float | None, as_json: bool
) -> None:
    """Check a file against its schema and its own evidence, without storing anything.

    With its story known (--story, or the story folder PATH lies in) the file is judged as
    submit would judge it: its story_id, its folder and name, the epic's coverage threshold.
    Without one, a missing story_id is fine: submit fills it in."""
    from storyflow.domain.artifacts import parse_kind
    from storyflow.domain.model import check_coverage_threshold, parse_story_id

    parsed_kind = parse_kind(kind)
    if coverage_threshold is not None:
        check_coverage_threshold(coverage_threshold)
    if story is not None:
        parse_story_id(story)
        story = story.strip()
    content, story_id = _judge(Path(path), path, parsed_kind, story, coverage_threshold)
    if as_json:
        emit_json(
            {
                "file": path,
                "kind": parsed_kind.value,
                "story": story_id,
                "valid": True,
                "content": content,
            }
        )
    else:
        echo(f"{path}: valid {parsed_kind.value}" + (f" for {story_id}" if story_id else ""))


def _judge(
    source: Path,
    display: str,
    kind: ArtifactKind,
    story_id: str | None,
    threshold: float | None,
) -> tuple[dict[str, Any], str | None]:
    """The content and the story it was judged for (None: judged on its own)."""
    from storyflow.adapters.files.atomic import read_text
    from storyflow.adapters.files.story_files import parse_artifact_text
    from storyflow.bootstrap import load_config
    from storyflow.config import load
    from storyflow.errors import UsageError
    from storyflow.services.artifact_validation import (
        folder_story_id,
        owner_by_location,
        validate_alone,
        validate_for_story,
    )

    root = click.get_current_context().find_root().obj or {}
    workspace = root.get("workspace")
    try:
        config = load_config(
            workspace=Path(workspace) if workspace else None,
            flags={"database_url": root.get("database_url")},
        )
    except UsageError:
        if story_id is not None or workspace:
            raise  # a story lives in a workspace's database
        # validation works outside a workspace too, against the defaults
        config = load(cwd=Path.cwd(), require_file=False)
    else:
        # only a named story or a story-named folder is worth opening the database for
        if story_id is not None or folder_story_id(source, config.root) is not None:
            with service_context() as ctx:
                if story_id is None:
                    story_id = owner_by_location(ctx, source)
                if story_id is not None:
                    content = validate_for_story(ctx, story_id, kind, source, threshold=threshold)
                    return content, story_id
    if threshold is None:
        threshold = config.coverage_threshold
    raw = read_text(source, max_bytes=config.max_file_bytes, display=display)
    data = parse_artifact_text(raw, kind, source.name, display)
    content = validate_alone(
        kind, data, source=display, threshold=threshold, today=datetime.now(UTC).date()
    )
    return content, None


@artifact.command("schema")
@click.argument("kind")
def artifact_schema(kind: str) -> None:
    """The JSON Schema of KIND."""
    from storyflow.domain.artifacts import parse_kind
    from storyflow.schemas.artifacts import json_schema

    emit_json(json_schema(parse_kind(kind)))

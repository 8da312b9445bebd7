"""Artifacts: validate, hash and register each submission as a new version."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from storyflow.domain import gates
from storyflow.domain.artifacts import VERDICT_FIELD, ArtifactKind, parse_kind, submitted_action
from storyflow.domain.model import ArtifactVersion, Epic, Story, parse_story_id
from storyflow.errors import InvalidInput, NotFoundError, RuleViolation
from storyflow.services.context import Context
from storyflow.services.projection import check_story_file, render_after_commit
from storyflow.services.unit_of_work import change


def check_content(
    kind: ArtifactKind, data: Any, *, source: str, threshold: float, today: Any
) -> dict[str, Any]:
    """Schema, then evidence: the normalised content, or the error that refuses it."""
    from storyflow.schemas.artifacts import validate

    if not isinstance(data, dict):
        raise InvalidInput(
            f"{source}: expected a mapping of fields",
            code="SCHEMA_INVALID",
            hint=f"storyflow artifact schema {kind.value}",
        )
    content = validate(kind, data, source=source)
    problems = gates.contradictions(kind, content, threshold=threshold, today=today)
    if problems:
        raise RuleViolation(
            f"{source}: the {kind.value} contradicts its own evidence: {problems[0]}",
            code="GATE_CONTRADICTION",
            hint="make the verdict follow from the evidence (or fix the evidence)",
            details={"file": source, "kind": kind.value, "problems": problems},
        )
    return content


def kind_row(kind: ArtifactKind, content: dict[str, Any], today: Any) -> tuple[str, dict[str, Any]]:
    if kind is ArtifactKind.ELABORATION:
        return "workflow_elaborations", {
            "verdict": content["verdict"],
            "conditions": "\n".join(content.get("conditions") or []) or None,
        }
    if kind is ArtifactKind.PLAN:
        migration = all(
            content.get(k) for k in ("migration_path", "backward_compatibility", "migration_tests")
        )
        return "workflow_plans", {"approach": content["approach"], "has_migration_plan": migration}
    if kind is ArtifactKind.PROOF:
        checks = content.get("checks") or {}
        return "workflow_proof", {
            "lint": checks.get("lint", "not_run"),
            "typecheck": checks.get("typecheck", "not_run"),
            "tests": checks.get("tests", "not_run"),
            "reuse_documented": not gates.reuse_problems(content),
            "coverage": content.get("coverage"),
        }
    if kind is ArtifactKind.CODE_REVIEW:
        blocking = [
            f
            for f in content.get("findings") or []
            if f.get("severity") in gates.BLOCKING_REVIEW_SEVERITIES
        ]
        return "workflow_code_reviews", {
            "verdict": content["verdict"],
            "coverage": content.get("coverage"),
            "blocking_findings": len(blocking),
        }
    if kind is ArtifactKind.VERIFICATION:
        return "workflow_verification", {
            "verdict": content["verdict"],
            "failures": len(gates.verification_failures(content)),
            "passing_scenarios": len(gates.passing_scenarios(content)),
        }
    if kind is ArtifactKind.QA_GATE:
        waiver = content.get("waiver") or {}
        return "workflow_qa_gates", {
            "decision": content["decision"],
            "computed_decision": gates.computed_gate_decision(content).value,
            "waiver_approver": waiver.get("approver"),
            "waiver_expires": waiver.get("expires"),
        }
    return "", {}


def _source_path(
    ctx: Context, epic: Epic, story: Story, kind: ArtifactKind, path: Path | None
) -> Path:
    if path is not None:
        return path
    if kind is ArtifactKind.STORY:
        return ctx.files.story_file(epic, story)
    found = ctx.files.discover(epic, story, kind)
    if found is None:
        layout = ctx.files.layout(epic)
        expected = layout.artifact_file_name(kind, story.id, ctx.now())
        folder = ctx.files.rel(ctx.files.locate(epic, story))
        raise NotFoundError(
            f"no {kind.value} file in {folder}",
            code="ARTIFACT_NOT_FOUND",
            hint=f"write {folder}/{expected} (or pass its PATH)",
            details={"story": story.id, "kind": kind.value, "folder": folder},
        )
    return found


def _destination(
    ctx: Context, epic: Epic, story: Story, kind: ArtifactKind, source: Path, raw: str
) -> tuple[Path, str]:
    """Where the submission is stored in the story folder, and its text there: a YAML file
    submitted under the flat layout's Markdown name becomes that file's front matter (and a
    Markdown one under a YAML name its fields as YAML), so every stored file reads back."""
    from storyflow.adapters.files.storydoc import artifact_text_as

    layout = ctx.files.layout(epic)
    folder = ctx.files.locate(epic, story)
    if source.parent.resolve() == folder.resolve() and layout.match(source.name, story.id) is kind:
        return source, raw
    local = ctx.now().astimezone(ZoneInfo(epic.timezone))
    # never overwrite an earlier submission stamped in the same minute: a name of its own
    # (fixed names are overwritten; the database keeps every version)
    name = layout.new_artifact_file_name(kind, story.id, local, ctx.files.folder_files(epic, story))
    target = folder / name
    stored = artifact_text_as(raw, kind, source.name, target.name, story.id)
    _, serial = layout.stamp_key(name, story.id)
    if serial > 1:
        newest = folder / layout.artifact_file_name(kind, story.id, local, serial - 1)
        if _content(newest) == stored:  # the same file submitted again: the same name
            return newest, stored
    return target, stored


def _content(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def submit(ctx: Context, story_id: str, kind_name: str, path: Path | None = None) -> dict[str, Any]:
    """Validate, hash and store a new version; record the verdict; append to the Agent Log."""
    return record(ctx, prepare(ctx, story_id, kind_name, path))


@dataclass(frozen=True, kw_only=True)
class Submission:
    """An artifact file read, validated and hashed: what ``record`` stores. Preparing it
    reads files only, so the run engine does it before its write transaction."""

    story: Story
    epic: Epic
    kind: ArtifactKind
    source: Path
    destination: Path
    raw: str
    digest: str
    content: dict[str, Any]
    verdict: str | None


def prepare(
    ctx: Context,
    story_id: str,
    kind_name: str,
    path: Path | None = None,
    *,
    read: tuple[Story, Epic] | None = None,
    threshold: float | None = None,
) -> Submission:
    """Read, validate and hash an artifact for ``story_id`` (no writes at all). ``read``:
    the story and its epic when the caller has just read them (the run engine);
    ``threshold``: a coverage threshold instead of the epic's (artifact validate's flag)."""
    parse_story_id(story_id)
    kind = parse_kind(kind_name)
    if read is not None and read[0].id == story_id:
        story, epic = read
    else:
        story = ctx.story(story_id)
        epic = ctx.epic(story.epic)
    source = _source_path(ctx, epic, story, kind, path)
    ctx.files.check_ownership(epic, story, source)
    display = ctx.files.rel(source)
    raw, data = ctx.files.read_artifact(source, kind, display)
    if kind is ArtifactKind.STORY:
        claimed = data.get("id") if isinstance(data, dict) else None
    else:
        claimed = data.get("story_id") if isinstance(data, dict) else None
        if isinstance(data, dict) and claimed is None:
            data = {**data, "story_id": story.id}
    if claimed is not None and claimed != story.id:
        raise InvalidInput(
            f"{display} says it is for {claimed}, not {story.id}",
            code="ARTIFACT_STORY_MISMATCH",
            hint=f"submit it for {claimed}, or fix its story_id",
            details={"file": display, "story": story.id, "belongs_to": str(claimed)},
        )
    now = ctx.now()
    if threshold is None:
        threshold = epic.settings.coverage_threshold
    content = check_content(kind, data, source=display, threshold=threshold, today=now.date())
    from storyflow.adapters.files.story_files import sha256_text

    destination, raw = _destination(ctx, epic, story, kind, source, raw)
    verdict_field = VERDICT_FIELD.get(kind)
    return Submission(
        story=story,
        epic=epic,
        kind=kind,
        source=source,
        destination=destination,
        raw=raw,
        digest=sha256_text(raw),
        content=content,
        verdict=content.get(verdict_field) if verdict_field else None,
    )


def record(ctx: Context, submission: Submission) -> dict[str, Any]:
    """Store a prepared artifact as the story's next version, in one transaction (or in the
    caller's): the same file again in the same status changes nothing."""
    sub = submission
    story_id, kind = sub.story.id, sub.kind
    now = ctx.now()
    with change(ctx) as pending:
        current = ctx.story(story_id)
        latest = ctx.store.latest_artifact(story_id, kind)
        dest_rel = sub.destination.name  # relative to the story folder, which moves by stage
        if (
            latest is not None
            and latest.sha256 == sub.digest
            and latest.path == dest_rel
            and latest.story_version > ctx.store.entered_version(story_id, current.status)
        ):
            # The same file again in the same status: idempotent, no new version.
            return _result(
                story_id,
                kind,
                version=latest.version,
                verdict=latest.verdict,
                path=latest.path,
                sha256=latest.sha256,
                unchanged=True,
            )
        check_story_file(ctx, sub.epic, current)
        touched = replace(current, version=current.version + 1, updated_at=now)
        ctx.store.cas_update_story(touched, current.version)
        version = (latest.version + 1) if latest else 1
        artifact_id = ctx.store.insert_artifact(
            story_id=story_id,
            kind=kind,
            version=version,
            path=dest_rel,
            sha256=sub.digest,
            raw=sub.raw,
            content=sub.content,
            verdict=sub.verdict,
            story_version=touched.version,
            submitted_by=ctx.actor,
            submitted_at=now,
        )
        table, values = kind_row(kind, sub.content, now.date())
        if table:
            ctx.store.insert_kind_row(
                table,
                {"artifact_id": artifact_id, "story_id": story_id, "version": version, **values},
            )
        ctx.store.insert_event(
            type="artifact",
            at=now,
            story_id=story_id,
            epic=sub.epic.prefix,
            actor=ctx.actor,
            payload={
                "kind": kind.value,
                "version": version,
                "verdict": sub.verdict,
                "path": dest_rel,
                "sha256": sub.digest,
            },
        )
        action = submitted_action(kind, version, sub.verdict, sub.raw)
        # stamped as submitted_at: a clone that syncs takes the version's time from the row
        row = ctx.log_row(sub.epic, action, sub.destination.name, at=now)
        ctx.store.append_log(story_id, [row])
        if sub.destination != sub.source:
            pending.add(sub.destination, sub.raw)
    render_after_commit(ctx, sub.epic, touched.id, budget=False)
    # the version this call stored (a re-read after the commit could see a newer one)
    return _result(
        story_id,
        kind,
        version=version,
        verdict=sub.verdict,
        path=dest_rel,
        sha256=sub.digest,
        unchanged=False,
    )


def _result(
    story_id: str,
    kind: ArtifactKind,
    *,
    version: int,
    verdict: str | None,
    path: str,
    sha256: str,
    unchanged: bool,
) -> dict[str, Any]:
    return {
        "story": story_id,
        "kind": kind.value,
        "version": version,
        "verdict": verdict,
        "path": path,
        "sha256": sha256,
        "unchanged": unchanged,
    }


def artifact_json(artifact: ArtifactVersion, *, content: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "story": artifact.story_id,
        "kind": artifact.kind.value,
        "version": artifact.version,
        "verdict": artifact.verdict,
        "path": artifact.path,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "submitted_by": artifact.submitted_by,
        "submitted_at": artifact.submitted_at.isoformat(),
    }
    if content:
        data["content"] = artifact.content
    return data


def list_artifacts(ctx: Context, story_id: str) -> list[ArtifactVersion]:
    parse_story_id(story_id)
    ctx.story(story_id)
    return ctx.store.list_artifacts(story_id)


def show_artifact(
    ctx: Context, story_id: str, kind_name: str, version: int | None = None
) -> tuple[ArtifactVersion, str]:
    parse_story_id(story_id)
    kind = parse_kind(kind_name)
    ctx.story(story_id)
    if version is None:
        latest = ctx.store.latest_artifact(story_id, kind)
        version = latest.version if latest else 0
    # no story has 2**31 versions; a larger number would overflow the database's integer
    found = ctx.store.artifact_version(story_id, kind, version) if 0 < version < 2**31 else None
    if found is None:
        raise NotFoundError(
            f"{story_id} has no {kind.value}" + (f" version {version}" if version else ""),
            code="ARTIFACT_NOT_FOUND",
            hint=f"storyflow artifact list {story_id}",
            details={"story": story_id, "kind": kind.value, "version": version},
        )
    return found

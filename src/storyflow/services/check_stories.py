"""The checks of one story folder: file names, the story file (schema, front matter and
Agent Log against the database, tokens), the folder's place, and every artifact in it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from storyflow.domain import gates
from storyflow.domain.artifacts import VERDICT_FIELD, ArtifactKind
from storyflow.domain.budgets import BudgetPhase, PhaseBudget
from storyflow.domain.checks import (
    AuditRows,
    LogIssueKind,
    compare_log,
    conflict_line,
    front_matter_drift,
    story_file_is_draft,
    story_ids_in,
    unrecorded_phases,
)
from storyflow.domain.findings import Finding
from storyflow.domain.layouts import LAYOUTS, STAGES, LayoutName, legacy_kind, stage_for
from storyflow.domain.model import AcceptancePart, Epic, Story
from storyflow.domain.statuses import Status, parse_status
from storyflow.errors import StoryflowError
from storyflow.services.check_folders import StoryFolder, infer_layout
from storyflow.services.ports import FilesPort
from storyflow.services.projection import budget_drift, measurements_added, token_budget_block
from storyflow.services.source_lines import SourceLines, scan_lines

# The engine's own files in a story folder (adapters/files/story_files.ENGINE_FILES; a test
# keeps the two equal).
ENGINE_FILE_NAMES = frozenset({"METRICS.yaml", "trace.jsonl"})

Validate = Callable[..., dict[str, Any]]
_ANY_ID = "ID-000"


@dataclass(kw_only=True)
class StoryCheck:
    """One folder to check, and what the database says about its story."""

    folder: StoryFolder
    epic: Epic | None
    story: Story | None  # None when the database does not know it (or for a duplicate)
    audit: AuditRows
    today: date
    threshold: float
    validate: Validate
    budgets: Mapping[BudgetPhase, PhaseBudget] | None = None  # the epic's, for Token Budget
    findings: list[Finding] = field(default_factory=list)
    files_read: int = 0
    depends_on: list[str] | None = None  # from the story file, for the dependency graph
    story_file: str | None = None
    depends_line: int | None = None
    claims: str | None = None  # the id the story file states when it is not its folder's

    def add(
        self, code: str, message: str, *, file: str | None, line: int | None = None, hint: str = ""
    ) -> None:
        self.findings.append(
            Finding(
                code=code,
                message=message,
                file=file,
                line=line,
                story=self.folder.id,
                hint=hint,
            )
        )


def _error_line(exc: StoryflowError, lines: SourceLines | None, kind: ArtifactKind) -> int | None:
    line = exc.details.get("line")
    if isinstance(line, int):
        return line
    if lines is None:
        return None
    errors = exc.details.get("errors") or []
    if errors:
        return _field_line(lines, str(errors[0].get("field", "")))
    return lines.of(VERDICT_FIELD.get(kind, "id"))


def _conflicted(item: StoryCheck, raw: str, path: str) -> bool:
    line = conflict_line(raw) if ("<<<<<<<" in raw or ">>>>>>>" in raw) else None
    if line is not None:
        item.add(
            "CHECK_MERGE_CONFLICT",
            f"unresolved merge conflict at line {line}",
            file=path,
            line=line,
        )
    return line is not None


def _field_line(lines: SourceLines, name: str) -> int | None:
    parts = name.split(".")
    if parts[0] == "agent_log" and len(parts) > 1 and parts[1].isdigit():
        return lines.log_row(int(parts[1]))
    return lines.of(name)


def check_folder(files: FilesPort, item: StoryCheck) -> None:
    folder = item.folder
    layout = LAYOUTS[infer_layout(folder, item.epic)]
    story_name = layout.story_file_name(folder.id)
    artifacts: list[tuple[str, ArtifactKind]] = []
    for name in folder.files:
        path = f"{folder.path}/{name}"
        others = sorted({i for i in story_ids_in(name) if i != folder.id})
        # The same ID in every call keeps the layout's regular expressions in re's cache.
        kind = None if others else layout.match(name.replace(folder.id, _ANY_ID), _ANY_ID)
        if name == story_name or name in ENGINE_FILE_NAMES:
            continue
        if kind is not None:
            artifacts.append((name, kind))
        elif others:
            item.add("CHECK_NAMING", f"{name} is named for {others[0]}, not {folder.id}", file=path)
        elif (old := legacy_kind(name)) is not None:
            item.add(
                "CHECK_LEGACY_NAME",
                f"{name} is a legacy name for the {old.value}",
                file=path,
                hint=f"storyflow artifact submit {folder.id} {old.value} {path} stores it as "
                f"the {layout.name.value} layout names it; then delete {name}",
            )
            artifacts.append((name, old))
        else:
            item.add(
                "CHECK_NAMING",
                f"{name} does not follow the {layout.name.value} layout's file names",
                file=path,
            )
    status = _check_story_file(files, item, layout.name, story_name)
    _check_place(item, layout.name, status)
    for name, kind in artifacts:
        _check_artifact(files, item, name, kind)


def _check_story_file(
    files: FilesPort, item: StoryCheck, layout: LayoutName, name: str
) -> Status | None:
    """Check the story file; return the status the folder's place should follow."""
    folder, story = item.folder, item.story
    path = f"{folder.path}/{name}"
    item.story_file = path
    if name not in folder.files:
        item.add(
            "CHECK_MISSING_STORY_FILE",
            f"{folder.path}/ has no story file {name}",
            file=path,
            hint=f"storyflow story render {folder.id}" if story else "write the story file",
        )
        return story.status if story else None
    lines: SourceLines | None = None
    try:
        raw = files.read_rel(path)
        item.files_read += 1
        if _conflicted(item, raw, path):
            return story.status if story else None
        lines = scan_lines(raw, markdown=name.endswith(".md"))
        content = files.parse_artifact(raw, ArtifactKind.STORY, name, path)
    except StoryflowError as exc:
        item.add("CHECK_UNREADABLE", exc.message, file=path, line=exc.details.get("line"))
        return story.status if story else None
    if content.get("id") != folder.id:
        item.claims = str(content.get("id"))
        item.add(
            "CHECK_NAMING",
            f"the story file says id {content.get('id')!r} but its folder is {folder.id}",
            file=path,
            line=lines.of("id"),
        )
    deps = content.get("depends_on")
    item.depends_on = [str(d) for d in deps] if isinstance(deps, list) else []
    item.depends_line = lines.of("depends_on")
    file_status: Status | None = None
    with contextlib.suppress(StoryflowError):
        file_status = parse_status(str(content.get("status")))[0]
    _story_schema(item, content, lines, path, file_status)
    if story is None:
        return file_status
    for drift in front_matter_drift(content, story):
        status_field = drift.field == "status"
        item.add(
            "CHECK_STATUS_DRIFT" if status_field else "CHECK_FIELD_DRIFT",
            f"{drift.field} is {drift.file_value} in the file, {drift.db_value} in the database",
            file=path,
            line=lines.of(drift.field),
            hint=ENGINE_OWNED_HINT.format(id=story.id) if drift.field == "created_at" else "",
        )
    _check_log(item, content.get("agent_log"), lines, path)
    _check_token_budget(item, content.get("token_budget"), lines, path)
    if story.status is Status.COMPLETED and _asks_for_tokens(item.epic):
        missing = unrecorded_phases(
            item.audit.entered.get(story.id, frozenset()),
            item.audit.token_phases.get(story.id, frozenset()),
        )
        if missing:
            item.add(
                "CHECK_TOKENS_MISSING",
                f"{story.id} is completed with no tokens recorded for "
                + ", ".join(p.value for p in missing),
                file=path,
                line=lines.of("token_budget"),
                hint=f"storyflow token log {story.id} {missing[0].value} --input N --output M",
            )
    return story.status


# created_at is the engine's (a rebuild reads it from the file): never applied, only undone.
ENGINE_OWNED_HINT = (
    "storyflow renders it and keeps no hand edit of it: storyflow story render {id} (or "
    "storyflow sync) restores the file"
)


def _check_token_budget(item: StoryCheck, found: Any, lines: SourceLines, path: str) -> None:
    """The Token Budget section is rendered from the ledger and the epic's budgets, never
    edited by hand: a section that says otherwise (edited, or stale after an epic's budget
    settings changed) is drift. A file without the section is left to the projection."""
    story, epic = item.story, item.epic
    if story is None or epic is None or item.budgets is None or found is None:
        return
    expected = token_budget_block(item.budgets, story, epic, item.audit.ledger.get(story.id, []))
    differ = budget_drift(found, expected)
    if differ:
        added = isinstance(found, dict) and measurements_added(
            found.get("actual_measurements"), expected["actual_measurements"]
        )
        item.add(
            "CHECK_TOKEN_BUDGET_DRIFT",
            "the Token Budget section differs from the ledger and budgets: " + "; ".join(differ),
            file=path,
            line=lines.of("token_budget"),
            hint=(
                "storyflow sync logs the entries added (storyflow story render "
                f"{story.id} drops them)"
                if added
                else f"storyflow story render {story.id} re-renders it (the section is never "
                "edited by hand but to add measurements; storyflow token log records usage)"
            ),
        )


def _asks_for_tokens(epic: Epic | None) -> bool:
    """Whether the acceptance rule the story was completed under asks for tokens recorded
    for every phase run (the epic's plan names the parts; all four by default)."""
    return epic is None or AcceptancePart.TOKENS in epic.settings.acceptance


def _story_schema(
    item: StoryCheck,
    content: dict[str, Any],
    lines: SourceLines,
    path: str,
    file_status: Status | None,
) -> None:
    story = item.story
    if story is not None:
        status, blocked_from = story.status, story.blocked_from
        entered: frozenset[Status] | None = item.audit.entered.get(story.id, frozenset())
    else:
        status, blocked_from, entered = file_status or Status.PENDING, None, None
    draft = story_file_is_draft(status, blocked_from, entered)
    try:
        item.validate(ArtifactKind.STORY, dict(content), source=path)
    except StoryflowError as exc:
        errors = [
            e
            for e in exc.details.get("errors") or [{"field": "", "problem": exc.message}]
            if not (draft and str(e.get("field", "")).startswith("reuse_plan"))
        ]
        if errors:
            first = errors[0]
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            where = f"field {first['field']}: " if first.get("field") else ""
            item.add(
                "CHECK_SCHEMA",
                f"story file {where}{first['problem']}{more}",
                file=path,
                line=_field_line(lines, str(first.get("field", ""))),
            )


def _check_log(item: StoryCheck, rows: Any, lines: SourceLines, path: str) -> None:
    story_id = item.folder.id
    recorded = item.audit.log.get(story_id, [])
    for issue in compare_log(rows if isinstance(rows, list) else [], recorded):
        line = lines.log_row(issue.file_index)
        span = str(issue.first_seq)
        if issue.last_seq != issue.first_seq:
            span += f"-{issue.last_seq}"
        if issue.kind is LogIssueKind.EDITED and issue.recorded is not None:
            r = issue.recorded
            item.add(
                "CHECK_AGENT_LOG_EDITED",
                f"Agent Log row {span} differs from the recorded row: "
                f"| {r.timestamp} | {r.agent} | {r.action} | {r.outputs} |",
                file=path,
                line=line,
            )
        elif issue.kind is LogIssueKind.REMOVED:
            at_end = issue.file_index is None
            item.add(
                "CHECK_AGENT_LOG_REMOVED",
                f"Agent Log row(s) {span} of {len(recorded)} recorded in the database "
                + ("are missing at the end of the file" if at_end else "were removed here"),
                file=path,
                line=line,
                hint=f"storyflow story render {story_id} appends them" if at_end else "",
            )
        else:
            item.add(
                "CHECK_AGENT_LOG_UNRECORDED",
                f"Agent Log row {(issue.file_index or 0) + 1} is not in the database",
                file=path,
                line=line,
            )
    broken = item.audit.chain_breaks.get(story_id)
    if broken is not None:
        item.add(
            "CHECK_AGENT_LOG_CHAIN",
            f"the database's Agent Log row {broken} of {story_id} does not match its hash chain",
            file=path,
        )


def _check_place(item: StoryCheck, layout: LayoutName, status: Status | None) -> None:
    folder, epic, story = item.folder, item.epic, item.story
    grand, _, stage = folder.parent.rpartition("/")
    staged = LAYOUTS[layout].staged
    if epic is not None:
        root = epic.root.strip("/")
        placed = (grand == root and stage in STAGES) if staged else folder.parent == root
        if not placed:
            where = f"{root}/<stage>/" if staged else f"{root}/"
            item.add(
                "CHECK_MISPLACED_FOLDER",
                f"{folder.id}'s folder is in {folder.parent}/; epic {epic.prefix} keeps its "
                f"stories in {where}",
                file=folder.path,
            )
            return
    if not staged or stage not in STAGES or status is None:
        return
    blocked_from = story.blocked_from if story else None
    expected = stage_for(status, blocked_from)
    if stage != expected:
        hint = (
            f"storyflow story render {folder.id} moves it"
            if story
            else f"move the folder to {grand}/{expected}/"
        )
        item.add(
            "CHECK_STAGE_FOLDER",
            f"{folder.id} is {status.value} (stage {expected}/) but its folder is in {stage}/",
            file=folder.path,
            hint=hint,
        )


def _parse_artifact(files: FilesPort, raw: str, kind: ArtifactKind, name: str, path: str) -> Any:
    """The artifact's fields. ``storyflow artifact submit`` stores a submitted YAML file
    verbatim under the layout's name, Markdown or not: such a file is read as the YAML it
    is (a Markdown file without front matter that is not a YAML mapping either is refused
    as Markdown, with the Markdown error)."""
    if name.endswith(".md") and not raw.startswith("---"):
        with contextlib.suppress(StoryflowError):
            data = files.parse_artifact(raw, kind, name[:-3] + ".yaml", path)
            if isinstance(data, dict):
                return data
    return files.parse_artifact(raw, kind, name, path)


def _check_artifact(files: FilesPort, item: StoryCheck, name: str, kind: ArtifactKind) -> None:
    story_id = item.folder.id
    path = f"{item.folder.path}/{name}"
    lines: SourceLines | None = None
    try:
        raw = files.read_rel(path)
        item.files_read += 1
        if _conflicted(item, raw, path):
            return
        markdown = name.endswith(".md") and raw.startswith("---")
        lines = scan_lines(raw, markdown=markdown)
        data = _parse_artifact(files, raw, kind, name, path)
    except StoryflowError as exc:
        item.add("CHECK_UNREADABLE", exc.message, file=path, line=exc.details.get("line"))
        return
    if not isinstance(data, dict):
        item.add("CHECK_SCHEMA", f"{path}: expected a mapping of fields", file=path)
        return
    claimed = data.get("story_id")
    if claimed is not None and claimed != story_id:
        item.add(
            "CHECK_ARTIFACT_STORY_MISMATCH",
            f"{name} says it is for {claimed}, but lies in {story_id}'s folder",
            file=path,
            line=lines.of("story_id"),
        )
        return
    try:
        content = item.validate(kind, {**data, "story_id": story_id}, source=path)
    except StoryflowError as exc:
        item.add("CHECK_SCHEMA", exc.message, file=path, line=_error_line(exc, lines, kind))
        return
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    submitted = item.audit.submitted.get((story_id, digest))
    # A waiver is judged on the day it was submitted, not on every later check.
    today = date.fromisoformat(submitted[:10]) if submitted else item.today
    for problem in gates.contradictions(kind, content, threshold=item.threshold, today=today):
        item.add(
            "CHECK_GATE_CONTRADICTION",
            f"the {kind.value} contradicts its own evidence: {problem}",
            file=path,
            line=lines.of(VERDICT_FIELD.get(kind, "story_id")),
        )

"""Rebuild: stories the database does not know, read back from their folders in bulk.

Each story file gives the story's fields, its history (the Agent Log) and its ledger (the
Token Budget block); each artifact file named by a "KIND vN submitted" row of the log is
registered as that version, with its parsed content and verdict. Nothing goes through
the per-story services: the rows are collected here and inserted by the sync store in
large batches, inside the sync's one transaction. What a file asks for beyond its history
(a status it was hand-edited to, an artifact no row names) is returned as a follow-up that
the sync applies through the rules afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from storyflow.domain.artifacts import VERDICT_FIELD, ArtifactKind, fingerprint
from storyflow.domain.budgets import Enforcement
from storyflow.domain.layouts import LAYOUTS
from storyflow.domain.model import AgentLogRow, Epic, Story, parse_story_id
from storyflow.domain.statuses import Status, parse_status
from storyflow.errors import InvalidInput, StoryflowError
from storyflow.services.artifacts import check_content, kind_row
from storyflow.services.context import Context
from storyflow.services.sync_fields import editable_fields
from storyflow.services.sync_history import (
    History,
    Submission,
    ledger,
    log_rows,
    missing_file_error,
    missing_files,
    parse_time,
    replay,
    split_measurements,
    token_rows,
)
from storyflow.services.sync_ports import (
    RebuildRows,
    ScannedFile,
    StoryFolder,
    SyncFilesPort,
    SyncRecord,
)
from storyflow.services.sync_read import (
    conflict_marker_line,
    file_sha,
    merge_conflict,
    read_story,
)
from storyflow.services.sync_report import Problem, SyncReport


@dataclass(kw_only=True)
class Candidate:
    """A story folder whose story the database does not have."""

    epic: Epic
    folder: StoryFolder
    story_file: ScannedFile | None
    artifacts: list[tuple[ScannedFile, ArtifactKind]]


@dataclass(kw_only=True)
class Imported:
    """A story read from its folder, with what the sync still has to do for it."""

    story: Story
    epic: Epic
    folder: StoryFolder
    file_fields: dict[str, Any]
    blocked_reason: Any = None  # the file's, for a status hand-edited to blocked
    records: list[SyncRecord] = field(default_factory=list)
    new_artifacts: list[tuple[ScannedFile, ArtifactKind]] = field(default_factory=list)
    missing: list[Submission] = field(default_factory=list)  # named by a row, not in the folder
    added: list[Any] = field(default_factory=list)  # measurements added by hand: logged after
    needs_render: bool = False

    @property
    def status_request(self) -> Status | None:
        wanted = Status(self.file_fields["status"])
        return None if wanted is self.story.status else wanted


def prepare(
    ctx: Context,
    files: SyncFilesPort,
    candidates: list[Candidate],
    known: set[str],
    report: SyncReport,
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[RebuildRows, list[Imported]]:
    """Read every candidate (in ``jobs`` processes; default: by size and CPUs); return the
    rows to insert and the imported stories."""
    from storyflow.services.rebuild_read import default_jobs, read_all

    workers = default_jobs(len(candidates)) if jobs is None else jobs
    imported: list[Imported] = []
    prepared: dict[str, RebuildRows] = {}
    for result in read_all(ctx, files, candidates, jobs=workers, progress=progress):
        report.problems.extend(result.problems)
        for story_id, path in result.claimed.items():
            report.claimed.setdefault(story_id, path)
        report.read += result.read
        report.parsed += result.parsed
        if result.imported is not None and result.rows is not None:
            imported.append(result.imported)
            prepared[result.imported.story.id] = result.rows
    for item in imported:
        if item.missing:
            report.problems.append(_not_registered(item))
    keep = _linkable(imported, known, report)
    rows = RebuildRows(at=ctx.now())
    for item in imported:
        if item.story.id in keep:
            story_rows = prepared[item.story.id]
            rows.stories.append(item.story)
            rows.transitions.extend(story_rows.transitions)
            rows.log_rows.extend(story_rows.log_rows)
            rows.artifacts.extend(story_rows.artifacts)
            rows.approvals.extend(story_rows.approvals)
            rows.ledger.extend(story_rows.ledger)
    return rows, [i for i in imported if i.story.id in keep]


def prepare_story(
    ctx: Context, files: SyncFilesPort, candidate: Candidate, report: SyncReport
) -> tuple[Imported, RebuildRows] | None:
    folder, epic = candidate.folder, candidate.epic
    story_id = folder.story_id
    if candidate.story_file is None:
        layout = LAYOUTS[epic.layout]
        report.problems.append(
            Problem(
                code="FILE_NOT_FOUND",
                message=f"{folder.path}/ has no {layout.story_file_name(story_id)}",
                hint="write the story file (or remove the folder), then sync again",
                file=folder.path,
                story=story_id,
            )
        )
        return None
    path = candidate.story_file.path
    found = read_story(files, path, story_id, report)
    if found is None:
        return None
    loaded, doc = found
    try:
        fields = editable_fields(doc.meta, doc.text, path)
        rows = log_rows(doc.agent_log, path)
        history = replay(story_id, rows, Status(fields["status"]), path)
        block, added = split_measurements(doc.token_budget, token_rows(rows))
        entries = ledger(story_id, block, ctx.config, path)
        story = _story(ctx, epic, story_id, fields, doc.meta, rows, history, path)
    except StoryflowError as exc:
        report.problems.append(Problem.from_error(exc, file=path, story=story_id))
        return None
    if history.synthetic_creation:
        row = ctx.log_row(epic, "story created (pending)", path.rsplit("/", 1)[-1])
        rows = [row]
        history.transitions.append(
            {
                "story_id": story_id,
                "source": None,
                "target": Status.PENDING,
                "actor": ctx.actor,
                "reason": "created",
                "forced": False,
                "budget_confirmed": False,
                "story_version": 1,
                "at": ctx.now(),
            }
        )
    result = Imported(
        story=story,
        epic=epic,
        folder=folder,
        file_fields=fields,
        blocked_reason=doc.meta.get("blocked_reason"),
        needs_render=history.synthetic_creation,
        missing=missing_files(history, candidate.artifacts),
        added=added,
    )
    if not history.synthetic_creation:
        result.records.append(_record(candidate.story_file, loaded.sha256, story))
    out = RebuildRows(at=ctx.now())
    out.transitions = history.transitions
    out.log_rows = [(story_id, rows)]
    out.ledger = [(entry, epic.prefix) for entry in entries]
    registered: set[str] = set()
    for scanned, kind in sorted(candidate.artifacts, key=lambda a: a[0].path):
        artifact = artifact_row(ctx, files, epic, story, history, scanned, kind, report)
        if artifact is None:
            continue
        if isinstance(artifact, str):  # no row names it: submitted afterwards
            result.new_artifacts.append((scanned, kind))
            continue
        if isinstance(artifact, Submission):  # the folder has another version's file
            result.missing.append(artifact)
            result.missing.sort(key=lambda s: s.story_version)
            continue
        registered.add(artifact["sha256"])
        out.artifacts.append(artifact)
        result.records.append(_record(scanned, artifact["sha256"], story, kind))
    # Legacy copies of a registered file (REVIEW.yaml beside code-review.yaml) are known.
    for scanned, kind in list(result.new_artifacts):
        sha = file_sha(files, scanned.path)
        if sha is not None and sha in registered:
            result.new_artifacts.remove((scanned, kind))
            result.records.append(_record(scanned, sha, story, kind))
    layout = LAYOUTS[epic.layout]  # submitted afterwards in the order they were written
    result.new_artifacts.sort(key=lambda a: layout.written_order(a[1], a[0].name, story.id))
    kept = {a["version"] for a in out.artifacts if a["kind"] is ArtifactKind.ELABORATION}
    out.approvals = [{**a, "story_id": story_id} for a in history.approvals if a["version"] in kept]
    return result, out


def _not_registered(item: Imported) -> Problem:
    """A fresh clone has no other side to wait for: the story is read without the version,
    and the warning says what arriving later would do."""
    path = _story_path(item)
    error = missing_file_error(
        item.story.id,
        path,
        item.missing,
        "the version is not registered",
        hint="commit the file in the clone that submitted it and pull it before the story "
        "changes here (arriving later, it is submitted as a new version); or restore it "
        f"(git log --stat -- {path.rsplit('/', 1)[0]})",
    )
    return replace(Problem.from_error(error, file=path, story=item.story.id), warning=True)


def _record(
    scanned: ScannedFile, sha: str, story: Story, kind: ArtifactKind = ArtifactKind.STORY
) -> SyncRecord:
    return SyncRecord(
        scanned.path, story.id, kind.value, scanned.size, scanned.mtime_ns, sha, story.version
    )


def _story(
    ctx: Context,
    epic: Epic,
    story_id: str,
    fields: dict[str, Any],
    meta: dict[str, Any],
    rows: list[AgentLogRow],
    history: History,
    path: str,
) -> Story:
    prefix, number = parse_story_id(story_id)
    if prefix != epic.prefix:
        raise InvalidInput(
            f"{path}: {story_id} lies in epic {epic.prefix}'s folder",
            hint=f"move it under the root of epic {prefix}",
            details={"file": path},
        )
    now = ctx.now()
    first = parse_time(rows[0].timestamp, path, "Agent Log timestamp") if rows else now
    last = parse_time(rows[-1].timestamp, path, "Agent Log timestamp") if rows else now
    created = parse_time(meta["created_at"], path, "created_at") if "created_at" in meta else first
    updated = parse_time(meta["updated_at"], path, "updated_at") if "updated_at" in meta else last
    split_from = meta.get("split_from")
    if split_from is not None:
        parse_story_id(str(split_from))
    superseded = meta.get("superseded_by") or []
    superseded_by = tuple(str(s) for s in (superseded if isinstance(superseded, list) else []))
    details = meta.get("details")
    enforcement = fields["enforcement"]
    blocked_reason, blocked_from = history.blocked_reason, history.blocked_from
    if history.status is Status.BLOCKED and blocked_reason is None and blocked_from is None:
        # created blocked (plan import): no move to read them from; the file says
        blocked_reason = meta.get("blocked_reason")
        stated = meta.get("blocked_from")
        blocked_from = parse_status(str(stated))[0] if stated else None
    return Story(
        id=story_id,
        epic=epic.prefix,
        number=number,
        title=fields["title"],
        status=history.status,
        priority=fields["priority"],
        phase=fields["phase"],
        breaking_change=fields["breaking_change"],
        graph_integration=fields["graph_integration"],
        token_budget_multiplier=fields["token_budget_multiplier"],
        enforcement=Enforcement(enforcement) if enforcement else None,
        blocked_reason=None if blocked_reason is None else str(blocked_reason),
        blocked_from=blocked_from,
        split_from=None if split_from is None else str(split_from),
        superseded_by=superseded_by,
        depends_on=tuple(fields["depends_on"]),
        requires=tuple(fields["requires"]),
        review_iterations=history.review_iterations,
        qa_iterations=history.qa_iterations,
        details=details if isinstance(details, dict) else {},
        created_at=created,
        updated_at=updated,
        status_changed_at=history.status_changed_at or created,
        version=max(1, len(rows)),
    )


def artifact_row(
    ctx: Context,
    files: SyncFilesPort,
    epic: Epic,
    story: Story,
    history: History,
    scanned: ScannedFile,
    kind: ArtifactKind,
    report: SyncReport,
) -> dict[str, Any] | str | Submission | None:
    """The artifact row for a file the log says was submitted; "new" for a file no row
    names (it is submitted through the rules afterwards); None when it cannot be read; the
    submission, saying why, when the file is not the version the row submits: its verdict
    is not the row's, or its content hash is not the one the row carries (an older file:
    the clone that submitted the new one did not commit it; or an edit made after the
    submission). A row written before rows carried the hash has only its verdict to go by."""
    submission = history.submissions.get((kind, scanned.name))
    if submission is None:
        return "new"
    try:
        loaded = files.load(scanned.path)
        report.read += 1
        line = conflict_marker_line(loaded.text)
        if line is not None:
            report.problems.append(merge_conflict(scanned.path, line, story.id))
            return None
        data = files.parse_artifact(loaded.text, kind, scanned.name, scanned.path)
        report.parsed += 1
        if isinstance(data, dict):
            claimed = data.get("story_id")
            if claimed is not None and claimed != story.id:
                raise InvalidInput(
                    f"{scanned.path} says it is for {claimed}, not {story.id}",
                    code="ARTIFACT_STORY_MISMATCH",
                    hint=f"move it to {claimed}'s folder, or fix its story_id",
                    details={"file": scanned.path},
                )
            data = {**data, "story_id": story.id}
        content = check_content(
            kind,
            data,
            source=scanned.path,
            threshold=epic.settings.coverage_threshold,
            today=submission.at.date(),
        )
    except StoryflowError as exc:
        report.problems.append(Problem.from_error(exc, file=scanned.path, story=story.id))
        return None
    verdict_field = VERDICT_FIELD.get(kind)
    verdict = content.get(verdict_field) if verdict_field else None
    if submission.verdict is not None and verdict is not None and verdict != submission.verdict:
        return replace(
            submission, found=f"its verdict is {verdict}, the row's {submission.verdict}"
        )
    if submission.fingerprint is not None:
        found = fingerprint(loaded.text)
        if found != submission.fingerprint:
            return replace(
                submission,
                found=f"its content is not the one submitted (sha256 {found}, the row's "
                f"{submission.fingerprint}: an older version's file, or one edited after it "
                "was submitted)",
            )
    return {
        "story_id": story.id,
        "kind": kind,
        "version": submission.version,
        "path": scanned.name,
        "sha256": loaded.sha256,
        "raw": loaded.text,
        "content": content,
        "verdict": verdict,
        "story_version": submission.story_version,
        "submitted_by": submission.agent,
        "submitted_at": submission.at,
        "kind_row": kind_row(kind, content, submission.at.date()),
    }


def _linkable(imported: list[Imported], known: set[str], report: SyncReport) -> set[str]:
    """The imported stories whose dependencies exist (in the database or in this import)
    and form no cycle; the others are reported and left out, with what depends on them."""
    keep = {i.story.id for i in imported}
    by_id = {i.story.id: i for i in imported}
    _drop_unlinked(keep, by_id, known, report)
    from storyflow.domain.checks import dependency_cycles

    graph = {i: [d for d in by_id[i].story.depends_on if d in keep] for i in keep}
    for cycle in dependency_cycles(graph):
        for story_id in cycle[:-1]:
            if story_id in keep:
                keep.discard(story_id)
                report.problems.append(
                    Problem(
                        code="DEPENDENCY_CYCLE",
                        message="dependency cycle: " + " -> ".join(cycle),
                        hint="drop one of those dependencies in the story files",
                        file=_story_path(by_id[story_id]),
                        story=story_id,
                    )
                )
    _drop_unlinked(keep, by_id, known, report)
    return keep


def _drop_unlinked(
    keep: set[str], by_id: dict[str, Imported], known: set[str], report: SyncReport
) -> None:
    changed = True
    while changed:
        changed = False
        for story_id in sorted(keep):
            item = by_id[story_id]
            missing = [d for d in item.story.depends_on if d not in keep and d not in known]
            if missing:
                keep.discard(story_id)
                changed = True
                report.problems.append(
                    Problem(
                        code="UNKNOWN_DEPENDENCY",
                        message=f"{story_id} depends on {', '.join(missing)}, which is "
                        "neither in the database nor among the story folders (or was left "
                        "out: see the other problems)",
                        hint="restore or fix the missing story folder, or fix depends_on",
                        file=_story_path(item),
                        story=story_id,
                    )
                )


def _story_path(item: Imported) -> str:
    return f"{item.folder.path}/{LAYOUTS[item.epic.layout].story_file_name(item.story.id)}"


__all__ = ["Candidate", "Imported", "prepare"]

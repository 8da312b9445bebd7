"""Two-way sync of the epic files (``<root>/<PREFIX>.epic.yaml``).

An epic file carries its epic's version: a file at the database's version was written from
the current state, so what differs was edited by hand and is applied through epic update
(title, time zone, coverage threshold, approval, enforcement); other settings come from the
plan (storyflow plan import) and are not applied from here. A file at an older version is
behind: it is rewritten, and a field that differs is a conflict for ``--prefer``.
"""

from __future__ import annotations

from typing import Any

from storyflow.domain.budgets import Enforcement
from storyflow.domain.model import Epic
from storyflow.errors import StoryflowError
from storyflow.services import epics as epic_service
from storyflow.services.sync_apply import Session
from storyflow.services.sync_ports import EpicFiles, ScannedFile
from storyflow.services.sync_read import conflict_marker_line, merge_conflict
from storyflow.services.sync_report import Change, Conflict, Problem

# epic field -> epic update argument
EDITABLE = {
    "title": "title",
    "timezone": "timezone",
    "settings.coverage_threshold": "coverage_threshold",
    "settings.require_approval": "require_approval",
    "settings.enforcement": "enforcement",
}


def _values(epic: Epic) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": epic.title,
        "timezone": epic.timezone,
        "layout": epic.layout.value,
    }
    for key, value in epic.settings.to_json().items():
        values[f"settings.{key}"] = value
    return values


def _write(session: Session, epic: Epic, path: str, reason: str) -> None:
    files, store, prefix = session.files, session.ctx.store, epic.prefix

    def write() -> None:
        current = store.get_epic(prefix)
        if current is not None:
            files.write(path, files.render_epic(current))

    session.deferred.later(write)
    session.epic_writes.append((path, prefix))
    session.report.changes.append(
        Change(
            action="rendered",
            direction="db->files",
            epic=prefix,
            file=path,
            detail={"reason": reason},
        )
    )


def reconcile_epics(session: Session, epic_files: list[EpicFiles]) -> None:
    for item in epic_files:
        epic = item.epic
        path = f"{epic.root}/{session.files.epic_file_name(epic.prefix)}"
        if item.new:
            if item.scanned is not None and item.sha256 is not None:
                session.record(item.scanned, item.sha256, None, "epic", epic.version)
            continue
        if item.scanned is None:
            _write(session, epic, path, "no epic file")
            continue
        rec = session.records.get(path)
        try:
            changed, loaded = session.state(item.scanned)
        except StoryflowError as exc:
            session.report.problems.append(Problem.from_error(exc, file=path))
            continue
        if not changed:
            if rec is not None and rec.story_version != epic.version:
                _write(session, epic, path, "the database moved on")
            continue
        assert loaded is not None
        line = conflict_marker_line(loaded.text)
        if line is not None:
            session.report.problems.append(merge_conflict(path, line, None))
            continue
        try:
            parsed = session.files.parse_epic(loaded.text, path)
            session.report.parsed += 1
        except StoryflowError as exc:
            session.report.problems.append(Problem.from_error(exc, file=path))
            continue
        _reconcile(session, epic, parsed, item.scanned, loaded.sha256, path)


def _reconcile(
    session: Session, epic: Epic, parsed: Epic, scanned: ScannedFile, sha: str, path: str
) -> None:
    mine, theirs = _values(parsed), _values(epic)
    differ = sorted(k for k in theirs if mine.get(k) != theirs[k])
    if not differ:
        session.record(scanned, sha, None, "epic", epic.version)
        return
    prefer = session.prefer
    behind = parsed.version < epic.version
    if behind or parsed.version > epic.version:
        if prefer is None:
            for name in differ:
                session.report.conflicts.append(
                    Conflict(file=path, field=name, file_value=mine[name], db_value=theirs[name])
                )
            return
        winners = differ if prefer == "files" else []
    else:
        winners = differ
    fixed = [k for k in winners if k not in EDITABLE]
    if fixed and prefer != "db":
        session.report.problems.append(
            Problem(
                code="PROJECTION_EDITED",
                message=f"{path}: {', '.join(fixed)} cannot be changed by editing the epic "
                "file (they come from the plan, or define where the stories live)",
                hint="storyflow plan import changes plan settings; storyflow sync --prefer db "
                "restores the file",
                file=path,
            )
        )
        return
    edits = {EDITABLE[k]: mine[k] for k in winners if k in EDITABLE}
    if "enforcement" in edits:
        edits["enforcement"] = Enforcement(edits["enforcement"])
    mark = session.deferred.mark()
    try:
        with session.ctx.store.savepoint():
            if edits:
                epic_service.update_epic(session.ctx, epic.prefix, **edits)
            for name in differ if (behind or parsed.version > epic.version) else []:
                conflict = Conflict(
                    file=path,
                    field=name,
                    file_value=mine[name],
                    db_value=theirs[name],
                    resolution=prefer,
                )
                session.report.conflicts.append(conflict)
                session.ctx.store.insert_event(
                    type="sync_conflict_resolved",
                    at=session.ctx.now(),
                    epic=epic.prefix,
                    actor=session.ctx.actor,
                    payload=conflict.to_json(),
                )
    except StoryflowError as exc:
        session.deferred.rollback_to(mark)
        session.report.problems.append(Problem.from_error(exc, file=path))
        return
    if edits:
        session.epic_writes.append((path, epic.prefix))
        session.report.changes.append(
            Change(
                action="updated",
                direction="files->db",
                epic=epic.prefix,
                file=path,
                detail={"fields": {k: str(v) for k, v in edits.items()}},
            )
        )
    else:
        _write(session, epic, path, "the database's values win")

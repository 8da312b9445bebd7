"""Reading a file for sync: unresolved merge-conflict markers (reported with their line),
then the parse, then the story file's claim to its folder's ID."""

from __future__ import annotations

from typing import Any

from storyflow.domain.checks import conflict_line
from storyflow.errors import StoryflowError
from storyflow.services.sync_ports import LoadedFile, SyncFilesPort
from storyflow.services.sync_report import Problem, SyncReport


def conflict_marker_line(text: str) -> int | None:
    """The line of the first unresolved merge-conflict marker (the rule storyflow check
    applies), or None; a file with no ``<<<<<<<``/``>>>>>>>`` costs two substring scans."""
    if "<<<<<<<" not in text and ">>>>>>>" not in text:
        return None
    return conflict_line(text)


def file_sha(files: SyncFilesPort, path: str) -> str | None:
    """The file's sha256, or None when it cannot be read (its reader reports why)."""
    try:
        return files.load(path).sha256
    except StoryflowError:
        return None


def merge_conflict(path: str, line: int, story: str | None) -> Problem:
    return Problem(
        code="MERGE_CONFLICT",
        message=f"{path}:{line}: unresolved merge-conflict marker",
        hint="resolve the merge (keep one side, remove the <<<<<<< ======= >>>>>>> lines), "
        "then run storyflow sync again",
        file=path,
        line=line,
        story=story,
    )


def read_story(
    files: SyncFilesPort,
    path: str,
    story_id: str,
    report: SyncReport,
    loaded: LoadedFile | None = None,
) -> tuple[LoadedFile, Any] | None:
    """Load and parse a story file; a problem is reported (and None returned) when it cannot
    be read, holds conflict markers, does not parse, or names another story."""
    try:
        if loaded is None:
            loaded = files.load(path)
            report.read += 1
        line = conflict_marker_line(loaded.text)
        if line is not None:
            report.problems.append(merge_conflict(path, line, story_id))
            return None
        doc = files.parse_story(loaded.text, path.rsplit("/", 1)[-1], path)
        report.parsed += 1
    except StoryflowError as exc:
        report.problems.append(Problem.from_error(exc, file=path, story=story_id))
        return None
    claimed = doc.meta.get("id")
    if str(claimed).strip() != story_id:
        report.claimed.setdefault(str(claimed).strip(), path)
        report.problems.append(
            Problem(
                code="ARTIFACT_STORY_MISMATCH",
                message=f"{path}: the file says id {claimed!r}, its folder {story_id}",
                hint="the folder name is the story's ID: fix the id key or the folder name",
                file=path,
                line=1,
                story=story_id,
            )
        )
        return None
    return loaded, doc

"""What a sync did, or would do: changes applied, projections rendered, conflicts, problems.

A problem carries a code from ``errors.CODES`` (file, line where known, message, hint); a
conflict names the file, the field and both values. The exit status follows from them:
0 when everything was applied, else the status of the most pressing kind of problem
(5 conflicts, 7 files that cannot be read, 6 files missing, 3 changes the rules refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storyflow.errors import CODES, StoryflowError


@dataclass(frozen=True, kw_only=True)
class Problem:
    code: str
    message: str
    hint: str
    file: str | None = None
    line: int | None = None
    story: str | None = None
    warning: bool = False  # reported, but handled (e.g. a folder moved to its stage)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"undeclared error code {self.code!r}")

    @classmethod
    def from_error(
        cls, error: StoryflowError, *, file: str | None, story: str | None = None
    ) -> Problem:
        line = error.details.get("line")
        return cls(
            code=error.code,
            message=error.message,
            hint=error.hint or "",
            file=error.details.get("file") or file,
            line=line if isinstance(line, int) else None,
            story=story,
        )

    @classmethod
    def left(cls, story: str, file: str | None, code: str, why: str) -> Problem:
        """A story another process has in hand (``STORY_LOCKED``: a run holds it;
        ``VERSION_CONFLICT``: it changed while the sync worked on it): the sync leaves its
        files to the next one. A warning, not an error."""
        wait = (
            f"when the run has finished (storyflow story show {story} shows the lease)"
            if code == "STORY_LOCKED"
            else "to take it as it is now"
        )
        return cls(
            code=code,
            message=f"{story}: {why}; sync left its files for the next sync",
            hint=f"run storyflow sync again {wait}",
            file=file,
            story=story,
            warning=True,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "file": self.file,
            "line": self.line,
            "story": self.story,
            "message": self.message,
            "hint": self.hint,
            "level": "warning" if self.warning else "error",
        }


@dataclass(frozen=True, kw_only=True)
class Conflict:
    file: str
    field: str
    file_value: Any
    db_value: Any
    story: str | None = None
    resolution: str | None = None  # "files" or "db" when --prefer decided

    def to_json(self) -> dict[str, Any]:
        return {
            "story": self.story,
            "file": self.file,
            "field": self.field,
            "file_value": self.file_value,
            "db_value": self.db_value,
            "resolution": self.resolution,
        }


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change made (or, in a dry run, to be made) to the database or the files."""

    action: str  # rebuilt | imported | moved | updated | submitted | log_appended | rendered …
    direction: str  # "files->db" or "db->files"
    file: str | None = None
    story: str | None = None
    epic: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "direction": self.direction,
            "story": self.story,
            "epic": self.epic,
            "file": self.file,
            **self.detail,
        }


@dataclass(kw_only=True)
class SyncReport:
    dry_run: bool
    prefer: str | None
    files: int = 0  # files found under the epics' roots
    unchanged: int = 0  # skipped by size and mtime, nothing read
    read: int = 0  # read and hashed
    parsed: int = 0  # parsed (content changed, or new)
    recorded: int = 0  # hashes recorded with no change to make (the file agrees)
    by_index: bool = False  # decided idle by the no-op index (sync_quick.py), per folder
    rebuilt: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # files gone since the last sync
    warnings: list[str] = field(default_factory=list)
    # story id -> a story file that says it is that story from another story's folder (a
    # renamed folder): sync does not render the story anew while its file is there
    claimed: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def open_conflicts(self) -> list[Conflict]:
        return [c for c in self.conflicts if c.resolution is None]

    @property
    def nothing_to_do(self) -> bool:
        return not (self.changes or self.conflicts or self.problems or self.removed) and not any(
            self.rebuilt.values()
        )

    def exit_status(self) -> int:
        if self.open_conflicts:
            return 5
        statuses = {CODES[p.code].exit_status for p in self.errors}
        for status in (5, 7, 6, 4, 3, 2, 1):
            if status in statuses:
                return status
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "prefer": self.prefer,
            "nothing_to_do": self.nothing_to_do,
            "exit_status": self.exit_status(),
            "files": {
                "found": self.files,
                "unchanged": self.unchanged,
                "read": self.read,
                "parsed": self.parsed,
                "recorded": self.recorded,
                "removed": self.removed,
                "by_index": self.by_index,
            },
            "rebuilt": self.rebuilt,
            "changes": [c.to_json() for c in self.changes],
            "conflicts": [c.to_json() for c in self.conflicts],
            "problems": [p.to_json() for p in self.problems],
            "warnings": self.warnings,
        }

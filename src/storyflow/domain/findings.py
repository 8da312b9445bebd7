"""What ``storyflow check`` can find: one table of stable finding codes, and the finding.

The codes are data: the check reports them, ``storyflow docs`` documents them
(docs/reference/checks.md), and a test keeps the two in step. Every finding carries the
file, the line where known, the code and a hint that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CheckCode:
    code: str
    summary: str
    hint: str


def _table(*entries: tuple[str, str, str]) -> dict[str, CheckCode]:
    table: dict[str, CheckCode] = {}
    for code, summary, hint in entries:
        if code in table or not code.startswith("CHECK_"):
            raise ValueError(f"bad or duplicate check code {code}")
        table[code] = CheckCode(code=code, summary=summary, hint=hint)
    return table


CHECK_CODES: dict[str, CheckCode] = _table(
    (
        "CHECK_UNREADABLE",
        "A story or artifact file cannot be read or parsed (not UTF-8, too large, malformed "
        "YAML or front matter).",
        "fix the file at the line named (storyflow artifact validate PATH --kind KIND)",
    ),
    (
        "CHECK_MERGE_CONFLICT",
        "A story or artifact file holds unresolved merge-conflict markers.",
        "resolve the conflict; in a story file keep one side's Agent Log rows whole, or "
        "both sides' rows in time order when they form one history; then storyflow sync "
        "--prefer files rebuilds the story from it (or says why it cannot), and storyflow "
        "check again",
    ),
    (
        "CHECK_SCHEMA",
        "A story or artifact file does not match the schema of its kind.",
        "fix the fields named (storyflow artifact schema KIND prints the schema)",
    ),
    (
        "CHECK_GATE_CONTRADICTION",
        "An artifact's verdict contradicts its own evidence.",
        "make the verdict follow from the evidence, or fix the evidence",
    ),
    (
        "CHECK_ARTIFACT_STORY_MISMATCH",
        "An artifact in a story folder says it belongs to another story.",
        "move it to its own story's folder, or fix its story_id",
    ),
    (
        "CHECK_NAMING",
        "A file or folder does not follow the layout's naming convention (story folders are "
        "PREFIX-NNN; artifact names per docs/reference/layouts.md).",
        "rename it as the layout names it",
    ),
    (
        "CHECK_LEGACY_NAME",
        "An artifact file uses a legacy name (REVIEW.yaml, EVIDENCE.yaml, ...).",
        "submit it (storyflow artifact submit ID KIND PATH) to store it under the layout's "
        "name, then delete the legacy file",
    ),
    (
        "CHECK_LOOSE_FILE",
        "A story or artifact file lies outside any story folder (e.g. at the root of plans/).",
        "move it into its story's folder",
    ),
    (
        "CHECK_STAGE_FOLDER",
        "A staged story folder is not in the stage folder its status calls for.",
        "storyflow story render ID moves the folder to its stage",
    ),
    (
        "CHECK_MISPLACED_FOLDER",
        "A story folder lies outside its epic's root.",
        "move it under the epic's root (storyflow epic show PREFIX names it)",
    ),
    (
        "CHECK_OUTSIDE_WORKSPACE",
        "A story folder leads outside the workspace (it, or a folder above it, is a symlink "
        "to elsewhere): storyflow refuses to write there.",
        "replace the symlink with the folder itself (move the folder into the workspace)",
    ),
    (
        "CHECK_DUPLICATE_ID",
        "Two folders claim the same story ID.",
        "keep one folder per story; merge the others into it and delete them",
    ),
    (
        "CHECK_UNTRACKED_STORY",
        "A story folder whose story, or whose epic, the database does not know.",
        "storyflow sync imports it (storyflow plan import for a new epic)",
    ),
    (
        "CHECK_MISSING_STORY_FILE",
        "The database has a story whose folder or story file is missing.",
        "storyflow story render ID writes the story file again",
    ),
    (
        "CHECK_STATUS_DRIFT",
        "The story file's status differs from the database's.",
        "storyflow story render ID restores the file; change a status with storyflow story "
        "move (or let storyflow sync apply the edit through the rules)",
    ),
    (
        "CHECK_FIELD_DRIFT",
        "A metadata field of the story file differs from the database's.",
        "storyflow sync applies a hand edit (through storyflow story update); storyflow story "
        "render ID restores the file instead",
    ),
    (
        "CHECK_AGENT_LOG_EDITED",
        "An Agent Log row of the story file differs from the database's row: the log is "
        "append-only.",
        "undo the edit (e.g. git checkout -p FILE); the message shows the recorded row",
    ),
    (
        "CHECK_AGENT_LOG_REMOVED",
        "Agent Log rows the database recorded are missing from the story file.",
        "undo the deletion (e.g. git checkout -p FILE); rows missing only at the end are "
        "appended again by storyflow story render ID",
    ),
    (
        "CHECK_AGENT_LOG_UNRECORDED",
        "The story file has Agent Log rows the database never recorded.",
        "storyflow commands append the log; storyflow sync records hand-added rows",
    ),
    (
        "CHECK_AGENT_LOG_CHAIN",
        "The database's Agent Log rows no longer match their sha256 hash chain (a row was "
        "changed in the database).",
        "restore the database from a backup, or rebuild it from the files (storyflow sync)",
    ),
    (
        "CHECK_TOKEN_BUDGET_DRIFT",
        "The story file's Token Budget section differs from what the ledger and the epic's "
        "budgets render (edited by hand, or stale).",
        "storyflow story render ID re-renders it; storyflow token log records usage",
    ),
    (
        "CHECK_TOKENS_MISSING",
        "A completed story has no tokens recorded for a phase that ran (when its epic's "
        "acceptance rule asks for tokens, as it does by default).",
        "storyflow token log ID PHASE --input N --output M",
    ),
    (
        "CHECK_DEPENDENCY_CYCLE",
        "Stories depend on each other in a cycle.",
        "drop one of the dependencies (storyflow story update ID --depends-on ...)",
    ),
    (
        "CHECK_UNKNOWN_DEPENDENCY",
        "depends_on names a story that does not exist.",
        "fix the ID, or create the story first",
    ),
    (
        "CHECK_DOCS_STALE",
        "A generated reference doc differs from what storyflow docs writes now.",
        "run storyflow docs and commit docs/reference/",
    ),
    (
        "CHECK_BROKEN_LINK",
        "A relative Markdown link points to a missing file or anchor.",
        "fix the link's path or anchor",
    ),
    (
        "CHECK_STATE_TRACKED",
        "A file of .storyflow/ (a clone's own database, locks, caches) is in git.",
        "git rm -r --cached .storyflow and commit: each clone keeps its own database (a fresh "
        "clone's storyflow sync rebuilds it from the files); a pull would replace another "
        "clone's database with this one",
    ),
)


@dataclass(frozen=True, kw_only=True)
class Finding:
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    story: str | None = None
    hint: str = ""

    def __post_init__(self) -> None:
        if self.code not in CHECK_CODES:
            raise ValueError(f"undeclared check code {self.code!r}")
        if not self.hint:
            object.__setattr__(self, "hint", CHECK_CODES[self.code].hint)

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file or "", self.line or 0, self.code, self.message)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "file": self.file,
            "line": self.line,
            "story": self.story,
            "message": self.message,
            "hint": self.hint,
        }

"""One error root for everything storyflow refuses.

    StoryflowError                 exit 1  (internal)
    ├── UsageError                 exit 2  (bad command line, missing workspace)
    ├── RuleViolation              exit 3  (transition, guard, gate)
    ├── BudgetRefused              exit 4  (token budget enforcement)
    ├── ConflictError              exit 5  (compare-and-set lost, locked, duplicate)
    ├── NotFoundError              exit 6  (story, epic, artifact, file)
    └── InvalidInput               exit 7  (malformed YAML, schema, IDs, config)

Every error carries a stable ``code`` (documented in ``CODES``), a message, structured
``details`` and a ``hint`` that says what to do next. The code decides the CLI exit status
and the JSON error body. Adapters translate library errors into these (``raise … from exc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class ErrorCode:
    code: str
    exit_status: int
    summary: str


class StoryflowError(Exception):
    """Root of every error storyflow raises on purpose."""

    exit_status: ClassVar[int] = 1
    default_code: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if self.code not in CODES:
            raise ValueError(f"undeclared error code {self.code!r}")
        declared = CODES[self.code].exit_status
        if declared != self.exit_status:
            raise ValueError(
                f"{self.code} is declared with exit {declared}, raised as {type(self)}"
            )
        self.hint = hint
        self.details: dict[str, Any] = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
                "hint": self.hint,
            }
        }


class UsageError(StoryflowError):
    exit_status = 2
    default_code = "USAGE"


class RuleViolation(StoryflowError):
    exit_status = 3
    default_code = "TRANSITION_NOT_ALLOWED"


class BudgetRefused(StoryflowError):
    exit_status = 4
    default_code = "BUDGET_HARD_LIMIT"


class ConflictError(StoryflowError):
    exit_status = 5
    default_code = "VERSION_CONFLICT"


class NotFoundError(StoryflowError):
    exit_status = 6
    default_code = "NOT_FOUND"


class InvalidInput(StoryflowError):
    exit_status = 7
    default_code = "INVALID_INPUT"


def error_class(code: str) -> type[StoryflowError]:
    """The class that raises ``code`` (by its declared exit status)."""
    status = CODES[code].exit_status
    for cls in (UsageError, RuleViolation, BudgetRefused, ConflictError, NotFoundError):
        if cls.exit_status == status:
            return cls
    return InvalidInput if status == InvalidInput.exit_status else StoryflowError


def _codes(*entries: tuple[str, int, str]) -> dict[str, ErrorCode]:
    table: dict[str, ErrorCode] = {}
    for code, status, summary in entries:
        if code in table:
            raise ValueError(f"duplicate error code {code}")
        table[code] = ErrorCode(code=code, exit_status=status, summary=summary)
    return table


CODES: dict[str, ErrorCode] = _codes(
    ("INTERNAL", 1, "An unexpected failure inside storyflow; please report it."),
    ("DATABASE_ERROR", 1, "The database failed in a way storyflow did not expect."),
    ("USAGE", 2, "The command line is malformed."),
    ("NOT_A_GIT_REPOSITORY", 2, "The workspace is not inside a git work tree (hooks)."),
    ("GIT_HOOKS_UNUSABLE", 2, "git's hooks folder (or the hook in it) cannot be read or written."),
    ("WORKSPACE_NOT_FOUND", 2, "No storyflow.yaml in this directory or any parent."),
    ("WORKSPACE_EXISTS", 2, "storyflow init found an existing, different configuration."),
    ("DATABASE_NOT_INITIALIZED", 2, "The database has no storyflow schema yet."),
    ("DATABASE_OUTDATED", 2, "The database schema is older than this storyflow."),
    ("DATABASE_TOO_NEW", 2, "The database schema is newer than this storyflow."),
    ("DATABASE_UNREACHABLE", 2, "The database server cannot be reached."),
    ("DATABASE_URL_INVALID", 2, "The database URL is malformed, names no database, or is :memory:"),
    ("DATABASE_READONLY", 2, "The database refuses writes (a read-only file or server)."),
    ("DATABASE_CORRUPT", 2, "The database file is damaged or not a SQLite database."),
    (
        "WORKSPACE_NOT_WRITABLE",
        2,
        "storyflow cannot write in the workspace (.storyflow/, a story or epic file or folder).",
    ),
    ("DRIVER_MISSING", 2, "The database driver for the configured URL is not installed."),
    ("EXTRA_MISSING", 2, "The optional extra this needs is not installed (pip install …)."),
    ("EXPORT_FAILED", 2, "The telemetry endpoint did not accept the export."),
    ("TRANSITION_NOT_ALLOWED", 3, "No edge of the state machine leads there."),
    ("GUARD_FAILED", 3, "The edge exists but its required evidence is missing."),
    ("TERMINAL_STATUS", 3, "The story is in a terminal status and cannot move."),
    ("REASON_REQUIRED", 3, "The move (block, cancel, force, budget confirmation) needs a reason."),
    ("GATE_CONTRADICTION", 3, "An artifact's verdict contradicts its own evidence."),
    ("SPLIT_NOT_ALLOWED", 3, "Only a story in needs-split can be split."),
    ("STORY_NUMBERS_EXHAUSTED", 3, "The epic has no free story number (the last is 999999)."),
    ("MODEL_ASSIGNMENT_INVALID", 3, "An assignment names an unknown model, phase, role or agent."),
    ("BUDGET_HARD_LIMIT", 4, "hard_gate: the phase's token usage reached its hard limit."),
    ("BUDGET_CONFIRMATION_REQUIRED", 4, "soft_gate: the hard limit was reached; confirm."),
    ("VERSION_CONFLICT", 5, "Another writer changed the story first (compare-and-set lost)."),
    ("ALREADY_IN_STATUS", 5, "The story is already in the requested status."),
    ("STORY_LOCKED", 5, "A run holds the story's lease."),
    (
        "STORY_FILES_BEHIND",
        5,
        "This clone's story files are behind the database: the run leaves the story alone.",
    ),
    ("DATABASE_BUSY", 5, "Another process held the database write lock too long."),
    (
        "DATABASE_CONNECTION_LOST",
        5,
        "The database connection broke during a transaction; it is made anew on the next try.",
    ),
    ("DUPLICATE_ID", 5, "An epic or story with that ID already exists."),
    ("HOOK_EXISTS", 5, "A git hook storyflow did not write is in the way (--force)."),
    ("FOLDER_OCCUPIED", 5, "Something else is where a stage move would put the story folder."),
    ("NOT_FOUND", 6, "The thing named does not exist."),
    ("STORY_NOT_FOUND", 6, "No story with that ID."),
    ("EPIC_NOT_FOUND", 6, "No epic with that prefix."),
    ("ARTIFACT_NOT_FOUND", 6, "No artifact of that kind (or version) for the story."),
    ("FILE_NOT_FOUND", 6, "The file named does not exist."),
    (
        "ARTIFACT_FILE_MISSING",
        6,
        "An Agent Log row submits an artifact version whose file the story folder lacks.",
    ),
    ("INVALID_INPUT", 7, "A value on the command line or in a file is not acceptable."),
    ("INVALID_ID", 7, "A story ID or prefix does not have the PREFIX-NNN form."),
    ("INVALID_STATUS", 7, "Not one of the 17 statuses nor a known legacy name."),
    ("INVALID_KIND", 7, "Not an artifact kind."),
    ("INVALID_YAML", 7, "The YAML (or Markdown front matter) does not parse."),
    ("YAML_TOO_COMPLEX", 7, "The YAML expands beyond the allowed size (alias bomb)."),
    ("DUPLICATE_KEY", 7, "A YAML mapping states the same key twice."),
    ("NOT_UTF8", 7, "The file is not UTF-8 text."),
    ("FILE_TOO_LARGE", 7, "The file is bigger than limits.max_file_bytes."),
    ("SCHEMA_INVALID", 7, "The artifact does not match its schema."),
    ("INVALID_VERDICT", 7, "The verdict is outside its vocabulary."),
    ("ARTIFACT_STORY_MISMATCH", 7, "The artifact belongs to another story."),
    ("DEPENDENCY_CYCLE", 7, "The dependencies would form a cycle."),
    ("UNKNOWN_DEPENDENCY", 7, "A dependency names a story that does not exist."),
    ("UNKNOWN_MODEL", 7, "The model is not in the configured catalogue."),
    ("UNKNOWN_PHASE", 7, "Not a token budget phase."),
    ("UNKNOWN_REVISION", 7, "Not a schema revision storyflow ships, or one behind the database's."),
    ("CONFIG_INVALID", 7, "storyflow.yaml or a STORYFLOW_* variable is invalid."),
    ("WORKSPACE_UNREADABLE", 7, "The workspace or one of its files cannot be read."),
    ("OUTSIDE_WORKSPACE", 7, "A story folder leads (by a symlink) outside the workspace."),
    # plans (storyflow plan import / export)
    ("FRONT_MATTER_MISSING", 7, "A plan or index file has no YAML front matter."),
    ("WRONG_DOC_TYPE", 7, "The file's doc_type is not the one its name calls for."),
    ("DUPLICATE_SECTION", 7, "A plan states a rule section (or an index a story) twice."),
    ("MERGE_CONFLICT", 7, "The file holds unresolved merge-conflict markers."),
    ("FILE_EXISTS", 5, "A file storyflow did not write is in the way (--force replaces it)."),
    # two-way sync (storyflow sync)
    ("SYNC_CONFLICT", 5, "A datum changed in a file and in the database since the last sync."),
    ("AGENT_LOG_EDITED", 5, "A story file's Agent Log lost or changed rows the database holds."),
    (
        "INVALID_MEASUREMENT",
        7,
        "A Token Budget entry added by hand cannot be logged (no phase, no tokens, counts "
        "that do not add up).",
    ),
    (
        "AGENT_LOG_INVALID",
        3,
        "A story file's Agent Log is not one history the state machine allows "
        "(sync --prefer files rebuilds a story only from a log that is).",
    ),
    ("PROJECTION_EDITED", 3, "A part of a story file that storyflow renders was edited by hand."),
    ("WRONG_STAGE_FOLDER", 3, "A story folder is not in the stage folder its status calls for."),
    # runs and agents (DESIGN §4: the agent error contract)
    ("AGENT_SPAWN_FAILED", 2, "The agent could not start: its command, or its API key or request."),
    ("AGENT_TIMEOUT", 1, "The agent did not finish within its timeout; it was stopped."),
    ("MALFORMED_OUTPUT", 7, "The agent's output or artifacts do not parse or validate."),
    ("PRECONDITION_FAILED", 3, "The phase cannot run: the story does not meet its preconditions."),
    ("EXTERNAL_SERVICE_DOWN", 1, "The agent (or the service behind it) failed; retry later."),
    ("UNKNOWN_RUN_PHASE", 7, "Not one of the run phases (generate ... gate)."),
    ("PHASE_NOT_APPLICABLE", 3, "The named phase does not start from the story's status."),
    ("NOTHING_TO_RUN", 3, "No phase runs from the story's status (blocked or terminal)."),
    ("REVIEW_LOOP_CAP", 3, "Review/fix loops reached the cap; the story was blocked."),
    ("REFINE_LOOP_CAP", 3, "Elaborate/refine loops reached the cap; the story was blocked."),
    ("CIRCUIT_OPEN", 3, "Consecutive run failures tripped the circuit breaker; story blocked."),
    ("AWAITING_APPROVAL", 3, "The elaboration passed; the epic needs a PM/UX approval first."),
    ("LEASE_LOST", 5, "The run's lease expired and another worker took the story over."),
    ("RUN_INTERRUPTED", 5, "The run was interrupted (SIGINT/SIGTERM) and released."),
)

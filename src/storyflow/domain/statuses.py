"""The one status vocabulary, and the one table that maps older vocabularies onto it."""

from __future__ import annotations

from enum import StrEnum

from storyflow.errors import InvalidInput


class Status(StrEnum):
    PENDING = "pending"
    GENERATED = "generated"
    IN_ELABORATION = "in-elaboration"
    NEEDS_REFINEMENT = "needs-refinement"
    NEEDS_SPLIT = "needs-split"
    READY_TO_WORK = "ready-to-work"
    IN_PROGRESS = "in-progress"
    READY_FOR_CODE_REVIEW = "ready-for-code-review"
    CODE_REVIEW_FAILED = "code-review-failed"
    READY_FOR_QA = "ready-for-qa"
    IN_QA = "in-qa"
    NEEDS_WORK = "needs-work"
    UAT = "uat"
    COMPLETED = "completed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.CANCELLED, Status.SUPERSEDED})
NON_TERMINAL: tuple[Status, ...] = tuple(s for s in Status if s not in TERMINAL)

# Names used by the systems storyflow replaces (story files, index files, older CLIs).
# Input in these spellings is accepted with a warning; output always uses Status.
LEGACY_STATUS_NAMES: dict[str, Status] = {
    "draft": Status.PENDING,
    "new": Status.PENDING,
    "todo-story": Status.PENDING,
    "backlog": Status.GENERATED,
    "generated-story": Status.GENERATED,
    "elaboration": Status.IN_ELABORATION,
    "elaborating": Status.IN_ELABORATION,
    "in-elab": Status.IN_ELABORATION,
    "refinement": Status.NEEDS_REFINEMENT,
    "needs-refine": Status.NEEDS_REFINEMENT,
    "split": Status.NEEDS_SPLIT,
    "split-required": Status.NEEDS_SPLIT,
    "ready": Status.READY_TO_WORK,
    "todo": Status.READY_TO_WORK,
    "ready-for-dev": Status.READY_TO_WORK,
    "ready-for-development": Status.READY_TO_WORK,
    "approved": Status.READY_TO_WORK,
    "wip": Status.IN_PROGRESS,
    "doing": Status.IN_PROGRESS,
    "implementation": Status.IN_PROGRESS,
    "in-development": Status.IN_PROGRESS,
    "in-dev": Status.IN_PROGRESS,
    "review": Status.READY_FOR_CODE_REVIEW,
    "code-review": Status.READY_FOR_CODE_REVIEW,
    "in-review": Status.READY_FOR_CODE_REVIEW,
    "ready-for-review": Status.READY_FOR_CODE_REVIEW,
    "review-failed": Status.CODE_REVIEW_FAILED,
    "changes-requested": Status.CODE_REVIEW_FAILED,
    "qa": Status.READY_FOR_QA,
    "ready-for-verification": Status.READY_FOR_QA,
    "verification": Status.IN_QA,
    "testing": Status.IN_QA,
    "in-verification": Status.IN_QA,
    "qa-failed": Status.NEEDS_WORK,
    "rework": Status.NEEDS_WORK,
    "ready-for-uat": Status.UAT,
    "in-uat": Status.UAT,
    "done": Status.COMPLETED,
    "complete": Status.COMPLETED,
    "closed": Status.COMPLETED,
    "merged": Status.COMPLETED,
    "on-hold": Status.BLOCKED,
    "canceled": Status.CANCELLED,
    "abandoned": Status.CANCELLED,
    "wont-do": Status.CANCELLED,
    "replaced": Status.SUPERSEDED,
}


def _normalise(text: str) -> str:
    return "-".join(text.strip().lower().replace("_", " ").replace("-", " ").split())


def _validate_legacy_table() -> None:
    canonical = {s.value for s in Status}
    for name in LEGACY_STATUS_NAMES:
        if name != _normalise(name):
            raise ValueError(f"legacy status {name!r} is not in normal form")
        if name in canonical:
            raise ValueError(f"legacy status {name!r} shadows a canonical status")


_validate_legacy_table()


def parse_status(text: str) -> tuple[Status, str | None]:
    """Return the status a name means, and a warning when the name is a legacy spelling."""
    key = _normalise(text)
    try:
        status = Status(key)
    except ValueError:
        pass
    else:
        if key == text:
            return status, None
        return status, f"status {text!r} read as {status.value!r}; write {status.value!r}"
    if key in LEGACY_STATUS_NAMES:
        status = LEGACY_STATUS_NAMES[key]
        return status, f"legacy status {text!r} mapped to {status.value!r}"
    raise InvalidInput(
        f"unknown status {text!r}",
        code="INVALID_STATUS",
        hint="use one of: " + ", ".join(s.value for s in Status),
        details={"value": text},
    )

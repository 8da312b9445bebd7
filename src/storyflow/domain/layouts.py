"""Layout conventions as data: where a story lives and what its files are called.

``staged`` is the FLOW convention (fixed YAML names, the story folder moves between stage
folders as the status changes); ``flat`` is the REVI convention (one folder per story,
Markdown artifacts stamped ``YYYYMMDD-HHMM`` in the epic's time zone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.statuses import Status


class LayoutName(StrEnum):
    STAGED = "staged"
    FLAT = "flat"


# Stage folders of the staged layout. A story's stage is derived from its status, never the
# reverse; a blocked story stays in the stage of the status it was blocked from.
STAGE_OF_STATUS: dict[Status, str] = {
    Status.PENDING: "backlog",
    Status.GENERATED: "backlog",
    Status.NEEDS_REFINEMENT: "backlog",
    Status.NEEDS_SPLIT: "backlog",
    Status.IN_ELABORATION: "elaboration",
    Status.READY_TO_WORK: "ready-to-work",
    Status.IN_PROGRESS: "in-progress",
    Status.READY_FOR_CODE_REVIEW: "in-progress",
    Status.CODE_REVIEW_FAILED: "in-progress",
    Status.NEEDS_WORK: "in-progress",
    Status.READY_FOR_QA: "UAT",
    Status.IN_QA: "UAT",
    Status.UAT: "UAT",
    Status.COMPLETED: "done",
    Status.CANCELLED: "archive",
    Status.SUPERSEDED: "archive",
}
STAGES: tuple[str, ...] = tuple(dict.fromkeys(STAGE_OF_STATUS.values()))

if set(STAGE_OF_STATUS) != set(Status) - {Status.BLOCKED}:
    raise ValueError("every status but blocked needs a stage")


def stage_for(status: Status, blocked_from: Status | None) -> str:
    if status is Status.BLOCKED:
        return STAGE_OF_STATUS[blocked_from or Status.PENDING]
    return STAGE_OF_STATUS[status]


STAMP_FORMAT = "%Y%m%d-%H%M"
# A second submission of a kind within the same minute is stamped YYYYMMDD-HHMM-2, -3, …
_STAMP = r"(?P<stamp>\d{8}-\d{4}(?:-[2-9]|-[1-9]\d+)?)"


@dataclass(frozen=True, kw_only=True)
class Layout:
    name: LayoutName
    staged: bool
    story_file_pattern: str  # {id} is replaced
    # kind -> file name pattern; {id} is replaced, {stamp} is a YYYYMMDD-HHMM time stamp
    artifact_patterns: dict[ArtifactKind, str]
    description: str

    def story_file_name(self, story_id: str) -> str:
        return self.story_file_pattern.format(id=story_id)

    def artifact_file_name(
        self, kind: ArtifactKind, story_id: str, at: datetime, serial: int = 1
    ) -> str:
        if kind is ArtifactKind.STORY:
            return self.story_file_name(story_id)
        stamp = at.strftime(STAMP_FORMAT) + (f"-{serial}" if serial > 1 else "")
        return self.artifact_patterns[kind].format(id=story_id, stamp=stamp)

    def new_artifact_file_name(
        self, kind: ArtifactKind, story_id: str, at: datetime, existing: Iterable[str]
    ) -> str:
        """The name for a new ``kind`` file stamped ``at`` that none of ``existing`` (the
        names in use: the story folder's files, or its stored versions' paths) has, so every
        version keeps a file of its own. Within one minute the serial goes past the highest
        in use, so the new file also sorts last (``stamp_key``) when an earlier one was
        removed. Fixed names (the QA gate, the staged layout's) are returned as they are:
        the database keeps their versions."""
        if not self.is_timestamped(kind):
            return self.artifact_file_name(kind, story_id, at)
        minute = at.strftime(STAMP_FORMAT)
        regex = self._regexes(story_id)[kind]
        serials = [
            _serial(stamp)
            for name in existing
            if (found := regex.fullmatch(name)) and (stamp := found["stamp"])[:13] == minute
        ]
        return self.artifact_file_name(kind, story_id, at, max(serials, default=0) + 1)

    def is_timestamped(self, kind: ArtifactKind) -> bool:
        return "{stamp}" in self.artifact_patterns.get(kind, "")

    def match(self, file_name: str, story_id: str) -> ArtifactKind | None:
        """The kind a file name stands for under this layout, or None."""
        if file_name == self.story_file_name(story_id):
            return ArtifactKind.STORY
        for kind, regex in self._regexes(story_id).items():
            if regex.fullmatch(file_name):
                return kind
        return None

    def _regexes(self, story_id: str) -> dict[ArtifactKind, re.Pattern[str]]:
        return {
            kind: re.compile(
                re.escape(pattern.format(id=story_id, stamp="\0")).replace("\0", _STAMP)
            )
            for kind, pattern in self.artifact_patterns.items()
        }

    def stamp_key(self, file_name: str, story_id: str) -> tuple[str, int]:
        """Sort key of a stamped name: (YYYYMMDD-HHMM, serial)."""
        stamp = self.stamp_of(file_name, story_id) or ""
        return stamp[:13], _serial(stamp)

    def written_order(
        self, kind: ArtifactKind, file_name: str, story_id: str
    ) -> tuple[str, str, int, str]:
        """Sort key that puts files in the order they were written, kind by kind: stamp,
        then serial (``-2`` after the plain name, ``-10`` after ``-9``; by the name alone
        ``-2.md`` comes first). What submits files the database lacks (sync) sorts by it."""
        return kind.value, *self.stamp_key(file_name, story_id), file_name

    def stamp_of(self, file_name: str, story_id: str) -> str | None:
        for regex in self._regexes(story_id).values():
            found = regex.fullmatch(file_name)
            if found and "stamp" in found.groupdict():
                return found["stamp"]
        return None


def _serial(stamp: str) -> int:
    """The serial of a stamp: 1 for YYYYMMDD-HHMM, N for YYYYMMDD-HHMM-N."""
    return int(stamp[14:]) if len(stamp) > 14 else 1


LAYOUTS: dict[LayoutName, Layout] = {
    LayoutName.STAGED: Layout(
        name=LayoutName.STAGED,
        staged=True,
        story_file_pattern="story.yaml",
        artifact_patterns={
            ArtifactKind.ELABORATION: "elaboration.yaml",
            ArtifactKind.PLAN: "plan.yaml",
            ArtifactKind.PROOF: "proof.yaml",
            ArtifactKind.CODE_REVIEW: "code-review.yaml",
            ArtifactKind.VERIFICATION: "verification.yaml",
            ArtifactKind.QA_GATE: "qa-gate.yaml",
        },
        description="FLOW: <root>/<stage>/<ID>/ with fixed YAML file names; the folder "
        "moves between stage folders as the status changes",
    ),
    LayoutName.FLAT: Layout(
        name=LayoutName.FLAT,
        staged=False,
        story_file_pattern="{id}.md",
        artifact_patterns={
            ArtifactKind.ELABORATION: "ELAB-{id}-{stamp}.md",
            ArtifactKind.PLAN: "PLAN-{id}-{stamp}.md",
            ArtifactKind.PROOF: "PROOF-{id}-{stamp}.md",
            ArtifactKind.CODE_REVIEW: "CODE-REVIEW-{id}-{stamp}.md",
            ArtifactKind.VERIFICATION: "QA-VERIFY-{id}-{stamp}.md",
            ArtifactKind.QA_GATE: "QA-GATE-{id}.yaml",
        },
        description="REVI: <root>/<ID>/ with Markdown artifacts stamped YYYYMMDD-HHMM in "
        "the epic's time zone (structured fields in YAML front matter)",
    ),
}

DEFAULT_ROOTS: dict[LayoutName, str] = {
    LayoutName.STAGED: "plans/{prefix_lower}",
    LayoutName.FLAT: "plans/stories",
}

# Names from older conventions, read (and renamed on submission) through this one registry.
LEGACY_ARTIFACT_NAMES: dict[str, ArtifactKind] = {
    r"REVIEW\.ya?ml": ArtifactKind.CODE_REVIEW,
    r"CODE-REVIEW\.ya?ml": ArtifactKind.CODE_REVIEW,
    r"EVIDENCE\.ya?ml": ArtifactKind.PROOF,
    r"PROOF\.ya?ml": ArtifactKind.PROOF,
    r"PROOF-.+\.md": ArtifactKind.PROOF,
    r"ELAB(ORATION)?\.ya?ml": ArtifactKind.ELABORATION,
    r"ELAB-.+\.md": ArtifactKind.ELABORATION,
    r"PLAN\.ya?ml": ArtifactKind.PLAN,
    r"IMPLEMENTATION-PLAN\.md": ArtifactKind.PLAN,
    r"VERIFICATION\.ya?ml": ArtifactKind.VERIFICATION,
    r"QA-VERIFY-.+\.md": ArtifactKind.VERIFICATION,
    r"QA-GATE\.ya?ml": ArtifactKind.QA_GATE,
    r"gate\.ya?ml": ArtifactKind.QA_GATE,
    r"qa_gate\.ya?ml": ArtifactKind.QA_GATE,
    r"code_review\.ya?ml": ArtifactKind.CODE_REVIEW,
}
_LEGACY = [(re.compile(pattern), kind) for pattern, kind in LEGACY_ARTIFACT_NAMES.items()]


def legacy_kind(file_name: str) -> ArtifactKind | None:
    for regex, kind in _LEGACY:
        if regex.fullmatch(file_name):
            return kind
    return None


# Where a fresh clone's sync looks for epic files: not in hidden folders, these vendored or
# build folders, or deeper than this many folders below the workspace. An epic root must be
# where it looks.
UNWALKED_FOLDERS = frozenset(
    {"node_modules", "venv", "__pycache__", "dist", "build", "target", "site-packages"}
)
MAX_ROOT_DEPTH = 8


def default_root(layout: LayoutName, prefix: str) -> str:
    return DEFAULT_ROOTS[layout].format(prefix_lower=prefix.lower())

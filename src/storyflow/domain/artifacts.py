"""Artifact kinds and the verdict vocabulary of each."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from storyflow.errors import InvalidInput


class ArtifactKind(StrEnum):
    STORY = "story"
    ELABORATION = "elaboration"
    PLAN = "plan"
    PROOF = "proof"
    CODE_REVIEW = "code_review"
    VERIFICATION = "verification"
    QA_GATE = "qa_gate"


class Verdict(StrEnum):
    PASS = "PASS"
    CONDITIONAL_PASS = "CONDITIONAL_PASS"
    NEEDS_REFINEMENT = "NEEDS_REFINEMENT"
    SPLIT_REQUIRED = "SPLIT_REQUIRED"
    FAIL = "FAIL"
    CONCERNS = "CONCERNS"
    WAIVED = "WAIVED"


# The field that carries the verdict, and the verdicts each kind may state.
VERDICT_FIELD: dict[ArtifactKind, str] = {
    ArtifactKind.ELABORATION: "verdict",
    ArtifactKind.CODE_REVIEW: "verdict",
    ArtifactKind.VERIFICATION: "verdict",
    ArtifactKind.QA_GATE: "decision",
}

VERDICTS: dict[ArtifactKind, tuple[Verdict, ...]] = {
    ArtifactKind.ELABORATION: (
        Verdict.PASS,
        Verdict.CONDITIONAL_PASS,
        Verdict.NEEDS_REFINEMENT,
        Verdict.FAIL,
        Verdict.SPLIT_REQUIRED,
    ),
    ArtifactKind.CODE_REVIEW: (Verdict.PASS, Verdict.FAIL),
    ArtifactKind.VERIFICATION: (Verdict.PASS, Verdict.FAIL),
    ArtifactKind.QA_GATE: (Verdict.PASS, Verdict.CONCERNS, Verdict.FAIL, Verdict.WAIVED),
}

# The Agent Log row of a submitted version: "KIND vN submitted[: VERDICT] (sha256 HEX)". The
# short hash lets another clone tell the version's file from an older file under its name
# (the staged layout keeps one file per kind) even when both state the same verdict. Rows
# written before the hash existed have none.
SUBMITTED_ROW = re.compile(
    r"^(?P<kind>[a-z_]+) v(?P<version>\d+) submitted(?:: (?P<verdict>[^\s(]\S*))?"
    r"(?: \(sha256 (?P<fingerprint>[0-9a-f]{12})\))?$"
)


def fingerprint(text: str) -> str:
    """The short content hash a submitted row carries: the first 12 hex digits of the
    SHA-256 of the text with CRLF line ends read as LF (git may convert line ends on
    checkout, which does not make the file another version)."""
    data = text.replace("\r\n", "\n").encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:12]


def submitted_action(kind: ArtifactKind, version: int, verdict: str | None, text: str) -> str:
    """The Agent Log action of ``kind`` version ``version`` submitted with ``text``."""
    stated = f": {verdict}" if verdict else ""
    return f"{kind.value} v{version} submitted{stated} (sha256 {fingerprint(text)})"


KIND_ALIASES: dict[str, ArtifactKind] = {
    "code-review": ArtifactKind.CODE_REVIEW,
    "review": ArtifactKind.CODE_REVIEW,
    "qa-gate": ArtifactKind.QA_GATE,
    "gate": ArtifactKind.QA_GATE,
    "elab": ArtifactKind.ELABORATION,
    "evidence": ArtifactKind.PROOF,
    "qa-verify": ArtifactKind.VERIFICATION,
    "verify": ArtifactKind.VERIFICATION,
}


def parse_kind(text: str) -> ArtifactKind:
    key = text.strip().lower()
    try:
        return ArtifactKind(key.replace("-", "_"))
    except ValueError:
        pass
    if key in KIND_ALIASES:
        return KIND_ALIASES[key]
    raise InvalidInput(
        f"unknown artifact kind {text!r}",
        code="INVALID_KIND",
        hint="use one of: " + ", ".join(k.value for k in ArtifactKind),
        details={"value": text},
    )


def parse_verdict(kind: ArtifactKind, value: object) -> Verdict:
    allowed = VERDICTS.get(kind, ())
    text = str(value).strip().upper().replace("-", "_").replace(" ", "_")
    for verdict in allowed:
        if verdict.value == text:
            return verdict
    raise InvalidInput(
        f"{kind.value} verdict {value!r} is not one of {', '.join(v.value for v in allowed)}",
        code="INVALID_VERDICT",
        hint=f"set {VERDICT_FIELD.get(kind, 'verdict')} to one of "
        + ", ".join(v.value for v in allowed),
        details={"kind": kind.value, "value": str(value)},
    )

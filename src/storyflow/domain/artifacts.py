"""Artifact kinds and the verdict vocabulary of each."""

from __future__ import annotations

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

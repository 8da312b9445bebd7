"""The one schema per artifact kind (pydantic), exported as JSON Schema.

Imported only by the commands that validate artifacts: pydantic models cost ~100 ms to build,
which read-only commands must not pay.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storyflow.domain.artifacts import VERDICT_FIELD, ArtifactKind, parse_verdict
from storyflow.domain.budgets import Enforcement
from storyflow.domain.statuses import parse_status
from storyflow.errors import InvalidInput

StoryId = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{1,11}-[0-9]{3,6}$")]
Text = Annotated[str, Field(min_length=1)]
Percent = Annotated[float, Field(ge=0, le=100)]
CheckStatus = Literal["pass", "fail", "not_run"]


class _Artifact(BaseModel):
    # Agents add fields of their own; the ones storyflow relies on are checked strictly.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TokenBudgetBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    phase_estimates: dict[str, Any]
    actual_measurements: list[dict[str, Any]] = []


class AgentLogEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    timestamp: Text
    agent: Text
    action: Text
    outputs: str = ""


class StoryArtifact(_Artifact):
    """The story file: front matter plus ## Reuse Plan, ## Token Budget, ## Agent Log."""

    id: StoryId
    title: Text
    status: str
    priority: str | None = None
    phase: int | None = None
    depends_on: list[StoryId] = []
    requires: list[str] = []
    breaking_change: bool = False
    graph_integration: bool = False
    token_budget_multiplier: Annotated[float, Field(gt=0, le=100)] = 1.0
    token_budget_enforcement: Enforcement | None = None
    reuse_plan: Text = Field(description="## Reuse Plan: packages reused, or why not")
    token_budget: TokenBudgetBlock = Field(description="## Token Budget (rendered)")
    agent_log: list[AgentLogEntry] = Field(description="## Agent Log (append-only)")

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        return parse_status(value)[0].value


class ElaborationArtifact(_Artifact):
    story_id: StoryId
    verdict: Literal["PASS", "CONDITIONAL_PASS", "NEEDS_REFINEMENT", "FAIL", "SPLIT_REQUIRED"]
    summary: str = ""
    acceptance_criteria: list[str] = []
    conditions: list[str] = Field(default=[], description="required for CONDITIONAL_PASS")
    split_into: list[str] = Field(default=[], description="proposed stories for SPLIT_REQUIRED")


class PlanArtifact(_Artifact):
    story_id: StoryId
    approach: Text
    steps: list[str] = []
    dependencies: list[str] = []
    test_strategy: str = ""
    migration_path: str | None = Field(default=None, description="breaking changes: required")
    backward_compatibility: str | None = Field(
        default=None, description="breaking changes: required"
    )
    migration_tests: str | list[str] | None = Field(
        default=None, description="breaking changes: required"
    )


class ReuseVerification(_Strict):
    packages_used: list[str] = []
    locations: list[str] = []
    new_shared_packages: list[str] = []
    justification: str = ""


class ProofChecks(_Strict):
    lint: CheckStatus = "not_run"
    typecheck: CheckStatus = "not_run"
    tests: CheckStatus = "not_run"


class ProofArtifact(_Artifact):
    story_id: StoryId
    summary: Text
    files_changed: list[str] = []
    reuse_verification: ReuseVerification | Text = Field(
        description="## Reuse Verification: packages used, locations, or justification"
    )
    checks: ProofChecks = ProofChecks()
    coverage: Percent | None = None


class Finding(_Strict):
    severity: Literal["critical", "high", "medium", "low", "info"]
    message: Text
    file: str | None = None
    line: int | None = None


class CodeReviewArtifact(_Artifact):
    story_id: StoryId
    verdict: Literal["PASS", "FAIL"]
    coverage: Percent | None = None
    findings: list[Finding] = []
    reviewers: list[str] = []
    summary: str = ""


class CriterionResult(_Strict):
    criterion: Text
    status: Literal["pass", "fail"]
    evidence: str = ""


class Scenario(_Strict):
    name: Text
    status: Literal["pass", "fail"]
    evidence: str = ""


class VerificationArtifact(_Artifact):
    story_id: StoryId
    verdict: Literal["PASS", "FAIL"]
    acceptance_criteria: list[CriterionResult] = []
    tests: dict[str, CheckStatus] = {}
    scenarios: list[Scenario] = []
    regressions: list[str] = []
    summary: str = ""


class GateCheck(_Strict):
    name: Text
    required: bool = True
    status: Literal["pass", "fail", "skip"]


class GateIssue(_Strict):
    severity: Literal["low", "medium", "high"]
    description: Text


class Waiver(_Strict):
    reason: Text
    approver: Text
    expires: date


class QaGateArtifact(_Artifact):
    story_id: StoryId
    decision: Literal["PASS", "CONCERNS", "FAIL", "WAIVED"]
    checks: list[GateCheck] = []
    issues: list[GateIssue] = []
    waiver: Waiver | None = None
    reviewer: str = ""
    summary: str = ""


SCHEMAS: dict[ArtifactKind, type[BaseModel]] = {
    ArtifactKind.STORY: StoryArtifact,
    ArtifactKind.ELABORATION: ElaborationArtifact,
    ArtifactKind.PLAN: PlanArtifact,
    ArtifactKind.PROOF: ProofArtifact,
    ArtifactKind.CODE_REVIEW: CodeReviewArtifact,
    ArtifactKind.VERIFICATION: VerificationArtifact,
    ArtifactKind.QA_GATE: QaGateArtifact,
}
if set(SCHEMAS) != set(ArtifactKind):
    raise ValueError("every artifact kind needs a schema")


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(document)"


def validate(kind: ArtifactKind, data: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Validate ``data`` as ``kind``; return its normalised JSON form or raise with every error."""
    field = VERDICT_FIELD.get(kind)
    if field and data.get(field) is not None:
        try:
            verdict = parse_verdict(kind, data[field])
        except InvalidInput as exc:  # say which file, as every other artifact error does
            raise InvalidInput(
                f"{source}: {exc.message}",
                code=exc.code,
                hint=exc.hint,
                details={"file": source, **exc.details},
            ) from None
        data = {**data, field: verdict.value}
    try:
        model = SCHEMAS[kind].model_validate(data)
    except ValidationError as exc:
        errors = [{"field": _location(err["loc"]), "problem": err["msg"]} for err in exc.errors()]
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(
            f"{source}: {kind.value} field {first['field']}: {first['problem']}{more}",
            code="SCHEMA_INVALID",
            hint=f"see the schema: storyflow artifact schema {kind.value}",
            details={"file": source, "kind": kind.value, "errors": errors},
        ) from exc
    return model.model_dump(mode="json")


def json_schema(kind: ArtifactKind) -> dict[str, Any]:
    schema = SCHEMAS[kind].model_json_schema()
    schema["$id"] = f"https://storyflow.dev/schemas/{kind.value}.json"
    return schema

"""Gates: whether an artifact's verdict agrees with its own evidence.

These read the parsed (already schema-validated) content of an artifact as plain data, so
the same rules apply at submission and again when a transition relies on the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from storyflow.domain.artifacts import ArtifactKind, Verdict

PASSING = "pass"
BLOCKING_REVIEW_SEVERITIES = frozenset({"critical", "high"})


def _items(content: Mapping[str, Any], key: str) -> Sequence[Mapping[str, Any]]:
    value = content.get(key) or []
    return [v for v in value if isinstance(v, Mapping)]


def review_contradictions(content: Mapping[str, Any], threshold: float) -> list[str]:
    verdict = content.get("verdict")
    coverage = content.get("coverage")
    blocking = [
        f for f in _items(content, "findings") if f.get("severity") in BLOCKING_REVIEW_SEVERITIES
    ]
    problems: list[str] = []
    if verdict == Verdict.PASS:
        if coverage is None:
            problems.append("a PASS review must state coverage")
        elif float(coverage) < threshold:
            problems.append(f"PASS with coverage {coverage}% below the threshold {threshold:g}%")
        if blocking:
            problems.append(f"PASS with {len(blocking)} critical/high finding(s)")
    elif verdict == Verdict.FAIL:
        below = coverage is not None and float(coverage) < threshold
        if not _items(content, "findings") and not below:
            problems.append("a FAIL review must list the finding that fails it")
    return problems


def verification_contradictions(content: Mapping[str, Any]) -> list[str]:
    failures = verification_failures(content)
    verdict = content.get("verdict")
    if verdict == Verdict.PASS and failures:
        return ["PASS while " + "; ".join(failures)]
    if verdict == Verdict.FAIL and not failures:
        return ["a FAIL verification must record the criterion, test or scenario that fails"]
    return []


def verification_failures(content: Mapping[str, Any]) -> list[str]:
    failures: list[str] = []
    failed_ac = [
        str(a.get("criterion", "?"))
        for a in _items(content, "acceptance_criteria")
        if a.get("status") != PASSING
    ]
    if failed_ac:
        failures.append("acceptance criteria not passing: " + ", ".join(failed_ac))
    tests = content.get("tests") or {}
    failed_tests = sorted(name for name, status in tests.items() if status == "fail")
    if failed_tests:
        failures.append("tests failing: " + ", ".join(failed_tests))
    failed_sc = [
        str(s.get("name", "?")) for s in _items(content, "scenarios") if s.get("status") != PASSING
    ]
    if failed_sc:
        failures.append("scenarios not passing: " + ", ".join(failed_sc))
    regressions = content.get("regressions") or []
    if regressions:
        failures.append(f"{len(regressions)} regression(s)")
    return failures


def passing_scenarios(content: Mapping[str, Any]) -> list[str]:
    return [
        str(s.get("name"))
        for s in _items(content, "scenarios")
        if s.get("status") == PASSING and s.get("evidence")
    ]


def computed_gate_decision(content: Mapping[str, Any]) -> Verdict:
    """FAIL on any failed required check or high issue; CONCERNS on a medium issue; else PASS."""
    failed_required = [
        c
        for c in _items(content, "checks")
        if c.get("required", True) and c.get("status") == "fail"
    ]
    severities = {i.get("severity") for i in _items(content, "issues")}
    if failed_required or "high" in severities:
        return Verdict.FAIL
    if "medium" in severities:
        return Verdict.CONCERNS
    return Verdict.PASS


def waiver_problems(content: Mapping[str, Any], today: date) -> list[str]:
    waiver = content.get("waiver")
    if not isinstance(waiver, Mapping):
        return ["WAIVED needs a waiver with reason, approver and expires"]
    problems = [
        f"waiver needs {key}" for key in ("reason", "approver") if not str(waiver.get(key) or "")
    ]
    expires = waiver.get("expires")
    if not expires:
        problems.append("waiver needs an expires date")
    else:
        expiry = date.fromisoformat(str(expires)[:10])
        if expiry < today:
            problems.append(f"waiver expired on {expiry.isoformat()}")
    return problems


def gate_contradictions(content: Mapping[str, Any], today: date) -> list[str]:
    decision = content.get("decision")
    computed = computed_gate_decision(content)
    if decision == Verdict.WAIVED:
        if computed is Verdict.PASS:
            return ["WAIVED, but the evidence passes: nothing to waive (decision is PASS)"]
        return waiver_problems(content, today)
    if decision != computed:
        return [f"decision {decision} disagrees with its evidence, which gives {computed.value}"]
    return []


def contradictions(
    kind: ArtifactKind, content: Mapping[str, Any], *, threshold: float, today: date
) -> list[str]:
    """Every way ``content`` contradicts its own evidence (empty when consistent)."""
    if kind is ArtifactKind.CODE_REVIEW:
        return review_contradictions(content, threshold)
    if kind is ArtifactKind.VERIFICATION:
        return verification_contradictions(content)
    if kind is ArtifactKind.QA_GATE:
        return gate_contradictions(content, today)
    conditional = content.get("verdict") == Verdict.CONDITIONAL_PASS
    if kind is ArtifactKind.ELABORATION and conditional and not content.get("conditions"):
        return ["CONDITIONAL_PASS must list its conditions"]
    return []


def reuse_problems(content: Mapping[str, Any]) -> list[str]:
    """The proof's Reuse Verification: packages reused, or why reuse was not possible."""
    reuse = content.get("reuse_verification")
    if isinstance(reuse, str):
        return [] if reuse.strip() else ["the proof's Reuse Verification is empty"]
    if isinstance(reuse, Mapping):
        if reuse.get("packages_used") or str(reuse.get("justification") or "").strip():
            return []
        return ["Reuse Verification names no reused package and no justification"]
    return ["the proof has no Reuse Verification"]


def failing_checks(content: Mapping[str, Any]) -> list[str]:
    """lint / typecheck / tests recorded in the proof, each required to pass."""
    checks = content.get("checks") or {}
    return [
        f"{name} is {checks.get(name, 'not recorded')}"
        for name in ("lint", "typecheck", "tests")
        if checks.get(name) != PASSING
    ]

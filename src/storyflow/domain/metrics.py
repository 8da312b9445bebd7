"""What the metrics count, as data, and the pure folds over the figures the store returns.

The store aggregates (sums, counts, durations) in SQL so ``storyflow metrics`` stays fast
over millions of events; this module says which verdicts pass, which edges are rework, and
shapes the figures into the report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from storyflow.domain.artifacts import VERDICTS, ArtifactKind
from storyflow.domain.statuses import TERMINAL, Status
from storyflow.domain.transitions import find_edge


@dataclass(frozen=True, kw_only=True)
class Scope:
    """A story, an epic, or (both None) the whole workspace."""

    story: str | None = None
    epic: str | None = None

    @property
    def label(self) -> str:
        return self.story or self.epic or "workspace"


# The verdicts that let a story through each gate.
PASSING: dict[ArtifactKind, frozenset[str]] = {
    ArtifactKind.ELABORATION: frozenset({"PASS", "CONDITIONAL_PASS"}),
    ArtifactKind.CODE_REVIEW: frozenset({"PASS"}),
    ArtifactKind.VERIFICATION: frozenset({"PASS"}),
    ArtifactKind.QA_GATE: frozenset({"PASS", "CONCERNS", "WAIVED"}),
}

S = Status
# Rework: the edges that send a story back (each taken once per loop).
REWORK_EDGES: dict[str, tuple[Status, Status]] = {
    "review_failed": (S.READY_FOR_CODE_REVIEW, S.CODE_REVIEW_FAILED),
    "fix_after_review": (S.CODE_REVIEW_FAILED, S.IN_PROGRESS),
    "qa_failed": (S.IN_QA, S.NEEDS_WORK),
    "fix_after_qa": (S.NEEDS_WORK, S.IN_PROGRESS),
    "gate_failed": (S.UAT, S.IN_PROGRESS),
    "refinement": (S.IN_ELABORATION, S.NEEDS_REFINEMENT),
}


def _validate() -> None:
    for kind, verdicts in PASSING.items():
        if not verdicts <= {v.value for v in VERDICTS[kind]}:
            raise ValueError(f"{kind}: a passing verdict outside its vocabulary")
    for name, (source, target) in REWORK_EDGES.items():
        if find_edge(source, target) is None:
            raise ValueError(f"rework edge {name}: no edge {source} -> {target}")


_validate()
# Statuses whose last stay never ends: not counted in time-in-status.
OPEN_ENDED = frozenset(s.value for s in TERMINAL)
# Times are summed as integer milliseconds since this moment (exact sums, no overflow for
# ~40 million transitions).
MS_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def ms_since_epoch(moment: datetime) -> int:
    return (moment - MS_EPOCH) // timedelta(milliseconds=1)


def stats(values: Sequence[float], *, digits: int = 3) -> dict[str, Any]:
    """count, total, mean, min, p50, p90, max (nearest-rank percentiles)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * n) - 1)]

    total = math.fsum(ordered)
    return {
        "count": n,
        "total": round(total, digits),
        "mean": round(total / n, digits),
        "min": round(ordered[0], digits),
        "p50": round(rank(0.5), digits),
        "p90": round(rank(0.9), digits),
        "max": round(ordered[-1], digits),
    }


def pass_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows of (kind, verdict, is_first, n) -> per kind: verdict counts, pass rate and first-time
    pass rate (the share of first versions that passed)."""
    kinds: dict[str, dict[str, Any]] = {}
    for row in rows:
        kind = ArtifactKind(row["kind"])
        entry = kinds.setdefault(
            kind.value, {"verdicts": {}, "total": 0, "passed": 0, "first": 0, "first_passed": 0}
        )
        verdict, n = str(row["verdict"]), int(row["n"])
        entry["verdicts"][verdict] = entry["verdicts"].get(verdict, 0) + n
        entry["total"] += n
        passed = verdict in PASSING[kind]
        entry["passed"] += n if passed else 0
        if row["is_first"]:
            entry["first"] += n
            entry["first_passed"] += n if passed else 0
    for entry in kinds.values():
        entry["pass_rate"] = _rate(entry["passed"], entry["total"])
        entry["first_pass_rate"] = _rate(entry.pop("first_passed"), entry.pop("first"))
        entry["verdicts"] = dict(sorted(entry["verdicts"].items()))
    return {k.value: kinds[k.value] for k in PASSING if k.value in kinds}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rework(edges: Iterable[Mapping[str, Any]], iterations: Mapping[str, Any]) -> dict[str, Any]:
    """Loop counts from the transition edges, and the stories' iteration counters."""
    counts: dict[tuple[str, str], int] = {}
    for row in edges:
        if row["from_status"] is not None:
            key = (str(row["from_status"]), str(row["to_status"]))
            counts[key] = counts.get(key, 0) + int(row["n"])
    loops = {
        name: counts.get((source.value, target.value), 0)
        for name, (source, target) in REWORK_EDGES.items()
    }
    loops["blocked"] = sum(n for (_, target), n in counts.items() if target == S.BLOCKED.value)
    return {
        "loops": loops,
        "review_iterations": _iterations(iterations, "review"),
        "qa_iterations": _iterations(iterations, "qa"),
    }


def _iterations(row: Mapping[str, Any], name: str) -> dict[str, int]:
    return {
        "total": int(row.get(f"{name}_total") or 0),
        "max": int(row.get(f"{name}_max") or 0),
        "stories": int(row.get(f"{name}_stories") or 0),
    }


def time_in_status(
    edges: Iterable[Mapping[str, Any]], current: Mapping[str, int], now: datetime
) -> dict[str, Any]:
    """Per status (lifecycle order): visits, seconds spent, stays still open now.

    ``edges`` are (from_status, to_status, n, at_ms) with at_ms the sum of the times the
    edge was taken; ``current`` counts the stories now in each status. History is a chain
    (each move records the status it left), so a stay in S ends at the next transition,
    whose from_status is S: time in S = exits from S - entries into S + now x open stays."""
    visits: dict[str, int] = {}
    spent: dict[str, int] = {}
    for row in edges:
        target, at = str(row["to_status"]), int(row["at_ms"] or 0)
        visits[target] = visits.get(target, 0) + int(row["n"])
        spent[target] = spent.get(target, 0) - at
        if row["from_status"] is not None:
            source = str(row["from_status"])
            spent[source] = spent.get(source, 0) + at
    now_ms = ms_since_epoch(now)
    out: dict[str, Any] = {}
    for status in Status:
        name = status.value
        if name in OPEN_ENDED or name not in visits:
            continue
        open_now = int(current.get(name, 0))
        out[name] = {
            "visits": visits[name],
            "seconds": (spent[name] + open_now * now_ms) / 1000,
            "open": open_now,
        }
    return out


def durations(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows of (phase, ms: comma-separated integer milliseconds), several per phase maybe,
    -> per phase: count, total, mean, min, p50, p90, max."""
    values: dict[str, list[float]] = {}
    for row in rows:
        found = values.setdefault(str(row["phase"] or "(none)"), [])
        found.extend(float(v) for v in str(row["ms"] or "").split(",") if v)
    return {phase: stats(ms) for phase, ms in values.items() if ms}


LEDGER_SUMS = ("total", "input", "output", "cache_read", "cache_write", "entries", "unpriced")


def add_up(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Ledger roll-up rows summed into one (exact integers; cost with fsum)."""
    rows = list(rows)
    summed: dict[str, Any] = {k: sum(int(r[k] or 0) for r in rows) for k in LEDGER_SUMS}
    summed["cost"] = math.fsum(float(r["cost"]) for r in rows if r["cost"] is not None)
    return summed


def tokens(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """One ledger roll-up row as the report's token figures."""
    row = row or {}
    return {
        "total": int(row.get("total") or 0),
        "input": int(row.get("input") or 0),
        "output": int(row.get("output") or 0),
        "cache_read": int(row.get("cache_read") or 0),
        "cache_write": int(row.get("cache_write") or 0),
        "cost_usd": round(float(row.get("cost") or 0.0), 6),
        "entries": int(row.get("entries") or 0),
        "unpriced_entries": int(row.get("unpriced") or 0),
    }

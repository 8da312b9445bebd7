"""What a run reports while it works (``RunObserver``) and when it ends (``RunSummary``).

The engine calls the observer once per phase start and end, per error, per story that
reaches a resting status, per budget limit a phase run's tokens cross (as their ledger
entries commit) and per other warning a worker's turn left; calls are serialised, never
concurrent. ``PrintObserver`` prints one line per phase and a warning line per crossing
and per warning; a live board (Rich) plugs in through the same protocol. The summary is
built from the database (runs, ledger, stories), so it is the record, not a tally kept on
the side; ``render_text`` prints it as the plain-text report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from storyflow.services.agents import ToolCall, Usage


@dataclass(frozen=True, kw_only=True)
class PhaseEvent:
    story_id: str
    epic: str
    title: str
    phase: str
    run_id: str | None
    attempt: int
    worker: str
    agent: str | None = None
    model: str | None = None
    status: str = "running"  # running | succeeded | failed | paused | skipped | recorded
    verdict: str | None = None
    source: str | None = None  # the story's status before
    target: str | None = None  # and after
    duration_ms: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    error_code: str | None = None
    message: str | None = None


# What each level does once a phase is past a limit: said with the crossing, so a person
# reading the log knows whether the run goes on.
_AT_WARNING = {
    "warning": "the run goes on",
    "soft_gate": "the story pauses at its hard limit of {hard:,}",
    "hard_gate": "the phase is stopped at its hard limit of {hard:,}",
}
_AT_HARD = {
    "warning": "the run goes on",
    "soft_gate": "the story pauses until story move --confirm-budget confirms the overrun",
    "hard_gate": "the phase fails",
}


@dataclass(frozen=True, kw_only=True)
class BudgetEvent:
    """A phase run's ledger entries took its budget phase across a limit its enforcement
    level acts on: the warning limit (state ``warning``) or the hard one (``over``)."""

    story_id: str
    epic: str
    phase: str  # the run's phase (plan)
    budget_phase: str  # the budget it spends (implementation)
    run_id: str | None
    attempt: int
    worker: str
    enforcement: str  # warning | soft_gate | hard_gate (advisory records only)
    used: int  # the budget phase's tokens, this run's entries included
    warning_limit: int
    hard_limit: int
    state: str  # warning | over: the limit crossed
    action: str  # warn | confirm | refuse

    @property
    def limit(self) -> int:
        return self.hard_limit if self.state == "over" else self.warning_limit

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit if self.limit else 0.0

    def describe(self) -> str:
        which = "hard" if self.state == "over" else "warning"
        then = (_AT_HARD if self.state == "over" else _AT_WARNING).get(self.enforcement, "")
        return (
            f"{self.story_id} {self.phase}: {self.budget_phase} budget at {self.used:,} tokens, "
            f"{self.percent:.0f}% of its {which} limit of {self.limit:,} "
            f"(enforcement {self.enforcement}: {then.format(hard=self.hard_limit)})"
        )


class RunObserver(Protocol):
    def on_phase_start(self, event: PhaseEvent) -> None: ...

    def on_phase_end(self, event: PhaseEvent) -> None: ...

    def on_error(self, event: PhaseEvent) -> None: ...

    def on_story_done(self, story_id: str, status: str, reason: str | None) -> None: ...

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        """A running phase's agent called a tool (as it works: the live board shows it)."""
        ...

    def on_budget(self, event: BudgetEvent) -> None:
        """A phase run's committed tokens crossed a budget limit (once per crossing; a
        hard_gate stop is reported by ``on_error`` instead). ``NullObserver`` ignores it."""
        ...

    def on_warning(self, message: str) -> None:
        """A worker's phase left a warning that is not a budget figure (a story file it
        could not write, METRICS.yaml not written, ...), as it happened."""
        ...


class NullObserver:
    def on_phase_start(self, event: PhaseEvent) -> None:
        pass

    def on_phase_end(self, event: PhaseEvent) -> None:
        pass

    def on_error(self, event: PhaseEvent) -> None:
        pass

    def on_story_done(self, story_id: str, status: str, reason: str | None) -> None:
        pass

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        pass

    def on_budget(self, event: BudgetEvent) -> None:
        pass

    def on_warning(self, message: str) -> None:
        pass


class PrintObserver:
    """One line per phase end, error, resting story, budget crossing and warning, through
    ``write``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def on_phase_start(self, event: PhaseEvent) -> None:
        pass

    def on_phase_end(self, event: PhaseEvent) -> None:
        move = f" {event.source} -> {event.target}" if event.target else ""
        verdict = f" {event.verdict}" if event.verdict else ""
        tokens = f" {event.usage.total:,} tok" if event.usage.total else ""
        self.write(
            f"{event.story_id} {event.phase:<9} {event.status}{verdict}{move}"
            f" ({event.duration_ms} ms{tokens}, {event.worker})"
        )

    def on_error(self, event: PhaseEvent) -> None:
        self.write(
            f"{event.story_id} {event.phase:<9} attempt {event.attempt} failed: "
            f"{event.error_code}: {event.message}"
        )

    def on_story_done(self, story_id: str, status: str, reason: str | None) -> None:
        self.write(f"{story_id} {status}" + (f": {reason}" if reason else ""))

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        pass  # a line per phase: the tools are in the trace

    def on_budget(self, event: BudgetEvent) -> None:
        self.write(f"storyflow: warning: {event.describe()}")

    def on_warning(self, message: str) -> None:
        self.write(f"storyflow: warning: {message}")


class SerialObserver:
    """Serialises calls from worker threads to one observer."""

    def __init__(self, inner: RunObserver) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    def on_phase_start(self, event: PhaseEvent) -> None:
        with self._lock:
            self.inner.on_phase_start(event)

    def on_phase_end(self, event: PhaseEvent) -> None:
        with self._lock:
            self.inner.on_phase_end(event)

    def on_error(self, event: PhaseEvent) -> None:
        with self._lock:
            self.inner.on_error(event)

    def on_story_done(self, story_id: str, status: str, reason: str | None) -> None:
        with self._lock:
            self.inner.on_story_done(story_id, status, reason)

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        with self._lock:
            self.inner.on_tool_call(story_id, run_id, call)

    def on_budget(self, event: BudgetEvent) -> None:
        with self._lock:
            self.inner.on_budget(event)

    def on_warning(self, message: str) -> None:
        with self._lock:
            self.inner.on_warning(message)


# ---- the summary ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    run_id: str
    story_id: str
    phase: str
    attempt: int
    status: str
    verdict: str | None
    agent: str
    model: str | None
    worker: str | None
    error_code: str | None
    duration_ms: int
    tokens: Usage
    cost_usd: float


@dataclass(frozen=True, kw_only=True)
class StoryResult:
    story_id: str
    title: str
    status: str
    reason: str | None  # blocked reason, pause, or why it waits
    runs: int
    tokens: int
    cost_usd: float


@dataclass(frozen=True, kw_only=True)
class Overrun:
    story_id: str
    phase: str
    enforcement: str
    used: int
    warning_limit: int
    hard_limit: int
    state: str  # warning | over
    action: str  # what the run did: recorded, warned, paused, stopped


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    epic: str | None
    started_at: str
    finished_at: str
    wall_ms: int
    workers: int
    runs: tuple[RunRecord, ...]
    stories: tuple[StoryResult, ...]
    tokens: Usage
    cost_usd: float
    phase_ms: dict[str, int]  # total agent+engine time per phase
    gates: dict[str, int]  # QA gate decisions: PASS / CONCERNS / FAIL / WAIVED -> count
    reviews: dict[str, int]  # code review verdicts -> count
    overruns: tuple[Overrun, ...]
    takeovers: int
    interrupted: bool = False

    @property
    def failed_runs(self) -> int:
        return sum(1 for r in self.runs if r.status == "failed")

    def by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for story in self.stories:
            counts[story.status] = counts.get(story.status, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "epic": self.epic,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_ms": self.wall_ms,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "runs": [
                {
                    "run_id": r.run_id,
                    "story": r.story_id,
                    "phase": r.phase,
                    "attempt": r.attempt,
                    "status": r.status,
                    "verdict": r.verdict,
                    "agent": r.agent,
                    "model": r.model,
                    "worker": r.worker,
                    "error_code": r.error_code,
                    "duration_ms": r.duration_ms,
                    "tokens": {**r.tokens.to_json(), "total": r.tokens.total},
                    "cost_usd": round(r.cost_usd, 6),
                }
                for r in self.runs
            ],
            "stories": [
                {
                    "story": s.story_id,
                    "title": s.title,
                    "status": s.status,
                    "reason": s.reason,
                    "runs": s.runs,
                    "tokens": s.tokens,
                    "cost_usd": round(s.cost_usd, 6),
                }
                for s in self.stories
            ],
            "status_counts": self.by_status(),
            "tokens": {**self.tokens.to_json(), "total": self.tokens.total},
            "cost_usd": round(self.cost_usd, 6),
            "phase_ms": self.phase_ms,
            "gates": self.gates,
            "reviews": self.reviews,
            "overruns": [o.__dict__ for o in self.overruns],
            "takeovers": self.takeovers,
            "failed_runs": self.failed_runs,
        }


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def render_text(summary: RunSummary) -> str:
    """The plain-text report: stories, tokens and cost, phase times, gates, overruns."""
    lines = [
        f"run report{' for ' + summary.epic if summary.epic else ''}: "
        f"{len(summary.runs)} phase runs by {summary.workers} worker(s) in "
        f"{summary.wall_ms / 1000:.1f} s" + (" (interrupted)" if summary.interrupted else ""),
        "stories: " + (", ".join(f"{n} {s}" for s, n in summary.by_status().items()) or "none"),
    ]
    if summary.stories:
        rows = [["story", "status", "runs", "tokens", "cost", "note"]]
        rows += [
            [
                s.story_id,
                s.status,
                str(s.runs),
                f"{s.tokens:,}",
                f"${s.cost_usd:.4f}",
                _shortened(s.reason or "", 60),
            ]
            for s in summary.stories
        ]
        lines += _table(rows)
    t = summary.tokens
    lines.append(
        f"tokens: {t.total:,} (input {t.input_tokens:,}, output {t.output_tokens:,}, "
        f"cache read {t.cache_read_tokens:,}, cache write {t.cache_write_tokens:,}); "
        f"cost ${summary.cost_usd:.4f}"
    )
    if summary.phase_ms:
        lines.append(
            "time per phase: "
            + ", ".join(f"{p} {ms / 1000:.1f} s" for p, ms in summary.phase_ms.items())
        )
    gates = ", ".join(f"{k} {v}" for k, v in summary.gates.items()) or "none"
    reviews = ", ".join(f"{k} {v}" for k, v in summary.reviews.items()) or "none"
    lines.append(f"QA gates: {gates}; code reviews: {reviews}")
    failed = summary.failed_runs
    lines.append(f"failed runs: {failed}; lease takeovers: {summary.takeovers}")
    if summary.overruns:
        lines.append("budget overruns:")
        rows = [["story", "phase", "used", "warning", "hard", "enforcement", "action"]]
        rows += [
            [
                o.story_id,
                o.phase,
                f"{o.used:,}",
                f"{o.warning_limit:,}",
                f"{o.hard_limit:,}",
                o.enforcement,
                o.action,
            ]
            for o in summary.overruns
        ]
        lines += _table(rows)
    else:
        lines.append("budget overruns: none")
    return "\n".join(lines) + "\n"


def _shortened(text: str, limit: int) -> str:
    """``text`` in ``limit`` characters: cut at a word, with an ellipsis (a figure cut in
    the middle, "hard limit 50,00", reads as another figure)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "\u2026"

"""The live board of `storyflow run` (a Rich Live display on stderr) and the final report.

``LiveBoard`` is a ``RunObserver``: the engine calls it (serialised) as phases start and
end, errors happen, stories come to rest and phases cross their budget limits; a Rich
``Live`` redraws it four times a second from its own thread, so every read and write of the
board's state holds one lock. Rich is imported here only: the read-only commands never load
it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.metrics import PASSING, stats
from storyflow.domain.statuses import TERMINAL, Status
from storyflow.entrypoints.cli.render import seconds_text

if TYPE_CHECKING:
    from rich.live import Live

    from storyflow.config import ModelPrice
    from storyflow.services.agents import ToolCall
    from storyflow.services.run_report import BudgetEvent, PhaseEvent, RunSummary

RESTING = frozenset({*(s.value for s in TERMINAL), Status.BLOCKED.value})
STATUS_STYLE = {"completed": "green", "blocked": "red", "cancelled": "dim", "superseded": "dim"}


@dataclass
class _Running:
    event: PhaseEvent
    since: float
    doing: str = ""  # the tool its agent called last


class LiveBoard:
    """Counts per status, running phases with their elapsed time, tokens and cost so far,
    recent errors and budget crossings. Use as a context manager around the run; it is the
    run's observer."""

    def __init__(
        self,
        *,
        title: str,
        counts: Mapping[str, int],
        models: Mapping[str, ModelPrice] | None = None,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
        errors_shown: int = 5,
    ) -> None:
        self.title = title
        self.counts: Counter[str] = Counter({k: v for k, v in counts.items() if v})
        self.models = dict(models or {})
        self.console = console or Console(stderr=True)
        self.clock = clock
        self.started = clock()
        self.running: dict[tuple[str, str], _Running] = {}
        self.errors: deque[tuple[float, PhaseEvent]] = deque(maxlen=errors_shown)
        self.error_count = 0
        self.budgets: deque[tuple[float, BudgetEvent]] = deque(maxlen=errors_shown)
        self.budget_count = 0
        self.warnings: list[str] = []  # printed under the board's last frame
        self.finished = 0
        self.failed = 0
        self.tokens = 0
        self.cost = 0.0
        self.phase_ms: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    # ---- the run's observer ---------------------------------------------------------------

    @staticmethod
    def _key(event: PhaseEvent) -> tuple[str, str]:
        return (event.story_id, event.run_id or event.phase)

    def on_phase_start(self, event: PhaseEvent) -> None:
        with self._lock:
            self.running[self._key(event)] = _Running(event=event, since=self.clock())

    def on_phase_end(self, event: PhaseEvent) -> None:
        with self._lock:
            self.running.pop(self._key(event), None)
            self.finished += 1
            self.failed += event.status == "failed"
            self.tokens += event.usage.total
            self.cost += self._cost(event)
            if event.status in ("succeeded", "paused"):
                self.phase_ms.setdefault(event.phase, []).append(float(event.duration_ms))
            if event.source and event.target and event.source != event.target:
                self.counts[event.source] -= 1
                self.counts[event.target] += 1

    def on_error(self, event: PhaseEvent) -> None:
        with self._lock:
            self.errors.append((self.clock(), event))
            self.error_count += 1

    def on_story_done(self, story_id: str, status: str, reason: str | None) -> None:
        pass  # its last phase end already moved it in the counts

    def on_tool_call(self, story_id: str, run_id: str, call: ToolCall) -> None:
        with self._lock:
            running = self.running.get((story_id, run_id))
            if running is not None:
                who = f"{call.reviewer}: " if call.reviewer else ""
                running.doing = f"{who}{call.name} {call.detail}".strip()

    def on_budget(self, event: BudgetEvent) -> None:
        with self._lock:
            self.budgets.append((self.clock(), event))
            self.budget_count += 1

    def on_warning(self, message: str) -> None:
        with self._lock:
            self.warnings.append(message)

    def _cost(self, event: PhaseEvent) -> float:
        if event.cost_usd is not None:
            return event.cost_usd
        price = self.models.get(event.model or "")
        if price is None:
            return 0.0
        u = event.usage
        return price.cost(
            input=u.input_tokens,
            output=u.output_tokens,
            cache_read=u.cache_read_tokens,
            cache_write=u.cache_write_tokens,
        )

    # ---- the display ----------------------------------------------------------------------

    def __enter__(self) -> LiveBoard:
        from rich.live import Live

        self._live = Live(
            get_renderable=self.render,
            console=self.console,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()  # the last frame stays on screen above the report
            self._live = None
        for message in self.warnings:
            self.console.print(f"storyflow: warning: {message}", markup=False, highlight=False)

    def render(self) -> RenderableType:
        with self._lock:
            return Group(
                self._header(),
                self._statuses(),
                self._running_table(),
                self._totals(),
                *self._recent_budgets(),
                *self._recent_errors(),
            )

    def _header(self) -> RenderableType:
        total = sum(n for n in self.counts.values() if n > 0)
        resting = sum(n for s, n in self.counts.items() if s in RESTING and n > 0)
        elapsed = seconds_text(self.clock() - self.started)
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            Text(self.title, style="bold"),
            ProgressBar(total=max(total, 1), completed=resting, width=30),
            Text(f"{resting}/{total} stories at rest · {elapsed}"),
        )
        return grid

    def _statuses(self) -> RenderableType:
        line = Text()
        for status in Status:
            n = self.counts.get(status.value, 0)
            if n > 0:
                line.append(f"{status.value} ", style=STATUS_STYLE.get(status.value, "cyan"))
                line.append(f"{n}  ", style="bold")
        return line

    def _running_table(self) -> RenderableType:
        table = Table(box=box.SIMPLE, title=None, expand=False, pad_edge=False)
        for column in ("story", "phase", "worker", "agent", "model", "running for"):
            table.add_column(column)
        table.add_column("doing", max_width=48, no_wrap=True, overflow="ellipsis")
        now = self.clock()
        for running in sorted(self.running.values(), key=lambda r: r.since):
            e = running.event
            table.add_row(
                e.story_id,
                e.phase + (f" #{e.attempt}" if e.attempt > 1 else ""),
                e.worker,
                e.agent or "-",
                e.model or "-",
                seconds_text(now - running.since),
                running.doing,
            )
        if not self.running:
            table.add_row("-", "(no phase running)", "", "", "", "", "")
        return table

    def _totals(self) -> RenderableType:
        text = Text()
        text.append(f"phase runs {self.finished}", style="bold")
        if self.failed:
            text.append(f" ({self.failed} failed)", style="red")
        text.append(f" · tokens {self.tokens:,} · ${self.cost:.4f}")
        durations = [ms for values in self.phase_ms.values() for ms in values]
        if durations:
            slowest = max(self.phase_ms, key=lambda p: sum(self.phase_ms[p]))
            mean = seconds_text(sum(durations) / len(durations) / 1000)
            text.append(f" · mean phase {mean} · most time in {slowest}", style="dim")
        return text

    def _recent_budgets(self) -> list[RenderableType]:
        if not self.budgets:
            return []
        title = f"budget limits crossed ({self.budget_count}):"
        lines: list[RenderableType] = [Text(title, style="yellow")]
        now = self.clock()
        for at, e in self.budgets:
            style = "red" if e.state == "over" else "yellow"
            lines.append(Text(f"  {seconds_text(now - at)} ago  {e.describe()}", style=style))
        return lines

    def _recent_errors(self) -> list[RenderableType]:
        if not self.errors:
            return []
        lines: list[RenderableType] = [Text(f"errors ({self.error_count}):", style="red")]
        now = self.clock()
        for at, e in self.errors:
            lines.append(
                Text(
                    f"  {seconds_text(now - at)} ago  {e.story_id} {e.phase} "
                    f"#{e.attempt}: {e.error_code}: {(e.message or '')[:80]}",
                    style="red",
                )
            )
        return lines


def use_live_board(stream: Any) -> bool:
    """The board only draws on a terminal: pipes and files get one line per phase."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# ---- the final report -----------------------------------------------------------------------


def render_report(summary: RunSummary, console: Console | None = None) -> None:
    """Tokens, cost, durations, gate outcomes, failures and budget overruns of a run."""
    out = console or Console()
    interrupted = " (interrupted)" if summary.interrupted else ""
    where = f" for {summary.epic}" if summary.epic else ""
    out.print(
        f"[bold]run report{where}[/bold]: {len(summary.runs)} phase runs by "
        f"{summary.workers} worker(s) in {seconds_text(summary.wall_ms / 1000)}{interrupted}"
    )
    counts = "  ".join(f"{status} {n}" for status, n in summary.by_status().items()) or "none"
    out.print(f"stories: {counts}")
    out.print(_phase_table(summary))
    out.print(_gates(summary))
    failures = Counter(r.error_code or "(none)" for r in summary.runs if r.status == "failed")
    codes = ", ".join(f"{code} {n}" for code, n in sorted(failures.items()))
    out.print(
        f"failed runs: {sum(failures.values())}{f' ({codes})' if codes else ''}; "
        f"lease takeovers: {summary.takeovers}"
    )
    waiting = [s for s in summary.stories if s.status not in ("completed", "superseded")]
    if waiting:
        table = Table(box=box.SIMPLE, title="stories not completed", title_justify="left")
        for column in ("story", "status", "runs", "tokens", "cost", "why"):
            table.add_column(column)
        for s in waiting:
            table.add_row(
                s.story_id, s.status, str(s.runs), f"{s.tokens:,}", f"${s.cost_usd:.4f}", s.reason
            )
        out.print(table)
    out.print(_overruns(summary))


def _phase_table(summary: RunSummary) -> Table:
    from storyflow.domain.phases import PhaseName

    table = Table(box=box.SIMPLE_HEAD, title="per phase", title_justify="left", show_footer=True)
    t, cost = summary.tokens, summary.cost_usd
    columns = [
        ("phase", "total"),
        ("runs", str(len(summary.runs))),
        ("mean", ""),
        ("p50", ""),
        ("p90", ""),
        ("max", ""),
        ("time", seconds_text(sum(summary.phase_ms.values()) / 1000)),
        ("tokens", f"{t.total:,}"),
        ("input", f"{t.input_tokens:,}"),
        ("output", f"{t.output_tokens:,}"),
        ("cache r/w", f"{t.cache_read_tokens:,}/{t.cache_write_tokens:,}"),
        ("cost", f"${cost:.4f}"),
    ]
    for name, footer in columns:
        table.add_column(name, footer=footer, justify="left" if name == "phase" else "right")
    order = {p.value: i for i, p in enumerate(PhaseName)}
    for phase in sorted({r.phase for r in summary.runs}, key=lambda p: order.get(p, 99)):
        runs = [r for r in summary.runs if r.phase == phase]
        done = stats([r.duration_ms / 1000 for r in runs if r.status in ("succeeded", "paused")])
        usage = [r.tokens for r in runs]
        table.add_row(
            phase,
            str(len(runs)),
            *(seconds_text(done.get(k)) for k in ("mean", "p50", "p90", "max")),
            seconds_text(summary.phase_ms.get(phase, 0) / 1000),
            f"{sum(u.total for u in usage):,}",
            f"{sum(u.input_tokens for u in usage):,}",
            f"{sum(u.output_tokens for u in usage):,}",
            f"{sum(u.cache_read_tokens for u in usage):,}/"
            f"{sum(u.cache_write_tokens for u in usage):,}",
            f"${sum(r.cost_usd for r in runs):.4f}",
        )
    return table


def _gates(summary: RunSummary) -> Text:
    text = Text()
    for label, kind, verdicts in (
        ("QA gates", ArtifactKind.QA_GATE, summary.gates),
        ("code reviews", ArtifactKind.CODE_REVIEW, summary.reviews),
    ):
        total = sum(verdicts.values())
        passed = sum(n for v, n in verdicts.items() if v in PASSING[kind])
        rate = f" ({100 * passed / total:.0f}% pass)" if total else ""
        shown = ", ".join(f"{v} {n}" for v, n in verdicts.items()) or "none"
        text.append(f"{label}: {shown}{rate}", style="bold" if total else "")
        text.append("; " if kind is ArtifactKind.QA_GATE else "")
    return text


def _overruns(summary: RunSummary) -> RenderableType:
    if not summary.overruns:
        return Text("budget overruns: none")
    table = Table(box=box.SIMPLE, title="budget overruns", title_justify="left")
    for column in ("story", "phase", "used", "warning", "hard", "enforcement", "action"):
        table.add_column(column)
    for o in summary.overruns:
        table.add_row(
            o.story_id,
            o.phase,
            f"{o.used:,}",
            f"{o.warning_limit:,}",
            f"{o.hard_limit:,}",
            o.enforcement,
            Text(o.action, style="red" if o.state == "over" else "yellow"),
        )
    return table

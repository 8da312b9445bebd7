"""Plain-text rendering of trace lines and metrics (no Rich: these are scripting paths)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storyflow.entrypoints.cli.common import echo, table

# Payload fields shown as key=value in a trace row's detail, in this order.
_DETAIL_KEYS = (
    "kind",
    "version",
    "verdict",
    "decision",
    "agent",
    "model",
    "attempt",
    "run_id",
    "error_code",
    "message",
    "reason",
    "state",
    "action",
    "owner",
)
_SHOWN = {"ts", "type", "trace_id", "span_id", "parent_span_id", "story", "epic", "actor"}


def seconds_text(value: float | None) -> str:
    """12ms, 3.4s, 5m 06s, 2h 03m, 3d 04h."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _tokens_text(value: Any) -> str:
    if isinstance(value, Mapping):
        total = sum(int(v) for v in value.values() if isinstance(v, int | float))
        return f"{total:,} tokens"
    if isinstance(value, int | float):
        return f"{int(value):,} tokens"
    return str(value)


def trace_detail(line: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "from" in line and "to" in line:
        parts.append(f"{line['from']} -> {line['to']}" + (" FORCED" if line.get("forced") else ""))
    if line.get("type") == "tool_call":
        return _shortened(_tool_call_detail(line))
    for key in _DETAIL_KEYS:
        value = line.get(key)
        if value not in (None, ""):
            shown = str(value)[:8] if key == "run_id" else value  # a uuid: its head is enough
            parts.append(f"{key}={shown}")
    if "tokens" in line:
        parts.append(_tokens_text(line["tokens"]))
    if isinstance(line.get("duration_ms"), int | float):
        parts.append(seconds_text(line["duration_ms"] / 1000))
    if not parts:
        rest = {k: v for k, v in line.items() if k not in _SHOWN and k != "phase"}
        parts = [f"{k}={v}" for k, v in rest.items()]
    return _shortened(" ".join(parts))


def _tool_call_detail(line: Mapping[str, Any]) -> str:
    """The tool, how it ended, and what it acted on (last: the part cut when long)."""
    parts = [str(line.get("tool", "?"))]
    parts += ["FAILED"] if line.get("ok") is False else []
    parts += [f"reviewer={line['reviewer']}"] if line.get("reviewer") else []
    if isinstance(line.get("duration_ms"), int | float):
        parts.append(seconds_text(line["duration_ms"] / 1000))
    parts += [str(line["detail"])] if line.get("detail") else []
    return " ".join(parts)


def _shortened(text: str) -> str:
    return text if len(text) <= 100 else text[:97] + "..."


def trace_header(with_story: bool) -> str:
    story = f"{'STORY':<10}  " if with_story else ""
    return f"{'TIME':<24}  {'TYPE':<15}  {story}{'PHASE':<16}  {'SPAN':<16}  DETAIL"


def trace_row(line: Mapping[str, Any], with_story: bool) -> str:
    ts = str(line.get("ts", ""))
    ts = ts[:23] + "Z" if len(ts) > 24 else ts  # milliseconds are enough on screen
    story = f"{line.get('story') or '-':<10}  " if with_story else ""
    phase = line.get("phase") or "-"
    return (
        f"{ts:<24}  {line.get('type', '?'):<15}  {story}{phase!s:<16}  "
        f"{line.get('span_id', ''):<16}  {trace_detail(line)}"
    ).rstrip()


# ---- metrics ------------------------------------------------------------------------------


def _usd(value: float) -> str:
    return f"${value:,.4f}"


def _token_rows(figures: Mapping[str, Any]) -> list[list[str]]:
    return [
        [
            name,
            f"{t['total']:,}",
            f"{t['input']:,}",
            f"{t['output']:,}",
            f"{t['cache_read'] + t['cache_write']:,}",
            _usd(t["cost_usd"]),
            str(t["entries"]),
        ]
        for name, t in figures.items()
    ]


TOKEN_COLUMNS = ["", "tokens", "input", "output", "cache", "usd", "entries"]


def render_metrics(data: Mapping[str, Any], *, top: int = 10) -> None:
    scope = data["scope"]
    stories = data["stories"]
    counts = ", ".join(f"{s} {n}" for s, n in stories["by_status"].items()) or "none"
    echo(f"metrics for {scope['label']}: {stories['total']} stories ({counts})")
    t = data["tokens"]
    unpriced = f", {t['unpriced_entries']} unpriced" if t["unpriced_entries"] else ""
    echo(
        f"tokens: {t['total']:,} in {t['entries']} ledger entries, {_usd(t['cost_usd'])}{unpriced}"
    )
    echo()
    table(["budget phase", *TOKEN_COLUMNS[1:]], _token_rows(t["by_phase"]))
    echo()
    table(["model", *TOKEN_COLUMNS[1:]], _token_rows(t["by_model"]))
    if "by_epic" in t and len(t["by_epic"]) > 1:
        echo()
        table(["epic", *TOKEN_COLUMNS[1:]], _token_rows(t["by_epic"]))
    if t.get("by_story"):
        ranked = sorted(t["by_story"].items(), key=lambda kv: -kv[1]["cost_usd"])[:top]
        echo()
        title = f"top {len(ranked)} of {len(t['by_story'])} stories by cost:"
        table(["story", *TOKEN_COLUMNS[1:]], _token_rows(dict(ranked)), title=title)
    echo()
    table(
        ["run phase", "runs", "mean", "p50", "p90", "max", "total", "verdicts"],
        [
            [
                phase,
                str(d["count"]),
                *(seconds_text(_s(d[k])) for k in ("mean", "p50", "p90", "max", "total")),
                " ".join(f"{v}:{n}" for v, n in data["phase_verdicts"].get(phase, {}).items()),
            ]
            for phase, d in data["durations_ms"].items()
        ],
        title="phase durations:",
    )
    echo()
    table(
        ["gate", "total", "pass rate", "first pass", "verdicts"],
        [
            [
                kind,
                str(g["total"]),
                _pct(g["pass_rate"]),
                _pct(g["first_pass_rate"]),
                " ".join(f"{v}:{n}" for v, n in g["verdicts"].items()),
            ]
            for kind, g in data["gates"].items()
        ],
        title="gate pass rates:",
    )
    rework = data["rework"]
    loops = ", ".join(f"{k} {v}" for k, v in rework["loops"].items())
    echo()
    echo(f"rework loops: {loops}")
    for name in ("review_iterations", "qa_iterations"):
        it = rework[name]
        echo(f"  {name}: {it['total']} in {it['stories']} stories (max {it['max']})")
    c = data["cycle_time_seconds"]
    echo()
    if c["count"]:
        echo(
            f"cycle time (created -> completed), {c['count']} stories: mean "
            f"{seconds_text(c['mean'])}, p50 {seconds_text(c['p50'])}, "
            f"p90 {seconds_text(c['p90'])}, max {seconds_text(c['max'])}"
        )
    else:
        echo("cycle time: no completed stories")
    echo()
    table(
        ["status", "visits", "total", "mean", "open now"],
        [
            [
                status,
                str(s["visits"]),
                seconds_text(s["seconds"]),
                seconds_text(s["seconds"] / s["visits"] if s["visits"] else None),
                str(s["open"]),
            ]
            for status, s in data["time_in_status_seconds"].items()
        ],
        title="time in status:",
    )
    errors = data["errors"]
    if errors["total"]:
        echo()
        echo(
            f"errors: {errors['total']} ("
            + ", ".join(f"{k} {v}" for k, v in errors["by_code"].items())
            + ")"
        )


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"

"""storyflow token log, budget show."""

from __future__ import annotations

import click

from storyflow.entrypoints.cli.common import (
    actor_option,
    echo,
    emit_json,
    json_option,
    option,
    service_context,
    table,
)


@click.group()
def token() -> None:
    """The append-only token ledger."""


@token.command("log")
@click.argument("story_id")
@click.argument("phase")
@option("--input", "input_tokens", type=int, help="Input tokens (reported by the agent).")
@option("--output", "output_tokens", type=int, help="Output tokens.")
@option("--cache-read", type=int, help="Cache read tokens.")
@option("--cache-write", type=int, help="Cache write tokens.")
@option("--before", type=int, help="/cost session total before the phase (measured delta).")
@option("--after", type=int, help="/cost session total after the phase.")
@option("--model", help="Model name from the catalogue (prices the entry).")
@option("--agent", help="The agent that used the tokens.")
@option("--cost-usd", type=float, help="Cost the agent reported (instead of the catalogue).")
@option("--estimated", is_flag=True, help="Mark the counts as an estimate.")
@option("--note", help="Free text kept with the entry.")
@option(
    "--used-at",
    help="When the tokens were used, if not now (ISO-8601 date or time, UTC unless it "
    "gives an offset): a measurement written down earlier.",
)
@actor_option
@json_option
def token_log(
    story_id: str,
    phase: str,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    before: int | None,
    after: int | None,
    model: str | None,
    agent: str | None,
    cost_usd: float | None,
    estimated: bool,
    note: str | None,
    used_at: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Record token usage of PHASE (story_generation, elaboration, implementation,
    code_review, qa_verification) for STORY_ID."""
    from storyflow.services.tokens import log_tokens, parse_used_at

    with service_context(actor) as ctx:
        result = log_tokens(
            ctx,
            story_id,
            phase,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read=cache_read,
            cache_write=cache_write,
            before=before,
            after=after,
            model=model,
            agent=agent,
            cost_usd=cost_usd,
            estimated=estimated,
            note=note,
            used_at=None if used_at is None else parse_used_at(used_at),
        )
    if as_json:
        emit_json(result)
        return
    cost = "" if result["cost_usd"] is None else f", ${result['cost_usd']:.4f}"
    echo(
        f"{result['story']}: {result['phase']} +{result['tokens']:,} tokens "
        f"({result['source']}{cost}); phase total {result['phase_used']:,} [{result['state']}]"
    )


@click.group()
def budget() -> None:
    """Token budgets: estimates, limits, actuals, cost."""


@budget.command("show")
@click.argument("target")
@json_option
def budget_show(target: str, as_json: bool) -> None:
    """TARGET is a story ID (per phase) or an epic PREFIX (roll-up)."""
    from storyflow.services.tokens import budget_show as show

    with service_context() as ctx:
        data = show(ctx, target)
    if as_json:
        emit_json(data)
        return
    if "phases" in data and "story" in data:
        echo(f"{data['story']}: {data['enforcement']}, multiplier x{data['multiplier']}")
        table(
            ["phase", "estimate", "used", "warning", "hard", "% warn", "% hard", "state", "usd"],
            [
                [
                    name,
                    f"{p['estimate']:,}",
                    f"{p['used']:,}",
                    f"{p['warning_limit']:,}",
                    f"{p['hard_limit']:,}",
                    p["warning_pct"],
                    p["hard_pct"],
                    p["state"],
                    f"{p['cost_usd']:.4f}",
                ]
                for name, p in data["phases"].items()
            ],
        )
        echo(
            f"total {data['total_used']:,} of ~{data['total_estimated']:,} tokens, "
            f"${data['cost_usd']:.4f}"
            + (
                f" ({data['unpriced_entries']} unpriced entries)"
                if data["unpriced_entries"]
                else ""
            )
        )
        if data["measurements"]:
            table(
                ["date", "phase", "tokens", "source", "model", "agent", "note"],
                [
                    [
                        m["date"],
                        m["phase"],
                        f"{m['tokens']:,}",
                        m["source"],
                        m["model"] or "-",
                        m["agent"] or "-",
                        " ".join((m["note"] or "").split()) or "-",  # one line
                    ]
                    for m in data["measurements"]
                ],
                title="measurements:",
            )
        return
    echo(
        f"epic {data['epic']}: {data['total_used']:,} of ~{data['total_estimated']:,} tokens, "
        f"${data['cost_usd']:.4f}"
    )
    table(
        ["story", "used", "estimated", "usd", "enforcement"],
        [
            [
                s["story"],
                f"{s['total_used']:,}",
                f"{s['total_estimated']:,}",
                f"{s['cost_usd']:.4f}",
                s["enforcement"],
            ]
            for s in data["stories"]
        ],
    )
    if data["overruns"]:
        table(
            ["story", "phase", "state", "used", "hard"],
            [
                [o["story"], o["phase"], o["state"], f"{o['used']:,}", f"{o['hard_limit']:,}"]
                for o in data["overruns"]
            ],
            title="over limits:",
        )

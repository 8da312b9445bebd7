"""Measurements a person appended to a story file's ``actual_measurements`` by hand.

The seed's measurement process ends with "add to story's actual_measurements": an entry
written into the Token Budget after the ones storyflow rendered is recorded in the ledger
by sync, as ``storyflow token log`` would record it (budgets apply, an Agent Log row is
appended, the file is rendered anew). Any other change of the block is a hand edit of what
storyflow renders, and sync puts the ledger's back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storyflow.domain.budgets import LedgerSource
from storyflow.domain.model import LedgerEntry, file_stamp
from storyflow.errors import InvalidInput, StoryflowError
from storyflow.services.context import Context
from storyflow.services.projection import measurement_rows, measurements_added
from storyflow.services.sync_history import ledger_entry
from storyflow.services.tokens import log_tokens

_HINT = (
    "an added measurement gives phase and tokens_used (a /cost delta), or input and output "
    "(optionally cache_read, cache_write, model, agent, cost_usd, notes): fix it and sync "
    "again, or storyflow sync --prefer db drops it"
)


def added_rows(
    ctx: Context,
    story_id: str,
    block: Any,
    source: str,
    replayed: Sequence[LedgerEntry] = (),
) -> list[Any]:
    """The entries the file lists after the ledger's own (and those another clone's rows
    logged, ``replayed``), when the file lists those unchanged before them (the rule
    storyflow check applies, ``measurements_added``); otherwise none (an edit, which sync
    reverts)."""
    if not isinstance(block, dict):
        return []
    rows = block.get("actual_measurements")
    expected = measurement_rows([*ctx.store.ledger(story_id), *replayed])
    added = measurements_added(rows, expected)
    return list(rows[-added:]) if added and isinstance(rows, list) else []


def log_added(ctx: Context, story_id: str, rows: list[Any], source: str) -> list[dict[str, Any]]:
    """Record each added entry through ``log_tokens``, dated by its ``date`` (when sync
    logs it, without one); what each logged."""
    logged = []
    first = len(ctx.store.ledger(story_id)) + 1
    for number, row in enumerate(rows, start=first):
        where = f"{source}: token_budget measurement {number}"
        entry = _parse(ctx, story_id, row, where, source)
        parts = (
            entry.input_tokens,
            entry.output_tokens,
            entry.cache_read_tokens,
            entry.cache_write_tokens,
        )
        counts: dict[str, Any]
        if entry.source == LedgerSource.MEASURED.value or not any(parts):
            if any(parts) or entry.total_tokens <= 0:
                raise _invalid(where, "a /cost measurement gives tokens_used only, above 0", source)
            counts = {"before": 0, "after": entry.total_tokens}
        else:
            if entry.total_tokens not in (0, sum(parts)):
                raise _invalid(
                    where,
                    f"tokens_used {entry.total_tokens:,} is not input + output + cache "
                    f"({sum(parts):,})",
                    source,
                )
            counts = {
                "input_tokens": entry.input_tokens,
                "output_tokens": entry.output_tokens,
                "cache_read": entry.cache_read_tokens,
                "cache_write": entry.cache_write_tokens,
                "estimated": entry.source == LedgerSource.ESTIMATED.value,
            }
        try:
            result = log_tokens(
                ctx,
                story_id,
                entry.phase.value,
                model=entry.model,
                agent=entry.agent,
                cost_usd=entry.cost_usd,
                note=entry.note,
                used_at=entry.created_at,
                **counts,
            )
        except InvalidInput as exc:  # an unknown model, a count out of range: say where
            raise InvalidInput(
                f"{where}: {exc.message}",
                code=exc.code,
                hint=exc.hint,
                details={**exc.details, "file": source},
            ) from None
        logged.append({k: result[k] for k in ("phase", "tokens", "source", "model")})
    return logged


def _parse(ctx: Context, story_id: str, row: Any, where: str, source: str) -> LedgerEntry:
    if isinstance(row, dict) and row.get("date") is None:
        row = {**row, "date": file_stamp(ctx.now())}
    try:
        return ledger_entry(story_id, row, ctx.config, where)
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"{exc.args[0]} is missing" if isinstance(exc, KeyError) else str(exc)
        raise _invalid(where, problem, source) from None
    except StoryflowError as exc:
        raise _invalid(where, exc.message.removeprefix(f"{where}: "), source) from None


def _invalid(where: str, problem: str, source: str) -> InvalidInput:
    return InvalidInput(
        f"{where}: {problem}",
        code="INVALID_MEASUREMENT",
        hint=_HINT,
        details={"file": source},
    )

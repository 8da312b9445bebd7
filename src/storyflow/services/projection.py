"""What the engine renders into story files: metadata keys and the Token Budget block."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from storyflow.domain.budgets import BudgetPhase, Enforcement, PhaseBudget
from storyflow.domain.model import AgentLogRow, Epic, LedgerEntry, Story, file_stamp
from storyflow.errors import StoryflowError
from storyflow.services.context import Context
from storyflow.services.ports import PendingWritesPort
from storyflow.services.sync_fields import EDITABLE

# The story file's keys a person may edit, and the Story attribute each one holds (status
# aside: every move renders it). A change renders only those it wrote: the file may hold a
# hand edit of the others that storyflow sync has not applied yet.
EDITABLE_KEYS = {key: attr for key, attr in EDITABLE.items() if key != "status"}
EVERY_FIELD = None  # ``written`` of a change that renders them all (sync, render, import)


def kept_keys(written: Collection[str] | None) -> frozenset[str]:
    """The editable keys a change that wrote the Story attributes ``written`` leaves as the
    file has them (``EVERY_FIELD``: none)."""
    if written is None:
        return frozenset()
    return frozenset(key for key, attr in EDITABLE_KEYS.items() if attr not in written)


# Metadata keys that may be absent from the story file (front matter / top-level YAML keys).
OPTIONAL_KEYS = frozenset(
    {
        "phase",
        "token_budget_enforcement",
        "blocked_reason",
        "blocked_from",
        "split_from",
        "superseded_by",
        "details",
    }
)


def story_meta(story: Story) -> tuple[dict[str, Any], frozenset[str]]:
    """The metadata to render, and the optional keys to drop because they are unset."""
    meta: dict[str, Any] = {
        "id": story.id,
        "title": story.title,
        "status": story.status.value,
        "priority": story.priority,
        "phase": story.phase,
        "depends_on": list(story.depends_on),
        "requires": list(story.requires),
        "breaking_change": story.breaking_change,
        "graph_integration": story.graph_integration,
        "token_budget_multiplier": story.token_budget_multiplier,
        "token_budget_enforcement": story.enforcement.value if story.enforcement else None,
        "blocked_reason": story.blocked_reason,
        "blocked_from": story.blocked_from.value if story.blocked_from else None,
        "split_from": story.split_from,
        "superseded_by": list(story.superseded_by) or None,
        "details": dict(story.details) or None,  # plan metadata: feature, goal, gates, …
        "created_at": file_stamp(story.created_at),
        "updated_at": file_stamp(story.updated_at),
    }
    remove = frozenset(k for k in OPTIONAL_KEYS if meta[k] is None)
    return {k: v for k, v in meta.items() if k not in remove}, remove


def effective_budgets(ctx: Context, epic: Epic) -> dict[BudgetPhase, PhaseBudget]:
    budgets = dict(ctx.config.budgets)
    budgets.update(epic.settings.budgets)
    return budgets


def enforcement_of(epic: Epic, story: Story) -> Enforcement:
    return story.enforcement or epic.settings.enforcement


def token_budget_block(
    budgets: Mapping[BudgetPhase, PhaseBudget],
    story: Story,
    epic: Epic,
    ledger: Sequence[LedgerEntry],
) -> dict[str, Any]:
    """The FLOW ``token_budget`` block: estimates, limits and every ledger entry."""
    multiplier = story.token_budget_multiplier
    scaled = {phase: budgets[phase].scaled(multiplier) for phase in BudgetPhase}
    estimates: dict[str, int] = {p.value: b.estimate for p, b in scaled.items()}
    estimates["total_estimated"] = sum(b.estimate for b in scaled.values())
    costs = [e.cost_usd for e in ledger if e.cost_usd is not None]
    return {
        "enforcement": enforcement_of(epic, story).value,
        "multiplier": multiplier,
        "phase_estimates": estimates,
        "limits": {p.value: {"warning": b.warning, "hard": b.hard} for p, b in scaled.items()},
        "actual_measurements": measurement_rows(ledger),
        "total_used": sum(e.total_tokens for e in ledger),
        "cost_usd": round(sum(costs), 6),
    }


def measurement_rows(ledger: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    """The ledger entries as the Token Budget's ``actual_measurements`` lists them."""
    measurements = []
    for entry in ledger:
        row: dict[str, Any] = {
            "phase": entry.phase.value,
            "date": file_stamp(entry.created_at),
            "tokens_used": entry.total_tokens,
            "input": entry.input_tokens,
            "output": entry.output_tokens,
            "cache_read": entry.cache_read_tokens,
            "cache_write": entry.cache_write_tokens,
            "source": entry.source,
        }
        if entry.model:
            row["model"] = entry.model
        if entry.agent:
            row["agent"] = entry.agent
        if entry.cost_usd is not None:
            row["cost_usd"] = round(entry.cost_usd, 6)
        if entry.note:
            row["notes"] = entry.note  # the seed's key ("Document findings")
        measurements.append(row)
    return measurements


def check_story_file(
    ctx: Context, epic: Epic, story: Story, *, moving_to: Story | None = None
) -> None:
    """Before a commit: refuse the change if its story file could not be re-rendered
    afterwards (unreadable, not UTF-8, too large, malformed, merge-conflict markers, two
    folders, a folder leading out of the workspace), so a refused command changes nothing.
    A missing file is fine: the projection writes it anew. ``moving_to``: the story as the
    change leaves it (a status change), whose stage folder the projection moves it to."""
    ctx.files.check_renderable(epic, story, moving_to)


def budget_drift(found: Any, expected: Mapping[str, Any]) -> list[str]:
    """How a story file's Token Budget block (``found``, as parsed) departs from what the
    ledger and budgets render (``expected``): one line per key that differs or that
    storyflow does not write; empty when they agree."""
    if not isinstance(found, dict):
        return ["the whole section"]
    differ = []
    for key, value in expected.items():
        if key == "actual_measurements":
            differ += _measurements_drift(found.get(key), value)
        elif found.get(key) != value:
            differ.append(
                f"{key} ({_short(found.get(key))} in the file, {_short(value)} in the database)"
            )
    return differ + [f"{key} (not written by storyflow)" for key in found if key not in expected]


def _measurements_drift(found: Any, expected: list[dict[str, Any]]) -> list[str]:
    """``actual_measurements`` against the ledger's: the first entry that differs, and
    where. An entry without ``notes`` leaves the ledger's note alone (a file rendered
    before notes were)."""
    key = "actual_measurements"
    added = measurements_added(found, expected)
    if added:
        return [f"{key}: {added} entr{'y' if added == 1 else 'ies'} after the ledger's, not logged"]
    if not isinstance(found, list) or len(found) != len(expected):
        return [f"{key} ({_short(found)} in the file, {_short(expected)} in the database)"]
    for number, (mine, theirs) in enumerate(zip(found, expected, strict=True), start=1):
        if _same_measurement(mine, theirs):
            continue
        if not isinstance(mine, dict):
            return [f"{key} entry {number} (not a mapping in the file)"]
        fields = [k for k in {**theirs, **mine} if mine.get(k) != theirs.get(k)]
        return [
            f"{key} entry {number}: {field} ({_short(mine.get(field))} in the file, "
            f"{_short(theirs.get(field))} in the database)"
            for field in fields
        ]
    return []


def measurements_added(found: Any, expected: list[dict[str, Any]]) -> int:
    """How many entries a file's ``actual_measurements`` lists after the ledger's (which
    it lists unchanged before them): entries a person added, which sync logs."""
    if not isinstance(found, list) or len(found) <= len(expected):
        return 0
    same = all(_same_measurement(m, t) for m, t in zip(found, expected, strict=False))
    return len(found) - len(expected) if same else 0


def _same_measurement(mine: Any, theirs: dict[str, Any]) -> bool:
    """A file's entry against the ledger's; one without ``notes`` leaves the note alone."""
    if isinstance(mine, dict) and "notes" not in mine:
        theirs = {k: v for k, v in theirs.items() if k != "notes"}
    return bool(mine == theirs)


def _short(value: Any) -> str:
    """A value for a one-line message: scalars as they are, lists and maps by size."""
    if isinstance(value, list):
        return f"{len(value)} entries"
    if isinstance(value, dict):
        return "a different mapping"
    return repr(value)


def renders_budgets_anew(before: Epic | None, after: Epic) -> bool:
    """Whether an epic's change alters its stories' Token Budget sections (rendered from
    the epic's budgets and enforcement): their files must then be re-rendered."""
    if before is None:
        return False
    old, new = before.settings, after.settings
    return old.enforcement != new.enforcement or old.budgets != new.budgets


def render_epic_stories(ctx: Context, epic: Epic, *, skip: Collection[str] = ()) -> None:
    """Re-render the story files of ``epic`` (after a change of its budget settings)."""
    for story in ctx.store.list_stories(epic=epic.prefix):
        if story.id not in skip:
            render_after_commit(ctx, epic, story.id)


def render_after_commit(
    ctx: Context,
    epic: Epic,
    story_id: str,
    *,
    budget: bool = True,
    written: Collection[str] | None = (),
    keep: frozenset[str] | None = None,
) -> None:
    """Re-render the story file from the committed state (after every change).

    Under the story's file lock the story is read again, so concurrent writers converge on
    the newest state, and the file gets every Agent Log row it is missing. Of the keys a
    person may edit, only those whose attributes the change wrote (``written``; a move
    writes none, ``EVERY_FIELD`` all) are rendered: the others keep what the file says. A
    caller that gathered several changes passes the keys to ``keep`` instead."""

    def state() -> tuple[Story, dict[str, Any], frozenset[str], dict[str, Any] | None] | None:
        story = ctx.store.get_story(story_id)
        if story is None:
            return None
        meta, remove = story_meta(story)
        block = None
        if budget:
            block = token_budget_block(
                effective_budgets(ctx, epic), story, epic, ctx.store.ledger(story.id)
            )
        return story, meta, remove, block

    try:
        ctx.files.project(
            epic,
            story_id,
            state=state,
            rows_after=_LogGap(ctx, story_id),
            keep=kept_keys(written) if keep is None else keep,
        )
    except StoryflowError as exc:
        if exc.code == "ARTIFACT_STORY_MISMATCH":  # its folder was renamed by hand
            from storyflow.domain.checks import rename_back

            ctx.warn(
                f"{exc.message}: the change is committed, but its story file is not written "
                f"anew beside that one ({rename_back(exc.details['file'], story_id)}, then "
                f"storyflow story render {story_id} brings the file up to date)"
            )
            return
        if exc.code != "WORKSPACE_NOT_WRITABLE":
            raise
        # Committed already (a check before the commit refuses what it can foresee): the
        # file is behind the database, which ``story render`` or ``sync`` puts right.
        ctx.warn(
            f"{story_id}: the change is committed, but storyflow cannot write "
            f"{exc.details.get('path')}: let this user write it (permissions, chattr -i, a "
            f"read-only mount), then storyflow story render {story_id} brings the file up "
            "to date"
        )


class _LogGap:
    """What a story file lacks: the Agent Log rows after its ``count``th (called under the
    story's file lock), and, should the file be missing, the text to render it from: the
    latest story snapshot (the story file as submitted), so the parts only people write
    (description, Reuse Plan, the body) come back; without one the file is rendered anew
    and a warning says that text is lost. The adapter asks ``snapshot`` only for a missing
    file (it rides on ``rows_after``, which every deferred projection passes on as is)."""

    def __init__(self, ctx: Context, story_id: str) -> None:
        self.ctx, self.story_id = ctx, story_id

    def __call__(self, count: int) -> list[AgentLogRow]:
        return self.ctx.store.log_rows(self.story_id, after=count)

    def snapshot(self, folder: str) -> str | None:
        from storyflow.domain.artifacts import ArtifactKind

        store = self.ctx.store
        latest = store.latest_artifact(self.story_id, ArtifactKind.STORY)
        found = (
            None
            if latest is None
            else store.artifact_version(self.story_id, ArtifactKind.STORY, latest.version)
        )
        if found is not None:
            self.ctx.warn(
                f"{self.story_id}: the story file was missing: rendered again from its story "
                f"snapshot v{found[0].version} and the database (edits made after that "
                f"snapshot are not in it: restore the folder from git to keep them, "
                f"git checkout -- {folder})"
            )
            return found[1]
        self.ctx.warn(
            f"{self.story_id}: the story file was missing and the database holds no story "
            "snapshot of it: rendered again with an empty description and Reuse Plan, that "
            f"text is lost (restore the folder from git: git checkout -- {folder})"
        )
        return None


def new_story_file(
    ctx: Context,
    pending: PendingWritesPort,
    epic: Epic,
    story: Story,
    rows: list[AgentLogRow],
    body: dict[str, str] | None = None,
) -> None:
    meta, _ = story_meta(story)
    block = token_budget_block(effective_budgets(ctx, epic), story, epic, [])
    ctx.files.new_story_file(
        pending, epic, story, meta=meta, token_budget=block, log=rows, body=body
    )

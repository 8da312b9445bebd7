"""Plan folders for the plan import/export tests: the seed plans and the index fixture
copied into a workspace, and the import called as the CLI calls it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from storyflow.bootstrap import plan_files
from storyflow.services import plan_export, plans
from storyflow.services.context import Context
from storyflow.services.plan_report import ImportReport
from storyflow.services.story_reads import story_json
from tests.support import Workspace

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "plans"
SEEDS = FIXTURES / "seeds"
FLOW_INDEX = FIXTURES / "flow" / "stories.index.md"
# The folders the seeds' own commands name (FLOW: plans/future/flow-sync).
FOLDERS = {"FLOW": "plans/future/flow-sync", "REVI": "plans/future/revi"}


def plan_folder(ws: Workspace, prefix: str, *, index: Path | str | None = None) -> Path:
    """The seed plan of ``prefix`` as ``<folder>/PLAN.exec.md`` (and an index beside it)."""
    folder = ws.root / FOLDERS[prefix]
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SEEDS / f"{prefix}.PLAN.exec.md", folder / "PLAN.exec.md")
    if isinstance(index, Path):
        shutil.copyfile(index, folder / "stories.index.md")
    elif isinstance(index, str):
        (folder / "stories.index.md").write_text(index, encoding="utf-8")
    return folder


def run_import(ctx: Context, folder: Path, *, dry_run: bool = False) -> ImportReport:
    return plans.import_plan(ctx, plan_files(ctx.config), folder, dry_run=dry_run)


def run_export(ctx: Context, prefix: str, output: Path | None = None) -> dict[str, Any]:
    return plan_export.export_index(ctx, plan_files(ctx.config), prefix, output=output)


def settings(report: ImportReport) -> dict[str, Any]:
    return {c.name: c.value for c in report.settings}


def stated(report: ImportReport) -> set[str]:
    return {c.name for c in report.settings if c.stated}


def board_state(ctx: Context, prefix: str) -> dict[str, dict[str, Any]]:
    """Every story's fields, history and log length: what a no-op must leave alone."""
    state = {}
    for story in ctx.store.list_stories(epic=prefix):
        data = story_json(story)
        data["details"] = story.details
        data["history"] = ctx.store.history(story.id)
        data["log_rows"] = len(ctx.store.log_rows(story.id))
        state[story.id] = data
    return state


def set_status(text: str, story_id: str, status: str) -> str:
    """The index with the Status line of ``story_id`` edited (its export note kept)."""
    start = text.index(f"## {story_id}:")
    line = text.index("**Status:**", start)
    end = text.index("\n", line)
    note = text.find(" <!--", line, end)
    rest = text[note:end] if note != -1 else ""
    return text[:line] + f"**Status:** {status}{rest}" + text[end:]


def edit_field(text: str, story_id: str, label: str, value: str) -> str:
    start = text.index(f"## {story_id}:")
    line = text.index(f"**{label}:**", start)
    end = text.index("\n", line)
    return text[:line] + f"**{label}:** {value}" + text[end:]

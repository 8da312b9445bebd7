"""Requirements outside any story (e.g. "DB schema 002 deployed"): met or not."""

from __future__ import annotations

from typing import Any

from storyflow.services.context import Context
from storyflow.services.stories import parse_requirement
from storyflow.services.unit_of_work import change


def set_requirement(
    ctx: Context, name: str, *, met: bool, note: str | None = None
) -> dict[str, Any]:
    name = parse_requirement(name)
    now = ctx.now()
    with change(ctx):
        known = [r["name"] for r in ctx.store.requirements()]
        if name not in known:
            # Recording one before any story names it is allowed (a plan imported later may);
            # a typo would otherwise leave the stories that wait for the real name waiting.
            from storyflow.domain.assignments import closest  # difflib: only for a typo

            close = closest(name, known)
            ctx.warn(
                f"{name}: a new requirement, no story requires it yet"
                + (f" (did you mean {close}?)" if close else "")
            )
        ctx.store.set_requirement(name, met=met, note=note, by=ctx.actor, at=now)
        ctx.store.insert_event(
            type="requirement", at=now, actor=ctx.actor, payload={"name": name, "met": met}
        )
    return {"name": name, "met": met, "note": note}


def list_requirements(ctx: Context) -> list[dict[str, Any]]:
    return ctx.store.requirements()

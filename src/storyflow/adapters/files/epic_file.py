"""The epic file: ``<epic root>/<PREFIX>.epic.yaml``, the epic's settings in git.

Written when an epic is created or updated, so a fresh clone can rebuild the epic with
``storyflow sync``. The file sits in the epic's root (that is where its root is recorded);
it is named for the prefix because two flat epics may share one root (``plans/stories``).
Timestamps keep their microseconds so a rebuilt epic equals the original.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storyflow.adapters.files.yamlio import dump_yaml, load_mapping
from storyflow.config import validate_timezone
from storyflow.domain.layouts import LayoutName
from storyflow.domain.model import Epic, EpicSettings, parse_prefix
from storyflow.errors import InvalidInput, StoryflowError

SUFFIX = ".epic.yaml"
HEADER = (
    "# storyflow epic {prefix}. Rendered from the database when the epic changes;\n"
    "# `storyflow sync` rebuilds the epic from this file on a fresh clone and applies hand\n"
    "# edits of title, timezone and the gate settings.\n"
)


def file_name(prefix: str) -> str:
    return f"{prefix}{SUFFIX}"


def prefix_of(name: str) -> str | None:
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def render(epic: Epic) -> str:
    document = {
        "prefix": epic.prefix,
        "title": epic.title,
        "layout": epic.layout.value,
        "timezone": epic.timezone,
        "settings": epic.settings.to_json(),
        "created_at": _stamp(epic.created_at),
        "updated_at": _stamp(epic.updated_at),
        "version": epic.version,
    }
    return HEADER.format(prefix=epic.prefix) + dump_yaml(document)


def _line(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return None


def _invalid(display: str, text: str, key: str, problem: str) -> InvalidInput:
    line = _line(text, key)
    where = f"{display}:{line}" if line else display
    return InvalidInput(
        f"{where}: {key}: {problem}",
        hint=f"fix {key} in {display} (or re-render it: storyflow sync --prefer db)",
        details={"file": display, "line": line, "key": key},
    )


def parse(text: str, display: str, root: str) -> Epic:
    """The epic the file describes; errors name the file, line and key."""
    data = load_mapping(text, source=display)
    values: dict[str, Any] = {}
    for key in ("prefix", "title", "layout", "timezone", "created_at", "updated_at"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _invalid(display, text, key, "missing or not a string")
        values[key] = value.strip()
    try:
        prefix = parse_prefix(values["prefix"])
    except StoryflowError as exc:
        raise _invalid(display, text, "prefix", exc.message) from None
    if file_name(prefix) != display.rsplit("/", 1)[-1]:
        raise _invalid(display, text, "prefix", f"{prefix} does not match the file name")
    try:
        layout = LayoutName(values["layout"])
    except ValueError:
        raise _invalid(display, text, "layout", "must be staged or flat") from None
    try:
        timezone = validate_timezone(values["timezone"])
    except StoryflowError as exc:
        raise _invalid(display, text, "timezone", exc.message) from None
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise _invalid(display, text, "settings", "must be a mapping")
    try:
        parsed_settings = EpicSettings.from_json(settings)
    except (TypeError, ValueError) as exc:
        raise _invalid(display, text, "settings", str(exc)) from None
    stamps = {}
    for key in ("created_at", "updated_at"):
        try:
            stamps[key] = datetime.fromisoformat(values[key])
        except ValueError:
            raise _invalid(display, text, key, "not an ISO-8601 time") from None
        if stamps[key].tzinfo is None:
            raise _invalid(display, text, key, "needs a time zone (…Z)")
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _invalid(display, text, "version", "must be a positive integer")
    return Epic(
        prefix=prefix,
        title=" ".join(values["title"].split()),
        layout=layout,
        root=root,
        timezone=timezone,
        settings=parsed_settings,
        created_at=stamps["created_at"],
        updated_at=stamps["updated_at"],
        version=version,
    )

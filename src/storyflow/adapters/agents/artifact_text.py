"""An artifact's content as the file the layout names: YAML, or Markdown with the fields in
its YAML front matter (the flat layout's ``.md`` artifacts)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storyflow.adapters.files.atomic import write_atomic
from storyflow.adapters.files.yamlio import dump_yaml


def render_artifact(path: Path, content: dict[str, Any]) -> str:
    if path.suffix == ".md":
        title = f"# {content.get('story_id', '')}: {path.stem.split('-')[0].lower()}\n"
        summary = content.get("summary") or ""
        return "---\n" + dump_yaml(content) + "---\n\n" + title + "\n" + summary + "\n"
    return dump_yaml(content)


def write_artifact(path: Path, content: dict[str, Any]) -> None:
    write_atomic(path, render_artifact(path, content))


def write_plain(path: Path, text: str) -> None:
    """As an agent writes a file: temp file and rename (no reader sees half of it), without
    the fsync the engine's own records get (the engine reads it right after)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)

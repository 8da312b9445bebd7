"""Reading a plan folder: PLAN.exec.md, PLAN.meta.md and stories.index.md.

Each file is read within the size limit as UTF-8, refused when it holds merge-conflict
markers, split into YAML front matter (``doc_type`` checked; each key's line kept) and
Markdown sections with their line numbers; YAML code blocks are parsed (safely) for the
rules that read them. What is malformed but skippable becomes a warning with its line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from storyflow.adapters.files.atomic import read_text
from storyflow.adapters.files.yamlio import load_mapping, load_yaml, section_key, split_front_matter
from storyflow.domain.model import parse_story_id
from storyflow.domain.plan_model import (
    GENERATED_SECTIONS,
    INDEX_DOC_TYPE,
    INDEX_FILE,
    META_DOC_TYPE,
    META_FILE,
    PLAN_DOC_TYPE,
    PLAN_FILE,
    CodeBlock,
    IndexEntry,
    Line,
    PlanDocument,
    PlanSource,
    PlanWarning,
    Section,
    StoriesIndex,
    conflict_markers,
    parse_fields,
)
from storyflow.errors import InvalidInput, NotFoundError

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FRONT_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)\s*:")
_STORY_HEADING = re.compile(r"^(?P<id>[A-Za-z][A-Za-z0-9]*-\d+)\b\s*(?:[:—–-]\s*(?P<title>.*))?$")
_YAML_LANGS = frozenset({"yaml", "yml"})


class PlanFiles:
    """The plan reader port over the workspace's files."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    # ---- the port ---------------------------------------------------------------------

    def read(self, path: Path) -> PlanSource:
        """The plan folder ``path`` (or the folder of the PLAN.exec.md it names)."""
        plan_path = self._plan_file(path)
        folder = plan_path.parent
        warnings: list[PlanWarning] = []
        plan = self._document(plan_path, PLAN_DOC_TYPE, warnings)
        meta_path = folder / META_FILE
        meta = self._document(meta_path, META_DOC_TYPE, warnings) if meta_path.is_file() else None
        index_path = folder / INDEX_FILE
        index = self._index(index_path, warnings) if index_path.is_file() else None
        return PlanSource(
            folder=self._relative_folder(folder),
            plan=plan,
            meta=meta,
            index=index,
            warnings=tuple(warnings),
        )

    def check_text(self, path: Path) -> None:
        """Refuse a file that cannot be read as text or holds merge-conflict markers."""
        self._text(path)

    def front_matter(self, path: Path) -> dict[str, Any] | None:
        """The front matter of the file at ``path``: None when there is no file, ``{}`` when
        it has none (or it cannot be read as text, or its YAML does not parse)."""
        if not path.is_file():
            return None
        try:
            front, _, _ = split_front_matter(read_text(path, max_bytes=self.max_bytes))
            return {} if front is None else load_mapping(front, source=self.display(path))
        except (InvalidInput, NotFoundError, OSError):
            return {}

    def write(self, path: Path, text: str) -> bool:
        """Write ``text`` atomically unless the file already holds it; whether it wrote."""
        from storyflow.adapters.files.atomic import write_atomic

        if path.is_file():
            try:
                if path.read_bytes() == text.encode("utf-8"):
                    return False
            except OSError:
                pass
        if path.is_dir():
            raise InvalidInput(
                f"{self.display(path)} is a directory, not a file",
                hint="name a file, e.g. --output plans/stories.index.md",
                details={"file": self.display(path)},
            )
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise InvalidInput(
                f"cannot write {self.display(path)}: {exc.strerror or exc}",
                hint="check the folder exists and is writable",
                details={"file": self.display(path)},
            ) from exc
        return True

    def display(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    # ---- files ------------------------------------------------------------------------

    def _plan_file(self, path: Path) -> Path:
        if path.is_dir():
            candidate = path / PLAN_FILE
            if candidate.is_file():
                return candidate
            found = sorted(path.glob(f"*{PLAN_FILE}"))
            if len(found) == 1:
                return found[0]
            raise NotFoundError(
                f"{self.display(path)} has no {PLAN_FILE}",
                code="FILE_NOT_FOUND",
                hint=f"name the plan folder (the one with {PLAN_FILE}) or the file itself",
                details={"file": self.display(candidate)},
            )
        if not path.exists():
            raise NotFoundError(
                f"{path} does not exist",
                code="FILE_NOT_FOUND",
                hint=f"name a plan folder or its {PLAN_FILE}",
                details={"file": str(path)},
            )
        return path

    def _relative_folder(self, folder: Path) -> str:
        try:
            relative = folder.resolve().relative_to(self.root.resolve())
        except ValueError:
            raise InvalidInput(
                f"the plan folder {folder} is outside the workspace {self.root}",
                hint="move the plan into the workspace (its stories live beside it)",
                details={"file": str(folder)},
            ) from None
        return relative.as_posix()

    def _text(self, path: Path) -> tuple[str, str]:
        display = self.display(path)
        text = read_text(path, max_bytes=self.max_bytes, display=display)
        marks = conflict_markers(text)
        if marks:
            raise InvalidInput(
                f"{display}:{marks[0]}: unresolved merge conflict marker",
                code="MERGE_CONFLICT",
                hint="resolve the conflict (keep one side, delete the <<<<<<< ======= >>>>>>> "
                "lines), then retry",
                details={"file": display, "line": marks[0], "lines": marks},
            )
        return display, text

    def _front(
        self, display: str, text: str, doc_type: str
    ) -> tuple[dict[str, Any], dict[str, int], str, int]:
        front, body, offset = split_front_matter(text)
        if front is None:
            raise InvalidInput(
                f"{display}:1: no YAML front matter",
                code="FRONT_MATTER_MISSING",
                hint=f"start the file with '---', doc_type: {doc_type} and the other keys, '---'",
                details={"file": display, "line": 1},
            )
        data = load_mapping(front, source=display, line_offset=1)
        lines: dict[str, int] = {}
        for number, text_line in enumerate(front.splitlines(), start=2):
            key = _FRONT_KEY.match(text_line)
            if key:
                lines.setdefault(key.group(1), number)
        stated = data.get("doc_type")
        if stated != doc_type:
            line = lines.get("doc_type", 1)
            raise InvalidInput(
                f"{display}:{line}: doc_type is {stated!r}, expected {doc_type!r}",
                code="WRONG_DOC_TYPE",
                hint=f"set doc_type: {doc_type} (or name the right file)",
                details={"file": display, "line": line, "value": stated, "expected": doc_type},
            )
        return data, lines, body, offset

    def _document(self, path: Path, doc_type: str, warnings: list[PlanWarning]) -> PlanDocument:
        display, text = self._text(path)
        front, lines, body, offset = self._front(display, text, doc_type)
        return PlanDocument(
            source=display,
            front=front,
            front_lines=lines,
            sections=tuple(_sections(display, body, offset, warnings)),
        )

    # ---- stories.index.md -------------------------------------------------------------

    def _index(self, path: Path, warnings: list[PlanWarning]) -> StoriesIndex:
        display, text = self._text(path)
        front, lines, body, offset = self._front(display, text, INDEX_DOC_TYPE)
        entries: list[IndexEntry] = []
        story: IndexEntry | None = None

        def warn(line: int, message: str) -> None:
            warnings.append(PlanWarning(file=display, line=line, message=message))

        for section in _sections(display, body, offset, warnings, parse_yaml=False):
            if section.level == 1:
                story = None
                continue
            if section.level > 2:
                if story is not None:
                    warn(section.line, f"subsection {section.title!r} in {story.id} ignored")
                continue
            story = None
            if section_key(section.title) in GENERATED_SECTIONS:
                continue
            heading = _STORY_HEADING.match(section.title)
            if heading is None:
                warn(section.line, f"unknown section {section.title!r} skipped")
                continue
            try:
                parse_story_id(heading["id"])
            except InvalidInput:
                warn(section.line, f"malformed story ID {heading['id']!r}; section skipped")
                continue
            fields, stray = parse_fields(section.prose())
            for number, line in stray:
                warn(number, f"{heading['id']}: {line.strip()[:60]!r} is not a **Field:** line")
            story = IndexEntry(
                id=heading["id"],
                title=heading["title"] or "",
                line=section.line,
                fields=tuple(fields),
            )
            entries.append(story)
        return StoriesIndex(source=display, front=front, front_lines=lines, entries=tuple(entries))


def _sections(
    display: str, body: str, offset: int, warnings: list[PlanWarning], *, parse_yaml: bool = True
) -> list[Section]:
    """The body's headings, each with its lines (numbered in the file) and code blocks."""
    sections: list[Section] = []
    heading: tuple[int, str, int] | None = None  # level, title, line
    lines: list[Line] = []
    blocks: list[CodeBlock] = []
    fence: tuple[str, str, int, list[str]] | None = None  # marker, lang, line, text

    def flush() -> None:
        if heading is not None:
            level, title, line = heading
            sections.append(
                Section(
                    level=level, title=title, line=line, lines=tuple(lines), blocks=tuple(blocks)
                )
            )

    for index, text in enumerate(body.split("\n")):
        number = offset + index + 1
        stripped = text.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = (stripped[:3], stripped[3:].strip().lower(), number, [])
        elif fence is not None and stripped.startswith(fence[0]):
            _, lang, start, content = fence
            blocks.append(_block(display, lang, start, "\n".join(content), warnings, parse_yaml))
            fence = None
        elif fence is not None:
            fence[3].append(text)
        else:
            match = _HEADING.match(text)
            if match:
                flush()
                heading = (len(match.group(1)), match.group(2), number)
                lines, blocks = [], []
                continue
        lines.append((number, text))
    if fence is not None:
        warnings.append(PlanWarning(file=display, line=fence[2], message="code block never closed"))
    flush()
    return sections


def _block(
    display: str, lang: str, line: int, text: str, warnings: list[PlanWarning], parse: bool
) -> CodeBlock:
    data = None
    if parse and lang in _YAML_LANGS:
        try:
            data = load_yaml(text, source=display, line_offset=line)
        except InvalidInput as exc:
            warnings.append(PlanWarning(file=display, line=line, message=exc.message))
    return CodeBlock(lang=lang, line=line, text=text, data=data)

"""Relative links in Markdown docs: every ``[text](path#anchor)`` must reach a file that
exists and, for Markdown targets, a heading (GitHub's anchor rules) or an explicit anchor."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

from storyflow.domain.findings import Finding
from storyflow.errors import StoryflowError
from storyflow.services.ports import FilesPort

_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None:
            yield number, line


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in _prose(text):
        found.update(_HTML_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            seen = counts.get(base, 0)
            counts[base] = seen + 1
            found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link in the prose; code spans and fences skipped."""
    for number, line in _prose(text):
        prose = _CODE_SPAN.sub("", line)
        reference = _REFERENCE.match(prose)
        if reference:
            yield number, reference.group(1).strip("<>")
            continue
        for match in _INLINE.finditer(prose):
            yield number, match.group(1).strip("<>")


class LinkChecker:
    """Checks docs through the files port, reading each link target's anchors once."""

    def __init__(self, files: FilesPort) -> None:
        self.files = files
        self._anchors: dict[str, set[str] | None] = {}

    def _anchors_of(self, path: str) -> set[str] | None:
        if path not in self._anchors:
            try:
                self._anchors[path] = anchors(self.files.read_rel(path))
            except StoryflowError:
                self._anchors[path] = None
        return self._anchors[path]

    def check(self, docs: Iterable[str]) -> list[Finding]:
        findings: list[Finding] = []
        for doc in docs:
            try:
                text = self.files.read_rel(doc)
            except StoryflowError as exc:
                findings.append(Finding(code="CHECK_BROKEN_LINK", file=doc, message=exc.message))
                continue
            self._anchors[doc] = anchors(text)
            for line, target in links(text):
                problem = self._problem(doc, target)
                if problem:
                    findings.append(
                        Finding(code="CHECK_BROKEN_LINK", file=doc, line=line, message=problem)
                    )
        return findings

    def _problem(self, doc: str, target: str) -> str | None:
        if not target or _SCHEME.match(target) or target.startswith("//"):
            return None  # a URL (http:, mailto:, ...): not checked offline
        path, _, anchor = target.partition("#")
        path = unquote(path.split("?", 1)[0])
        if path:
            base = "" if path.startswith("/") else posixpath.dirname(doc)
            resolved = posixpath.normpath(posixpath.join(base, path.lstrip("/")))
            if not self.files.exists_rel(resolved):
                return f"link to {target}: {resolved} does not exist"
        else:
            resolved = doc
        if anchor and resolved.endswith(".md"):
            known = self._anchors_of(resolved)
            if known is not None and unquote(anchor).lower() not in known:
                return f"link to {target}: {resolved} has no heading or anchor #{anchor}"
        return None

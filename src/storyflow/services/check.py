"""``storyflow check``: validate the workspace, read-only.

Reads the database in bulk (one query per table), walks the story folders once, and checks
every story and artifact file: schemas and the evidence rules, naming and placement, the
front matter and the append-only Agent Log against the database, tokens for every phase a
completed story ran, dependency cycles, duplicate IDs, stale generated docs and broken links
in the docs. Each finding has a stable code (``domain/checks.CHECK_CODES``), the file, the
line where known, and a hint. PATHS narrows the check to what those files concern (the
pre-commit hook passes the staged files). A check with findings reads the database and the
files again and keeps what both passes found; a story a run holds is listed, not checked
(``run_check``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storyflow.config import STATE_DIR
from storyflow.domain.checks import AuditRows, dependency_cycles, rename_back
from storyflow.domain.findings import CHECK_CODES, Finding
from storyflow.domain.layouts import LAYOUTS, stage_for
from storyflow.domain.model import STORY_ID_RE, Epic, Story
from storyflow.services.check_folders import StoryFolder, discover
from storyflow.services.check_stories import StoryCheck, check_folder
from storyflow.services.context import Context
from storyflow.services.links import LinkChecker
from storyflow.services.projection import effective_budgets

REFERENCE_DIR = "docs/reference"
DOC_FILES = ("README.md", "AGENTS.md")
# (path relative to the workspace, what is wrong with it)
DocsDrift = Callable[[], list[tuple[str, str]]]


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What PATHS ask about: the stories their folders name, and the files themselves."""

    ids: frozenset[str]
    files: frozenset[str]

    @classmethod
    def of(cls, paths: Sequence[str]) -> Scope:
        ids = {part for p in paths for part in p.split("/") if STORY_ID_RE.match(part)}
        return cls(ids=frozenset(ids), files=frozenset(p.rstrip("/") for p in paths))

    def covers_folder(self, folder: StoryFolder) -> bool:
        return folder.id in self.ids or self._touches(folder.path)

    def keeps(self, finding: Finding) -> bool:
        if finding.story is not None and finding.story in self.ids:
            return True
        return finding.file is not None and self._touches(finding.file)

    def _touches(self, path: str) -> bool:
        return any(
            f == path or f.startswith(path + "/") or path.startswith(f + "/") for f in self.files
        )


@dataclass(kw_only=True)
class CheckReport:
    findings: list[Finding]
    stories: int
    files: int
    database: str  # "checked", or "empty" (no epics: the files are checked on their own)
    paths: list[str] | None = None
    ignored: list[str] = field(default_factory=list)
    in_run: list[str] = field(default_factory=list)  # stories a run holds: not counted
    hook: str = "none"  # the pre-commit hook: installed | outdated | none (services/hooks.py)

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        by_code: dict[str, int] = defaultdict(int)
        for finding in self.findings:
            by_code[finding.code] += 1
        return {
            "findings": [f.to_json() for f in self.findings],
            "summary": {
                "clean": self.clean,
                "findings": len(self.findings),
                "by_code": dict(sorted(by_code.items())),
                "stories": self.stories,
                "files": self.files,
                "database": self.database,
                "paths": self.paths,
                "ignored": self.ignored,
                "in_run": self.in_run,
                "hook": self.hook,
            },
        }


@dataclass(kw_only=True)
class _Folders:
    """What checking the story folders gathered."""

    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    files_read: int = 0
    graph: dict[str, list[str]] = field(default_factory=dict)  # depends_on in the files
    where: dict[str, tuple[str | None, int | None]] = field(default_factory=dict)
    claimed: dict[str, str] = field(default_factory=dict)  # id -> the file in another folder
    database: str = "checked"


def run_check(
    ctx: Context,
    *,
    paths: Sequence[str] | None = None,
    ignored: Sequence[str] = (),
    docs_drift: DocsDrift | None = None,
    tracked_state: Callable[[], list[str]] | None = None,
) -> CheckReport:
    """Check the workspace (or what ``paths``, relative to its root, concern).

    The database and the files are read one after the other, so a run or another command
    that changes a story in between (commit, then projection) can make them look apart. A
    check with findings therefore checks the stories again, and reports only the findings
    both passes saw; the findings of a story a run holds (its lease) are its work in
    progress: listed in ``in_run``, not counted."""
    scope = Scope.of(paths) if paths is not None else None
    result = _stories_pass(ctx, scope)
    if result.findings:
        first = {_key(f) for f in result.findings}
        result = _stories_pass(ctx, scope)
        result.findings = [f for f in result.findings if _key(f) in first]
    in_run: list[str] = []
    if result.findings:
        with ctx.store.transaction(write=False):
            leased = ctx.store.leased_story_ids(ctx.now())
        in_run = sorted({f.story for f in result.findings if f.story in leased})
        result.findings = [f for f in result.findings if f.story not in leased]
    findings = result.findings
    if docs_drift is not None and (scope is None or _under(scope, REFERENCE_DIR)):
        findings += [
            Finding(code="CHECK_DOCS_STALE", file=path, message=f"{path}: {reason}")
            for path, reason in docs_drift()
        ]
    if tracked_state is not None and (scope is None or _under(scope, STATE_DIR)):
        findings += [  # a clone's database in git: a pull replaces another clone's with it
            Finding(code="CHECK_STATE_TRACKED", file=path, message=f"{path} is in git")
            for path in tracked_state()
            if path != f"{STATE_DIR}/.gitignore"  # committed on purpose, it does no harm
        ]
    docs = [d for d in DOC_FILES if ctx.files.exists_rel(d)] + ctx.files.files_under("docs", ".md")
    if scope is not None:
        docs = [d for d in docs if d in scope.files]
    findings += LinkChecker(ctx.files).check(docs)
    if scope is not None:
        findings = [f for f in findings if scope.keeps(f)]
    findings.sort(key=Finding.sort_key)
    return CheckReport(
        findings=findings,
        stories=result.checked,
        files=result.files_read + len(docs),
        database=result.database,
        paths=list(paths) if paths is not None else None,
        ignored=list(ignored),
        in_run=in_run,
    )


def _key(finding: Finding) -> tuple[str, str | None, int | None, str | None, str]:
    return (finding.code, finding.file, finding.line, finding.story, finding.message)


def _stories_pass(ctx: Context, scope: Scope | None) -> _Folders:
    """The database read in bulk, the folders walked and checked against it, the stories
    without a folder and the dependency graphs."""
    with ctx.store.transaction(write=False):
        audit = ctx.store.audit_rows()
    found = discover(ctx.files, audit.epics)
    groups: dict[str, list[StoryFolder]] = defaultdict(list)
    for folder in found.folders:
        groups[folder.id].append(folder)
    folders = _check_folders(ctx, audit, groups, scope)
    epics = {e.prefix: e for e in audit.epics}
    folders.findings = found.findings + folders.findings
    folders.findings += [  # the engine refuses to write there (OUTSIDE_WORKSPACE)
        Finding(
            code="CHECK_OUTSIDE_WORKSPACE",
            file=path,
            story=path.rsplit("/", 1)[-1],
            message=f"{path}/ leads outside the workspace, to {real}",
        )
        for path, real in ctx.files.outside_workspace([f.path for f in found.folders]).items()
    ]
    folders.findings += _missing_folders(audit, groups, epics, scope, folders.claimed)
    folders.findings += _graph_findings(audit, folders.graph, folders.where, set(groups))
    folders.database = "checked" if audit.epics else "empty"
    return folders


def _check_folders(
    ctx: Context,
    audit: AuditRows,
    groups: dict[str, list[StoryFolder]],
    scope: Scope | None,
) -> _Folders:
    """Every story folder (in scope): duplicates, untracked stories, and each folder's own
    checks, the database's story compared with the folder where it belongs."""
    from storyflow.schemas.artifacts import validate  # pydantic: only when checking

    epics = {e.prefix: e for e in audit.epics}
    stories = {s.id: s for s in audit.stories}
    budgets = {prefix: effective_budgets(ctx, epic) for prefix, epic in epics.items()}
    today = ctx.now().date()
    out = _Folders()
    for story_id, folders in sorted(groups.items()):
        story = stories.get(story_id)
        epic = epics.get(folders[0].prefix)
        primary = _primary(folders, epic, story)
        listed = ", ".join(f.path + "/" for f in folders)
        out.findings += [
            Finding(
                code="CHECK_DUPLICATE_ID",
                file=f.path,
                story=story_id,
                message=f"{len(folders)} folders claim {story_id}: {listed}",
            )
            for f in folders
            if f is not primary
        ]
        untracked = bool(audit.epics) and story is None
        for folder in folders:
            if scope is not None and not scope.covers_folder(folder):
                continue
            item = StoryCheck(
                folder=folder,
                epic=epic,
                story=story if folder is primary else None,
                audit=audit,
                today=today,
                threshold=(epic.settings if epic else ctx.config).coverage_threshold,
                validate=validate,
                budgets=budgets.get(epic.prefix) if epic else None,
            )
            check_folder(ctx.files, item)
            if untracked and folder is primary:
                out.findings.append(_untracked(primary, story_id, epic, item.claims))
                untracked = False
            out.findings += item.findings
            out.checked += 1
            out.files_read += item.files_read
            if item.claims is not None and item.story_file is not None:
                out.claimed.setdefault(item.claims, item.story_file)
            if folder is primary and item.depends_on is not None:
                out.graph[story_id] = item.depends_on
                out.where[story_id] = (item.story_file, item.depends_line)
        if untracked:  # its folder is outside the scope checked: said without reading it
            out.findings.append(_untracked(primary, story_id, epic, None))
    return out


def _untracked(
    folder: StoryFolder, story_id: str, epic: Epic | None, claims: str | None
) -> Finding:
    """A story folder the database does not know; one whose story file says it is another
    story (a folder renamed by hand) is not imported by sync, so the hint says to rename it."""
    whose = f"story {story_id}" if epic else f"epic {folder.prefix}"
    return Finding(
        code="CHECK_UNTRACKED_STORY",
        file=folder.path,
        story=story_id,
        message=f"the database has no {whose} ({folder.path}/)",
        hint=f"its story file says it is {claims}: give the folder that name (git mv), or fix "
        "the id; then storyflow sync"
        if claims is not None
        else "",
    )


def _under(scope: Scope, folder: str) -> bool:
    return any(f == folder or f.startswith(folder + "/") for f in scope.files)


def _expected_folder(epic: Epic, story: Story) -> str:
    root = epic.root.strip("/")
    if LAYOUTS[epic.layout].staged:
        return f"{root}/{stage_for(story.status, story.blocked_from)}/{story.id}"
    return f"{root}/{story.id}"


def _primary(folders: list[StoryFolder], epic: Epic | None, story: Story | None) -> StoryFolder:
    """The folder the database's story is compared with: where it belongs, else the first."""
    if epic is not None and story is not None:
        expected = _expected_folder(epic, story)
        for folder in folders:
            if folder.path == expected:
                return folder
    return folders[0]


def _missing_folders(
    audit: AuditRows,
    groups: dict[str, list[StoryFolder]],
    epics: dict[str, Epic],
    scope: Scope | None,
    claimed: dict[str, str],
) -> list[Finding]:
    """Stories of the database with no folder; one whose story file another folder holds
    (renamed by hand) is told to rename that folder back, not to render the file anew."""
    findings = []
    for story in audit.stories:
        if story.id in groups or story.epic not in epics:
            continue
        if scope is not None and story.id not in scope.ids:
            continue
        epic = epics[story.epic]
        path = f"{_expected_folder(epic, story)}/{LAYOUTS[epic.layout].story_file_name(story.id)}"
        findings.append(
            Finding(
                code="CHECK_MISSING_STORY_FILE",
                file=path,
                story=story.id,
                message=f"{story.id} ({story.status.value}) has no folder: {path} is missing"
                + (f" ({claimed[story.id]} says it is {story.id})" if story.id in claimed else ""),
                hint=rename_back(claimed[story.id], story.id)
                if story.id in claimed
                else f"storyflow story render {story.id} writes it again",
            )
        )
    return findings


def _graph_findings(
    audit: AuditRows,
    file_graph: dict[str, list[str]],
    where: dict[str, tuple[str | None, int | None]],
    folder_ids: set[str],
) -> list[Finding]:
    db_graph = {s.id: list(s.depends_on) for s in audit.stories}
    known = set(db_graph) | folder_ids
    findings: list[Finding] = []
    reported: set[frozenset[str]] = set()
    for source, graph in (("database", db_graph), ("story files", file_graph)):
        for cycle in dependency_cycles(graph):
            members = frozenset(cycle)
            if members in reported:
                continue
            reported.add(members)
            file, line = where.get(cycle[0], (None, None))
            findings.append(
                Finding(
                    code="CHECK_DEPENDENCY_CYCLE",
                    file=file,
                    line=line,
                    story=cycle[0],
                    message=f"dependency cycle in the {source}: " + " -> ".join(cycle),
                )
            )
    for story_id, deps in sorted(file_graph.items()):
        file, line = where.get(story_id, (None, None))
        findings.extend(
            Finding(
                code="CHECK_UNKNOWN_DEPENDENCY",
                file=file,
                line=line,
                story=story_id,
                message=f"{story_id} depends on {dep}, which does not exist",
            )
            for dep in deps
            if dep not in known
        )
    return findings


def code_table() -> list[tuple[str, str, str]]:
    """(code, what it means, what to do) for every finding code, as documented."""
    return [(c.code, c.summary, c.hint) for c in CHECK_CODES.values()]

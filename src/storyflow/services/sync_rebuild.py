"""``storyflow sync --prefer files`` on a story whose Agent Log was edited or diverged from
the database's (two clones changed it before pulling): that story, and only that one, is
rebuilt from its folder exactly as a fresh clone's rebuild reads it (``rebuild.prepare_story``:
fields, status, history with actors, times, reasons and flags, artifact versions with their
verdict rows, approvals, the ledger from the Token Budget, links), and its rows are
replaced in one savepoint, with the compare-and-set on the version the database had.

What the files do not carry stays: runs, leases, events, the story snapshots taken on
entering elaboration, and of each ledger entry the file lists as the database has it, its
run, and its note when the file has none (matched by what the Token Budget shows of it).
The database's log rows the file lacks are named in the ``story_rebuilt`` event, so what
was dropped can be redone.

The file's log must be one history the rules allow: a move from a status the story was not
in, a move no edge allows (and not forced), or artifact versions out of order (two clones'
"KIND v1 submitted") are refused (``AGENT_LOG_INVALID``), and nothing of the story changes.
Both sides' rows kept in time order pass when they form one chain (one clone logged tokens,
the other submitted an artifact); two moves from the same status never do.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from storyflow.domain.artifacts import SUBMITTED_ROW, ArtifactKind
from storyflow.domain.model import AgentLogRow, LedgerEntry, Story
from storyflow.domain.transitions import find_edge
from storyflow.errors import RuleViolation, StoryflowError
from storyflow.services.rebuild import Candidate, Imported, prepare_story
from storyflow.services.sync_history import missing_file_error
from storyflow.services.sync_merge import ledger_key
from storyflow.services.sync_ports import StoryItem
from storyflow.services.sync_report import Change, SyncReport

if TYPE_CHECKING:
    from storyflow.services.sync_apply import Session

DROPPED_SHOWN = 20  # the event names at most this many of the dropped rows


def rebuild_story(
    session: Session, item: StoryItem, story: Story, path: str, db_rows: list[AgentLogRow]
) -> None:
    """Replace ``story``'s rows with what its folder says (see the module docstring);
    a refusal is reported as a problem and nothing of the story is applied."""
    ctx = session.ctx
    assert item.folder is not None and item.story_file is not None
    scratch = SyncReport(dry_run=False, prefer=None)
    candidate = Candidate(
        epic=item.epic, folder=item.folder, story_file=item.story_file, artifacts=item.artifacts
    )
    done = prepare_story(ctx, session.files, candidate, scratch)
    session.report.read += scratch.read
    session.report.parsed += scratch.parsed
    if done is None or scratch.problems:  # the file, or an artifact its log names, unread
        session.report.problems.extend(scratch.problems)
        return
    imported, rows = done
    file_rows = rows.log_rows[0][1]
    try:
        if imported.needs_render:
            raise _invalid(path, story.id, "has no rows")
        check_history(story.id, rows.transitions, file_rows, path)
        if imported.missing:
            raise missing_file_error(
                story.id,
                path,
                imported.missing,
                f"{story.id} is not rebuilt (it would lose the version)",
                hint=f"restore the file (git log --stat -- {path.rsplit('/', 1)[0]} shows "
                "where it went), or have the clone that submitted it commit it and pull; "
                "then sync --prefer files again. Or keep this database's side: storyflow "
                "sync --prefer db",
            )
        _check_links(session, imported.story, path)
    except StoryflowError as exc:
        session.problem(exc, path, story.id)
        return
    rows.stories = [imported.story]
    rows.ledger = kept_columns(rows.ledger, ctx.store.ledger(story.id))
    kept = set(file_rows)
    dropped = [r for r in db_rows if r not in kept]
    mark = session.deferred.mark()
    try:
        with ctx.store.savepoint():
            ctx.store.cas_update_story(imported.story, story.version)
            counts = session.store.replace_story_rows(rows)
            counts.pop("stories", None)
            detail: dict[str, Any] = {
                **counts,
                "version": imported.story.version,
                "status": imported.story.status.value,
                "dropped": len(dropped),
            }
            ctx.store.insert_event(
                type="story_rebuilt",
                at=ctx.now(),
                story_id=story.id,
                epic=item.epic.prefix,
                actor=ctx.actor,
                payload={
                    **detail,
                    "was": {"version": story.version, "status": story.status.value},
                    "dropped_rows": [
                        {"timestamp": r.timestamp, "agent": r.agent, "action": r.action}
                        for r in dropped[:DROPPED_SHOWN]
                    ],
                },
            )
    except StoryflowError as exc:
        session.deferred.rollback_to(mark)
        session.problem(exc, path, story.id)
        return
    session.report.changes.append(
        Change(
            action="story_rebuilt",
            direction="files->db",
            story=story.id,
            epic=item.epic.prefix,
            file=path,
            detail=detail,
        )
    )
    follow_up(session, imported)


def kept_columns(
    entries: list[tuple[LedgerEntry, str]], in_db: list[LedgerEntry]
) -> list[tuple[LedgerEntry, str]]:
    """The file's ledger entries with what the Token Budget does not carry (the run, and
    the note of an entry rendered before notes were) taken from the database's entry each
    one is: the same measurement at the file's precision and the same agent, each database
    entry matched once, in order. What the file does carry stays the file's."""
    unmatched: dict[tuple[Any, ...], deque[LedgerEntry]] = defaultdict(deque)
    for entry in in_db:
        unmatched[(*ledger_key(entry), entry.agent)].append(entry)
    out = []
    for entry, prefix in entries:
        same = unmatched.get((*ledger_key(entry), entry.agent))
        if same:
            was = same.popleft()
            entry = replace(
                entry,
                note=was.note if entry.note is None else entry.note,
                run_id=was.run_id if entry.run_id is None else entry.run_id,
            )
        out.append((entry, prefix))
    return out


def check_history(
    story_id: str, transitions: list[dict[str, Any]], rows: list[AgentLogRow], path: str
) -> None:
    """Refuse a log that is not one history: every move from the status the rows before it
    left, along an edge (or forced); each kind's versions submitted in order."""
    status = transitions[0]["target"]
    for move in transitions[1:]:
        source, target = move["source"], move["target"]
        where = f"row {move['story_version']}"
        if source is not status:
            raise _invalid(
                path,
                story_id,
                f"{where} moves it from {source.value}, but the rows before it left it "
                f"{status.value}",
            )
        if not move["forced"] and find_edge(source, target) is None:
            raise _invalid(
                path,
                story_id,
                f"{where} records {source.value} -> {target.value}, which no edge allows "
                "(and it was not forced)",
            )
        status = target
    latest: dict[str, int] = {}
    for index, row in enumerate(rows, start=1):
        match = SUBMITTED_ROW.match(row.action)
        if match is None or match["kind"] not in ArtifactKind._value2member_map_:
            continue
        kind, version = match["kind"], int(match["version"])
        if version != latest.get(kind, 0) + 1:
            raise _invalid(
                path,
                story_id,
                f"row {index} submits {kind} v{version} after v{latest.get(kind, 0)}",
            )
        latest[kind] = version


def _invalid(path: str, story_id: str, what: str) -> RuleViolation:
    return RuleViolation(
        f"{path}: the Agent Log is not one history of {story_id}: {what}",
        code="AGENT_LOG_INVALID",
        hint=f"keep one side's story file (git checkout --ours or --theirs {path}; two "
        "clones' rows kept together must form one chain the rules allow), then storyflow "
        "sync --prefer files; or re-render the log from the database: storyflow sync "
        "--prefer db",
        details={"file": path, "story": story_id},
    )


def _check_links(session: Session, story: Story, path: str) -> None:
    """Its dependencies exist and close no cycle (as a rebuild checks, against the others)."""
    known = session.store.story_states()
    missing = [d for d in story.depends_on if d not in known]
    if missing:
        raise RuleViolation(
            f"{story.id} depends on {', '.join(missing)}, which the database does not have",
            code="UNKNOWN_DEPENDENCY",
            hint="restore or fix the missing story folder, or fix depends_on, then sync again",
            details={"file": path, "story": story.id},
        )
    from storyflow.domain.checks import dependency_cycles

    graph = session.ctx.store.all_dependencies()
    graph[story.id] = list(story.depends_on)
    for cycle in dependency_cycles(graph):
        if story.id in cycle:
            raise RuleViolation(
                "dependency cycle: " + " -> ".join(cycle),
                code="DEPENDENCY_CYCLE",
                hint="drop one of those dependencies in the story files",
                details={"file": path, "story": story.id},
            )


def follow_up(session: Session, item: Imported) -> None:
    """What a story read from its folder still needs once its rows are in: what the file asks
    beyond its history (a status edited by hand, artifacts no row names) through the rules,
    the file rendered when the log was empty, the folder in its stage."""
    ctx = session.ctx
    session.versions[item.story.id] = item.story.version
    session.out.extend(item.records)
    story_path = next((r.path for r in item.records if r.kind == "story"), None)
    if not item.status_request and not item.needs_render:
        session.base_updates[item.story.id] = {
            "rows": item.story.version,
            "fields": item.file_fields,
        }
    follow = StoryItem(
        story_id=item.story.id,
        epic=item.epic,
        folder=item.folder,
        story_file=None,
        artifacts=[],
    )
    edits = {"status": item.status_request.value} if item.status_request else {}
    added = [] if session.prefer == "db" else item.added  # --prefer db drops them
    applied = session.apply(
        follow,
        item.story,
        item.new_artifacts,
        None,
        edits,
        item.blocked_reason,
        [],
        added,
        story_path,
    )
    if not applied and (item.status_request or added):
        # Not recorded: the next sync asks again (and reports it again).
        session.out[:] = [r for r in session.out if r.path != story_path]
    if item.needs_render:
        session.render(item.epic, item.story.id, story_path, "the Agent Log was empty")
    elif item.added and not added:
        session.render(item.epic, item.story.id, story_path, "measurements added by hand dropped")
    changed = edits or item.new_artifacts or added
    current = (ctx.store.get_story(item.story.id) if changed else None) or item.story
    session.check_stage(follow, current)


__all__ = ["check_history", "follow_up", "kept_columns", "rebuild_story"]

"""``storyflow sync``: files and database, both ways, in one transaction.

0. The no-op index (``sync_quick.py``): when every story folder's digest and every story's
   state are as the last idle sync saw them, the sync is idle at once.
1. Survey (read only): the epics (database, and ``*.epic.yaml`` files a fresh clone brings),
   their story folders (``os.scandir``, one ``stat`` per file) and ``sync_files`` (each file
   as of the last sync). A file whose size and mtime match its record is not even read.
2. In one transaction: stories the database does not have are rebuilt from their folders
   in bulk (``rebuild.py``); the others are reconciled file by file (``sync_apply.py``);
   stories whose files are missing or behind are re-rendered; the records are updated.
   A story a run holds (its lease) is left for the next sync, as is one another process
   changed while the sync worked on it (``Session.leave``: a warning).
3. After the commit the deferred file writes happen (projections, epic files), then their
   new hashes are recorded. ``--dry-run`` rolls the transaction back and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from storyflow.errors import StoryflowError, UsageError
from storyflow.services.context import Context
from storyflow.services.sync_ports import SyncFilesPort, SyncRecord, SyncStorePort
from storyflow.services.sync_quick import quick_idle, save_index
from storyflow.services.sync_report import Change, Problem, SyncReport
from storyflow.services.sync_survey import Survey, survey

if TYPE_CHECKING:
    from storyflow.services.sync_apply import Session

PREFER = ("files", "db")
Progress = Callable[[int], None]


@dataclass(frozen=True, kw_only=True)
class SyncPorts:
    store: SyncStorePort
    files: SyncFilesPort


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction so that it rolls back."""


def sync(
    ctx: Context,
    ports: SyncPorts,
    *,
    dry_run: bool = False,
    prefer: str | None = None,
    progress: Callable[[int], Progress | None] | None = None,
    jobs: int | None = None,
) -> SyncReport:
    """Reconcile the files and the database; see the module docstring. ``progress`` is
    called with the number of files to work through and returns a per-file callback (or
    None for no progress display). ``jobs``: processes that read a rebuild's story folders
    (default: one for a few hundred stories, else one per CPU)."""
    if prefer is not None and prefer not in PREFER:
        raise UsageError(f"--prefer must be files or db, not {prefer!r}", hint="--prefer db")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {jobs}", hint="--jobs 2")
    report = SyncReport(dry_run=dry_run, prefer=prefer)
    if quick_idle(ctx, ports.files, ports.store, report):
        return report  # every folder as indexed by the last idle sync: nothing to do
    found = survey(ctx, ports.files, ports.store, report)
    if found.idle(report):
        if not dry_run:
            save_index(ctx, ports.files, found, report)
        return report  # nothing read, no write lock taken
    # The machinery of an actual sync (the services, pydantic schemas) loads only now.
    from storyflow.services.ports import FilesPort
    from storyflow.services.sync_apply import Session
    from storyflow.services.sync_deferred import DeferredFiles
    from storyflow.services.sync_epics import reconcile_epics

    tick = progress(found.work) if progress is not None and found.work else None
    deferred = DeferredFiles(ctx.files)
    session = Session(
        ctx=replace(ctx, files=cast(FilesPort, deferred)),
        files=ports.files,
        store=ports.store,
        deferred=deferred,
        report=report,
        prefer=prefer,
        records=ports.store.records(),
        versions={k: v[0] for k, v in found.states.items()},
    )
    try:
        with ctx.store.transaction():
            session.leased = ctx.store.leased_story_ids(ctx.now())
            _rebuild(session, found, tick, jobs)
            for item in found.changed:
                session.reconcile(item)
                if tick is not None:
                    tick(len(item.artifacts) + 1)
            reconcile_epics(session, found.epic_files)
            for story_id in found.missing:
                if story_id in session.leased:
                    session.leave(story_id, None, "STORY_LOCKED")
                    continue
                if story_id in report.claimed:
                    report.problems.append(_renamed(story_id, report.claimed[story_id]))
                    continue
                epic = found.epics[story_id.rsplit("-", 1)[0]]
                session.render(epic, story_id, None, "no story folder on disk")
            _forget_removed(session, found)
            ports.store.upsert_records(session.out, _stamp(ctx))
            if not report.nothing_to_do:
                ctx.store.insert_event(
                    type="sync",
                    at=ctx.now(),
                    actor=ctx.actor,
                    payload={
                        "changes": len(report.changes),
                        "conflicts": len(report.conflicts),
                        "problems": len(report.errors),
                        "rebuilt": report.rebuilt,
                    },
                )
            if dry_run:
                raise _DryRun
    except _DryRun:
        deferred.discard()
        return report
    except BaseException:
        deferred.discard()
        raise
    deferred.publish(ctx.store.get_story)
    _record_written(session, ctx, ports)
    report.warnings.extend(ctx.warnings)  # the services' (e.g. legacy status names)
    return report


# ---- the transaction's parts --------------------------------------------------------------


def _rebuild(session: Session, survey: Survey, tick: Progress | None, jobs: int | None) -> None:
    """Insert, in bulk, the new epics and the stories the database does not have."""
    from storyflow.services.rebuild import Candidate, prepare
    from storyflow.services.sync_rebuild import follow_up

    candidates = [
        Candidate(
            epic=item.epic,
            folder=item.folder,
            story_file=item.story_file,
            artifacts=item.artifacts,
        )
        for item in survey.new
        if item.folder is not None
    ]
    if not candidates and not survey.new_epics:
        return
    ctx = session.ctx
    rows, imported = prepare(
        ctx,
        session.files,
        candidates,
        set(survey.states),
        session.report,
        jobs=jobs,
        progress=tick,
    )
    rows.epics = list(survey.new_epics)
    counts = session.store.insert_rebuild(rows)
    session.report.rebuilt = {k: v for k, v in counts.items() if v}
    for epic in survey.new_epics:
        ctx.store.insert_event(
            type="epic_rebuilt",
            at=ctx.now(),
            epic=epic.prefix,
            actor=ctx.actor,
            payload={"stories": sum(1 for s in rows.stories if s.epic == epic.prefix)},
        )
        session.report.changes.append(
            Change(action="rebuilt", direction="files->db", epic=epic.prefix, file=epic.root)
        )
    for item in imported:
        session.report.changes.append(
            Change(
                action="imported",
                direction="files->db",
                story=item.story.id,
                epic=item.epic.prefix,
                file=next((r.path for r in item.records if r.kind == "story"), None),
                detail={"status": item.story.status.value, "version": item.story.version},
            )
        )
        follow_up(session, item)


def _forget_removed(session: Session, survey: Survey) -> None:
    """Drop the records of files that are gone; report the ones that did not just move
    (a staged story's folder moves between stage folders with its status)."""
    kept = {r.path for r in session.out}
    gone = [p for p in survey.removed if p not in kept]
    if not gone:
        return
    here = {(r.story_id, r.path.rsplit("/", 1)[-1]) for r in session.out}
    for item in survey.items:
        for scanned in (item.story_file, *(a for a, _ in item.artifacts)):
            if scanned is not None:
                here.add((item.story_id, scanned.name))
    for path in gone:
        rec = session.records.get(path)
        story_id = rec.story_id if rec else None
        moved = (story_id, path.rsplit("/", 1)[-1]) in here
        if not moved and story_id not in session.rendered:
            session.report.removed.append(path)
    session.store.delete_records(gone)


def _follow_moved_folders(session: Session, ctx: Context, records: list[SyncRecord]) -> list[str]:
    """A projection that moved a story folder to its stage moved its files unchanged: their
    records follow (so the next sync need not read them again)."""
    moved = {ctx.files.rel(old): ctx.files.rel(new) for old, new in session.deferred.moved.items()}
    if not moved:
        return []
    written = {r.path for r in records}
    known = {**session.records, **{r.path: r for r in session.out}}
    gone = []
    for path, rec in known.items():
        folder, _, name = path.rpartition("/")
        if folder in moved:
            target = f"{moved[folder]}/{name}"
            gone.append(path)
            if target not in written:
                records.append(rec._replace(path=target))
    return gone


def _renamed(story_id: str, holder: str) -> Problem:
    """A story with no folder whose story file is in another folder (renamed by hand): it is
    not rendered anew from the database, which would leave two folders of the story and the
    text written in its file beside an empty copy."""
    from storyflow.domain.checks import rename_back

    return Problem(
        code="ARTIFACT_STORY_MISMATCH",
        message=f"{story_id} has no folder on disk, but {holder} says it is {story_id}: "
        "not rendered again from the database",
        hint=f"{rename_back(holder, story_id)}, then run storyflow sync again",
        file=holder,
        story=story_id,
    )


def _stamp(ctx: Context) -> str:
    return ctx.now().isoformat(timespec="microseconds").replace("+00:00", "Z")


def _record_written(session: Session, ctx: Context, ports: SyncPorts) -> None:
    """After the commit: record the files the projections (and epic writes) just wrote, and
    remember each rendered story's fields as the base of the next three-way comparison."""
    from storyflow.services.sync_fields import story_fields

    records: list[SyncRecord] = []
    for rendered in session.deferred.rendered:
        rel = ctx.files.rel(rendered.path)
        scanned = ports.files.stat(rel)
        if scanned is None:
            continue
        try:
            loaded = ports.files.load(rel)
        except StoryflowError:
            continue
        story = rendered.story
        records.append(
            SyncRecord(
                rel, story.id, "story", scanned.size, scanned.mtime_ns, loaded.sha256, story.version
            )
        )
        session.base_updates[story.id] = {
            "rows": ports.files.count_log_rows(loaded.text, rel.rsplit("/", 1)[-1]),
            "fields": story_fields(story),
        }
    for path, epic_prefix in session.epic_writes:
        epic = ctx.store.get_epic(epic_prefix)
        scanned = ports.files.stat(path)
        if epic is None or scanned is None:
            continue
        loaded = ports.files.load(path)
        records.append(
            SyncRecord(
                path, None, "epic", scanned.size, scanned.mtime_ns, loaded.sha256, epic.version
            )
        )
    gone = _follow_moved_folders(session, ctx, records)
    if records or gone:
        with ctx.store.transaction():
            ports.store.upsert_records(records, _stamp(ctx))
            ports.store.delete_records(gone)
    if session.base_updates:
        base = dict(session.base)
        base.update(session.base_updates)
        ports.files.save_base(base)


__all__ = ["SyncPorts", "sync"]

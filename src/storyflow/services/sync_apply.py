"""Two-way sync of one story the database already has: its files against its row.

Which side changed a datum is read from the Agent Log. Every change the engine commits
appends a row and re-renders the file, so a file whose log equals the database's was
rendered at the database's current state: whatever else differs was edited by hand and is
applied through the rules (a status through story move, metadata through story update, a
new artifact through artifact submit). A file whose log is a prefix of the database's is
behind: the database moved on (a teammate on the shared PostgreSQL, say); the fields the
later rows changed are the database's, unless the file changed them too, which is a
conflict. A log that lost or changed rows is never accepted from the file.

A story is applied as a whole or not at all (one savepoint); what it makes the engine
write to files waits for the sync's commit (``DeferredFiles``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storyflow.domain.artifacts import ArtifactKind
from storyflow.domain.layouts import LAYOUTS, stage_for
from storyflow.domain.model import Epic, Story
from storyflow.domain.statuses import Status
from storyflow.errors import StoryflowError
from storyflow.services import artifacts, stories, transitions
from storyflow.services.context import Context
from storyflow.services.projection import (
    EVERY_FIELD,
    budget_drift,
    check_story_file,
    effective_budgets,
    render_after_commit,
    token_budget_block,
)
from storyflow.services.sync_deferred import DeferredFiles
from storyflow.services.sync_fields import editable_fields, story_fields
from storyflow.services.sync_history import ledger, log_rows
from storyflow.services.sync_measurements import added_rows, log_added
from storyflow.services.sync_merge import (
    decide,
    engine_edits,
    ledger_differs,
    log_state,
    update_args,
)
from storyflow.services.sync_ports import (
    LoadedFile,
    ScannedFile,
    StoryItem,
    SyncFilesPort,
    SyncRecord,
    SyncStorePort,
)
from storyflow.services.sync_read import conflict_marker_line, merge_conflict, read_story
from storyflow.services.sync_replay import PeerChanges, read_peer, write_peer
from storyflow.services.sync_replay import records as replay_records
from storyflow.services.sync_report import Change, Conflict, Problem, SyncReport


@dataclass(kw_only=True)
class Session:
    """One sync's state while it reconciles stories inside its transaction."""

    ctx: Context  # runs the services; its files port is the DeferredFiles
    files: SyncFilesPort
    store: SyncStorePort
    deferred: DeferredFiles
    report: SyncReport
    prefer: str | None
    records: dict[str, SyncRecord]
    versions: dict[str, int]
    out: list[SyncRecord] = field(default_factory=list)
    epic_writes: list[tuple[str, str]] = field(default_factory=list)  # (path, prefix)
    base_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    rendered: set[str] = field(default_factory=set)
    leased: set[str] = field(default_factory=set)  # stories a worker's run holds
    left: set[str] = field(default_factory=set)  # stories left for the next sync
    _hashes: dict[tuple[str, str], set[str]] | None = None
    _base: dict[str, Any] | None = None

    @property
    def base(self) -> dict[str, Any]:
        """Each story's fields as of the last sync (loaded when first needed)."""
        if self._base is None:
            self._base = self.files.load_base()
        return self._base

    # ---- helpers --------------------------------------------------------------------------

    def render(self, epic: Epic, story_id: str, path: str | None, reason: str) -> None:
        if story_id in self.rendered:
            return
        story = self.ctx.store.get_story(story_id)
        if story is not None:
            try:  # now, inside the transaction: after the commit it would be too late
                check_story_file(self.ctx, epic, story, moving_to=story)
            except StoryflowError as exc:
                self.problem(exc, path, story_id)
                return
        self.rendered.add(story_id)
        render_after_commit(self.ctx, epic, story_id, written=EVERY_FIELD)
        self.report.changes.append(
            Change(
                action="rendered",
                direction="db->files",
                story=story_id,
                epic=epic.prefix,
                file=path,
                detail={"reason": reason},
            )
        )

    def state(self, scanned: ScannedFile) -> tuple[bool, LoadedFile | None]:
        """(changed since the last sync?, its content when it had to be read)."""
        rec = self.records.get(scanned.path)
        if rec is not None and rec.size == scanned.size and rec.mtime_ns == scanned.mtime_ns:
            self.report.unchanged += 1
            return False, None
        loaded = self.files.load(scanned.path)
        self.report.read += 1
        if rec is not None and rec.sha256 == loaded.sha256:
            self.record(scanned, loaded.sha256, rec.story_id, rec.kind, rec.story_version)
            return False, loaded
        return True, loaded

    def record(
        self,
        scanned: ScannedFile,
        sha: str,
        story_id: str | None,
        kind: str | None,
        version: int | None,
    ) -> None:
        self.report.recorded += 1
        self.out.append(
            SyncRecord(scanned.path, story_id, kind, scanned.size, scanned.mtime_ns, sha, version)
        )

    def known_hashes(self, story_id: str, kind: ArtifactKind) -> set[str]:
        if self._hashes is None:
            self._hashes = {}
        key = (story_id, kind.value)
        if key not in self._hashes:
            found = self.store.artifact_hashes([story_id])
            for other in ArtifactKind:
                self._hashes[(story_id, other.value)] = found.get((story_id, other.value), set())
        return self._hashes[key]

    def problem(self, exc: StoryflowError, path: str | None, story_id: str) -> None:
        if exc.code in _CONCURRENT:
            # Another process changed the story while this sync worked on it: a worker's
            # projection moved a file the survey listed moments ago, another writer won the
            # compare-and-set (PostgreSQL), or a run leased the story. The next sync sees it.
            self.leave(story_id, path, _CONCURRENT[exc.code])
            return
        self.report.problems.append(Problem.from_error(exc, file=path, story=story_id))

    def leave(self, story_id: str, path: str | None, code: str) -> None:
        """Leave the story to the next sync (``Problem.left``), with one warning per story."""
        if story_id in self.left:
            return
        self.left.add(story_id)
        why = "a run holds it" if code == "STORY_LOCKED" else "it changed while sync worked on it"
        self.report.problems.append(Problem.left(story_id, path, code, why))

    # ---- one story ------------------------------------------------------------------------

    def reconcile(self, item: StoryItem) -> None:
        story = self.ctx.store.get_story(item.story_id)
        if story is None:
            return
        if story.id in self.leased:
            self.leave(story.id, item.folder.path if item.folder else None, "STORY_LOCKED")
            return
        new_artifacts, held = self._artifacts(item, story)
        if held:
            return
        if item.story_file is None:
            if self.apply(item, story, new_artifacts, None, {}, None, []):
                self.rendered.discard(story.id)
                self.render(item.epic, story.id, None, "the story file is missing")
            return
        scanned = item.story_file
        rec = self.records.get(scanned.path)
        version = self.versions.get(story.id, story.version)
        try:
            changed, loaded = self.state(scanned)
        except StoryflowError as exc:
            self.problem(exc, scanned.path, story.id)
            return
        if not changed:
            if new_artifacts:
                self.apply(item, story, new_artifacts, None, {}, None, [])
            elif rec is not None and rec.story_version != version:
                self.render(item.epic, story.id, scanned.path, "the database moved on")
            self.check_stage(item, story)
            return
        assert loaded is not None
        self._changed_story_file(item, story, scanned, loaded, new_artifacts)

    def _artifacts(
        self, item: StoryItem, story: Story
    ) -> tuple[list[tuple[ScannedFile, ArtifactKind]], bool]:
        """Artifact files changed since the last sync that the database does not know."""
        new: list[tuple[ScannedFile, ArtifactKind]] = []
        held = False
        for scanned, kind in item.artifacts:
            try:
                changed, loaded = self.state(scanned)
            except StoryflowError as exc:
                self.problem(exc, scanned.path, story.id)
                held = True
                continue
            if not changed:
                continue
            assert loaded is not None
            if loaded.sha256 in self.known_hashes(story.id, kind):
                self.record(scanned, loaded.sha256, story.id, kind.value, story.version)
                continue
            line = conflict_marker_line(loaded.text)
            if line is not None:
                self.report.problems.append(merge_conflict(scanned.path, line, story.id))
                held = True
                continue
            new.append((scanned, kind))
        layout = LAYOUTS[item.epic.layout]
        new.sort(key=lambda a: layout.written_order(a[1], a[0].name, story.id))
        return new, held

    def _changed_story_file(
        self,
        item: StoryItem,
        story: Story,
        scanned: ScannedFile,
        loaded: LoadedFile,
        new_artifacts: list[tuple[ScannedFile, ArtifactKind]],
    ) -> None:
        found = read_story(self.files, scanned.path, story.id, self.report, loaded)
        if found is None:
            return
        _, doc = found
        try:
            fields = editable_fields(doc.meta, doc.text, scanned.path)
            file_rows = log_rows(doc.agent_log, scanned.path)
        except StoryflowError as exc:
            self.problem(exc, scanned.path, story.id)
            return
        db_rows = self.ctx.store.log_rows(story.id)
        log = log_state(file_rows, db_rows)
        if log.tampered and self.prefer == "files":
            # The file's log is taken as the story's history: the story is rebuilt from its
            # folder (refused unless that log is one history the rules allow).
            from storyflow.services.sync_rebuild import rebuild_story

            rebuild_story(self, item, story, scanned.path, db_rows)
            return
        peer = None
        if log.appended:  # another clone's engine (or a person) extended the log
            try:
                peer = read_peer(
                    self.ctx,
                    self.files,
                    item.epic,
                    story,
                    doc,
                    fields,
                    file_rows,
                    db_rows,
                    item.artifacts,
                    scanned.path,
                    self.report,
                )
            except StoryflowError as exc:
                if exc.code == "ARTIFACT_FILE_MISSING" and self.prefer == "db":
                    self._keep_db_side(item, story, scanned.path, exc)
                    return
                self.problem(exc, scanned.path, story.id)
                return
            if peer is None:
                return
            taken = {s.path for s, _, _ in peer.registered}
            new_artifacts = [a for a in new_artifacts if a[0].path not in taken]
        # Compared with the story as the peer's rows leave it: what differs beyond them
        # is a hand edit.
        db_fields = story_fields(peer.story if peer else story)
        sides = decide(fields, db_fields, log, db_rows, self.base.get(story.id))
        conflicts = [
            Conflict(
                story=story.id,
                file=scanned.path,
                field=name,
                file_value=fields[name],
                db_value=db_fields[name],
                resolution=self.prefer,
            )
            for name in sides.conflicts
        ]
        if self.prefer is None and (conflicts or log.tampered):
            self.report.conflicts.extend(conflicts)
            if log.tampered:
                self.report.problems.append(
                    _log_edited(scanned.path, story.id, log.tampered, diverged=log.diverged)
                )
            return
        if self.prefer == "files":
            sides.file_side += sides.conflicts
        else:
            sides.db_side += sides.conflicts
        edits = {name: fields[name] for name in sides.file_side}
        added: list[Any] = []
        if not (log.behind or log.tampered or self.prefer == "db"):
            # the seed's "add to story's actual_measurements"; --prefer db reverts them
            replayed = peer.ledger if peer else []
            added = added_rows(self.ctx, story.id, doc.token_budget, scanned.path, replayed)
        mark = self.deferred.mark()
        if log.tampered:  # before the changes' projections, which then write the whole log
            self.deferred.later(lambda: self.files.reset_agent_log(scanned.path))
        reason = doc.meta.get("blocked_reason")
        if not self.apply(
            item, story, new_artifacts, peer, edits, reason, conflicts, added, scanned.path
        ):
            self.deferred.rollback_to(mark)
            return
        self.report.conflicts.extend(conflicts)
        current = self.ctx.store.get_story(story.id) or story
        reverted = [] if (log.behind or log.tampered) else engine_edits(doc.meta, current)
        if not (log.behind or log.tampered) and self._budget_edited(
            doc, current, item.epic, measurements_added=bool(added)
        ):
            reverted.append("the Token Budget")
        if log.tampered:
            self.report.problems.append(
                _log_edited(scanned.path, story.id, log.tampered, restored=True)
            )
        for key in reverted:
            self.report.problems.append(
                Problem(
                    code="PROJECTION_EDITED",
                    message=f"{scanned.path}: {key} is rendered by storyflow; the hand edit "
                    "was reverted",
                    hint=_BUDGET_HINT
                    if key == "the Token Budget"
                    else "change it through storyflow commands",
                    file=scanned.path,
                    story=story.id,
                    warning=True,
                )
            )
        if sides.db_side or log.tampered or reverted or log.behind:
            # A file behind the database (its log lacks the last rows: an older version
            # checked out, a merge that took the other side) is rendered even when no
            # field differs, or the rows would be missing until the next change.
            self.rendered.discard(story.id)  # render again, after everything queued so far
            why = "the database moved on" if log.behind and not sides.db_side else None
            self.render(item.epic, story.id, scanned.path, why or "the database's values win")
        elif not (edits or new_artifacts or added):
            # As rendered (by this engine, or by the peer whose rows were just replayed):
            # nothing to write back.
            self.record(scanned, loaded.sha256, story.id, ArtifactKind.STORY.value, current.version)
            self.base_updates[story.id] = {"rows": log.rows, "fields": fields}
        self.check_stage(item, current)

    def _keep_db_side(self, item: StoryItem, story: Story, path: str, exc: StoryflowError) -> None:
        """``--prefer db`` on rows that wait for an artifact file: the story file is
        re-rendered from the database, without the other clone's rows (nothing applied)."""
        self.deferred.later(lambda: self.files.reset_agent_log(path))
        self.rendered.discard(story.id)
        self.render(item.epic, story.id, path, "the database's side is kept")
        self.report.problems.append(
            Problem(
                code=exc.code,
                message=f"{path}: {exc.details['rows']}, but the story folder has no such "
                "file: --prefer db re-rendered the story file from the database, without "
                "the rows it did not have",
                hint="the rows stay in the other clone (its database and commits): once it "
                f"commits the file, take its story file again (git checkout COMMIT -- {path}) "
                "and sync",
                file=exc.details.get("file") or path,
                story=story.id,
                warning=True,
            )
        )

    def _budget_edited(
        self, doc: Any, story: Story, epic: Epic, *, measurements_added: bool = False
    ) -> bool:
        """Whether the file's Token Budget says other than the ledger and the epic's budgets
        render: its entries, or the keys derived from them (totals, limits, enforcement).
        After entries added by hand were logged, only the keys that do not follow them."""
        entries = self.ctx.store.ledger(story.id)
        if not measurements_added:
            try:
                in_file = ledger(story.id, doc.token_budget, self.ctx.config, "")
            except StoryflowError:
                return True
            if ledger_differs(in_file, entries):
                return True
        if doc.token_budget is None:
            return False
        budgets = effective_budgets(self.ctx, epic)
        expected = token_budget_block(budgets, story, epic, entries)
        found = doc.token_budget
        if measurements_added and isinstance(found, dict):
            derived = ("actual_measurements", "total_used", "cost_usd")
            expected = {k: v for k, v in expected.items() if k not in derived}
            found = {k: v for k, v in found.items() if k not in derived}
        return bool(budget_drift(found, expected))

    def apply(
        self,
        item: StoryItem,
        story: Story,
        new_artifacts: list[tuple[ScannedFile, ArtifactKind]],
        peer: PeerChanges | None,
        edits: dict[str, Any],
        blocked_reason: Any,
        resolved: list[Conflict],
        added: Sequence[Any] = (),
        path: str | None = None,
    ) -> bool:
        """Apply one story's file-side changes as a whole (one savepoint): first the rows
        another clone appended to its log, as it made them, then the hand edits through
        the rules (measurements ``added`` to the Token Budget before a status change, whose
        budget check counts them); False when one was refused (reported; nothing of the
        story applied)."""
        if not (new_artifacts or peer or edits or resolved or added):
            return True
        mark = self.deferred.mark()
        changes: list[Change] = []
        submitted: list[tuple[ScannedFile, ArtifactKind, str]] = []
        try:
            with self.ctx.store.savepoint():
                if peer is not None:
                    write_peer(self.ctx, item.epic, story, peer)
                    changes.append(_change("log_appended", None, story, item.epic, peer.summary()))
                for scanned, kind in new_artifacts:
                    result = artifacts.submit(
                        self.ctx, story.id, kind.value, self.files.root / scanned.path
                    )
                    changes.append(_change("submitted", scanned.path, story, item.epic, result))
                    submitted.append((scanned, kind, str(result["sha256"])))
                status = edits.pop("status", None)
                if edits:
                    stories.update_story(self.ctx, story.id, **update_args(edits))
                    changes.append(_change("updated", None, story, item.epic, {"fields": edits}))
                if added:
                    logged = log_added(self.ctx, story.id, list(added), path or story.id)
                    detail = {"measurements": logged}
                    changes.append(_change("tokens_logged", path, story, item.epic, detail))
                if status is not None:
                    reason = None
                    if status == Status.BLOCKED.value and blocked_reason is not None:
                        reason = str(blocked_reason).strip() or None
                    moved = transitions.move(self.ctx, story.id, status, reason=reason)
                    changes.append(_change("moved", None, story, item.epic, moved.to_json()))
                for conflict in resolved:
                    self.ctx.store.insert_event(
                        type="sync_conflict_resolved",
                        at=self.ctx.now(),
                        story_id=story.id,
                        epic=item.epic.prefix,
                        actor=self.ctx.actor,
                        payload=conflict.to_json(),
                    )
        except StoryflowError as exc:
            self.deferred.rollback_to(mark)
            path = item.story_file.path if item.story_file else None
            self.problem(exc, exc.details.get("file") or path, story.id)
            return False
        for change in changes:
            self.report.changes.append(change)
        for scanned, kind, sha in submitted:  # the file is the version just stored
            self.out.append(
                SyncRecord(
                    scanned.path, story.id, kind.value, scanned.size, scanned.mtime_ns, sha, None
                )
            )
        if peer is not None:
            self.out.extend(replay_records(peer, story.id))
        if any(c.action not in ("submitted", "log_appended") for c in changes) or new_artifacts:
            self.rendered.add(story.id)  # the services re-render it after the commit
        return True

    def check_stage(self, item: StoryItem, story: Story) -> None:
        """Stage is derived from status, never the reverse: a folder in the wrong stage
        folder is reported and moved to the one its status calls for."""
        if item.folder is None or not LAYOUTS[item.epic.layout].staged:
            return
        if story.id in self.rendered:
            return  # a projection is due anyway: it puts the folder where the status says
        expected = stage_for(story.status, story.blocked_from)
        if item.folder.stage == expected:
            return
        where = item.folder.stage or "the epic's root"
        self.report.problems.append(
            Problem(
                code="WRONG_STAGE_FOLDER",
                message=f"{item.folder.path} is in {where}, but {story.id} is "
                f"{story.status.value}: its folder belongs in {expected}/ (moved there)",
                hint="a story's stage follows its status; change the status with "
                "storyflow story move (or edit status: and sync)",
                file=item.folder.path,
                story=story.id,
                warning=True,
            )
        )
        self.render(item.epic, story.id, item.folder.path, "the folder is in the wrong stage")


_BUDGET_HINT = (
    "the Token Budget follows the ledger: record usage with storyflow token log ID PHASE "
    "(--input/--output, or --before/--after, --note), or add entries after its last one in "
    "actual_measurements, which sync logs; limits follow the epic's budgets"
)

# Errors that mean another process changed the story meanwhile -> the warning's code.
_CONCURRENT = {
    "FILE_NOT_FOUND": "VERSION_CONFLICT",
    "VERSION_CONFLICT": "VERSION_CONFLICT",
    "STORY_LOCKED": "STORY_LOCKED",
}


def _log_edited(
    path: str, story_id: str, what: list[str], restored: bool = False, diverged: bool = False
) -> Problem:
    if restored:
        return Problem(
            code="AGENT_LOG_EDITED",
            message=f"{path}: the Agent Log was re-rendered from the database ("
            + "; ".join(what)
            + ")",
            hint="the log is append-only: the database's rows are the record",
            file=path,
            story=story_id,
            warning=True,
        )
    if diverged:
        # Each clone's database holds its own rows: no order of the two sides extends both
        # databases' logs. The file decides: --prefer files rebuilds the story from it.
        return Problem(
            code="AGENT_LOG_EDITED",
            message=f"{path}: the Agent Log diverged from this database's ("
            + "; ".join(what)
            + f"): another clone changed {story_id} too (or rows were edited by hand)",
            hint="keep one side's story file (git checkout --ours or --theirs FILE), or both "
            "sides' rows in time order if they form one history; then storyflow sync "
            f"--prefer files rebuilds {story_id} from it, here and in the clone whose rows "
            "were dropped (redo their changes after: the story_rebuilt event in storyflow "
            "trace lists them). --prefer db instead re-renders this database's side",
            file=path,
            story=story_id,
        )
    return Problem(
        code="AGENT_LOG_EDITED",
        message=f"{path}: the Agent Log is append-only, but " + "; ".join(what),
        hint="undo the edit (git checkout -p FILE), re-render the log from the database "
        "(storyflow sync --prefer db), or rebuild the story from the file's log (storyflow "
        "sync --prefer files)",
        file=path,
        story=story_id,
    )


def _change(
    action: str, path: str | None, story: Story, epic: Epic, detail: dict[str, Any]
) -> Change:
    return Change(
        action=action,
        direction="files->db",
        story=story.id,
        epic=epic.prefix,
        file=path,
        detail=detail,
    )


__all__ = ["Session", "StoryItem"]

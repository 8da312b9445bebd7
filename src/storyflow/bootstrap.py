"""The one place that names concrete adapters: config -> connection -> store, files, clock."""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyflow import config as config_module
from storyflow.adapters.db.connection import connect, redact_url
from storyflow.adapters.db.migrate import HEAD_REVISION, ensure_schema, schema_revision
from storyflow.adapters.db.store import Store
from storyflow.adapters.files.atomic import write_atomic
from storyflow.adapters.files.story_files import StoryFiles
from storyflow.config import CONFIG_FILE, STATE_DIR, Config
from storyflow.domain.layouts import LayoutName
from storyflow.errors import InvalidInput, UsageError
from storyflow.services.context import Context
from storyflow.services.ports import PlanFilesPort

if TYPE_CHECKING:
    from storyflow.adapters.telemetry.jsonl import JsonlTracer
    from storyflow.services.agents import AgentPort
    from storyflow.services.docs import DocsDirectory
    from storyflow.services.hooks import GitRepository
    from storyflow.services.sync import SyncPorts
    from storyflow.services.sync_ports import SyncFilesPort


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_actor(config: Config, flag: str | None) -> str:
    if flag and flag.strip():
        return flag.strip()
    if config.actor:
        return config.actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "storyflow"


def load_config(
    *,
    cwd: Path | None = None,
    workspace: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    return config_module.load(cwd=cwd or Path.cwd(), workspace=workspace, env=env, flags=flags)


NEW_DATABASE = (
    "this command created a new, empty database ({where}); if the workspace has story "
    "files (a fresh clone), storyflow sync rebuilds the database from them"
)


def open_store(config: Config) -> Store:
    conn = connect(
        config.effective_database_url,
        config.root,
        reconnect_seconds=config.database_reconnect_seconds,
    )
    try:
        created = ensure_schema(conn, conn.url, config.state_dir)
    except BaseException:
        conn.close()
        raise
    return Store(conn, created=created)


def open_tracer(config: Config) -> JsonlTracer:
    """The workspace's JSONL trace (reading needs no database)."""
    from storyflow.adapters.telemetry.jsonl import JsonlTracer

    return JsonlTracer(config.state_dir)


def plan_files(config: Config) -> PlanFilesPort:
    """The reader (and index writer) of plan folders."""
    from storyflow.adapters.files.plan_parser import PlanFiles

    return PlanFiles(config.root, max_bytes=config.max_file_bytes)


def generated_docs(folder: Path) -> DocsDirectory:
    """The reference docs folder (storyflow docs, storyflow check)."""
    from storyflow.adapters.files.docs_dir import GeneratedDocs
    from storyflow.services.docs import MARKER

    return GeneratedDocs(folder, MARKER)


def git_repository(start: Path) -> GitRepository:
    """The git work tree ``start`` lies in (storyflow hooks install)."""
    from storyflow.adapters.vcs.git import GitRepository as Git

    return Git.find(start)


def agents(config: Config) -> Callable[[str], AgentPort]:
    """The agents of ``runs.agents`` by name (scripted, command, anthropic, openai), built
    once each; an API agent whose SDK is missing is refused here, before any run starts."""
    from storyflow.adapters.agents.api import ApiAgent
    from storyflow.adapters.agents.command import CommandAgent
    from storyflow.adapters.agents.scenario import load_scenario
    from storyflow.adapters.agents.scripted import ScriptedAgent
    from storyflow.run_settings import API_AGENT_TYPES  # not on the read commands' path

    settings = config.runs
    built: dict[str, AgentPort] = {}
    model_ids = {name: price.name or name for name, price in config.models.items()}
    for name, spec in settings.agents.items():
        if spec.type == "scripted":
            path = config.root / settings.scenario if settings.scenario else None
            built[name] = ScriptedAgent(load_scenario(path, max_bytes=config.max_file_bytes))
        elif spec.type in API_AGENT_TYPES:
            built[name] = ApiAgent(
                spec,
                state_dir=config.state_dir,
                prompts_dir=config.root / settings.prompts,
                model_ids=model_ids,
            )
        else:
            built[name] = CommandAgent(
                spec,
                state_dir=config.state_dir,
                prompts_dir=config.root / settings.prompts,
                model_ids=model_ids,
            )
    _check_agents(config, built)
    return built.__getitem__


def warm_run_imports() -> None:
    """Import now what a phase run imports on first use (the story file and artifact
    parsers, the schemas, the run store: ~0.1 s, more while every worker starts at once):
    a worker process calls it before its first claim."""
    import storyflow.adapters.db.run_store
    import storyflow.adapters.files.storydoc
    import storyflow.schemas.artifacts  # noqa: F401


def _check_agents(config: Config, built: Mapping[str, AgentPort]) -> None:
    """Refuse a run before it claims a story when a command agent it uses names no program
    that could start, or an API agent has no key, or no model for a phase it runs (unless
    epic or story assignments may name one)."""
    from storyflow.adapters.agents.api import ApiAgent
    from storyflow.adapters.agents.command import CommandAgent
    from storyflow.domain.assignments import phase_roles
    from storyflow.services.models import resolve_model

    scoped = bool(config.assignments.epics or config.assignments.stories)
    for phase, role in phase_roles().items():
        name = config.runs.agent_for(phase).name
        agent = built[name]
        if phase == "split":  # split runs no agent
            continue
        if isinstance(agent, CommandAgent):
            agent.check_startable(config.root)
        if not isinstance(agent, ApiAgent):
            continue
        agent.check_key()
        if not scoped and resolve_model(config, None, None, phase, role, name) is None:
            raise UsageError(
                f"agent {name} runs the {phase} phase, but no model is assigned to it",
                code="AGENT_SPAWN_FAILED",
                hint=f"set assignments.default (or assignments.phases.{phase}) in "
                "storyflow.yaml to a model of the catalogue (storyflow models show)",
                details={"agent": name, "phase": phase},
            )


def sync_files(config: Config) -> SyncFilesPort:
    """The workspace walker and readers of storyflow sync."""
    from storyflow.adapters.files.sync_io import SyncFiles

    return SyncFiles(config.root, max_bytes=config.max_file_bytes)


def sync_ports(ctx: Context, files: SyncFilesPort | None = None) -> SyncPorts:
    """What storyflow sync needs besides the context: the sync_files store (on the context's
    connection, so a sync is one transaction) and the workspace walker and readers (``files``
    when the command made them before opening the database)."""
    from storyflow.adapters.db.sync_store import SyncStore
    from storyflow.services.sync import SyncPorts

    store = ctx.store
    assert isinstance(store, Store)
    return SyncPorts(store=SyncStore(store.conn), files=files or sync_files(ctx.config))


STATE_IGNORE = "# local database and caches; the files in plans/ are the record\n*\n"


def keep_state_out_of_git(state: Path) -> None:
    """Give ``.storyflow/`` (this clone's database, locks, caches, traces) a ``.gitignore``
    that ignores everything in it, itself included. As it ignores itself no clone gets it
    from git, so every clone writes its own on its first command, be it ``init`` or
    ``sync``: otherwise a ``git add -A`` in a fresh clone commits its database, and a pull
    in another clone silently replaces that clone's database with it. A workspace this
    user cannot write keeps working without it."""
    ignore = state / ".gitignore"
    if ignore.exists():
        return
    with contextlib.suppress(OSError):
        state.mkdir(exist_ok=True)
        write_atomic(ignore, STATE_IGNORE)


# A machine whose clock is this far off the database server's is told so (it is corrected
# from CLOCK_TOLERANCE_SECONDS on: adapters/db/connection.py database_clock).
CLOCK_WARNING_SECONDS = 5.0


def open_context(
    config: Config,
    *,
    actor: str | None = None,
    clock: Any = utc_now,
    new_database_ok: bool = False,
) -> Context:
    """The services' context on the configured workspace and database. A database this
    opening creates is announced in a warning (a read would show nothing and not say why),
    unless the command is the one that fills it (``new_database_ok``: sync)."""
    if not os.access(config.root, os.R_OK | os.X_OK):
        raise InvalidInput(
            f"the workspace {config.root} cannot be read",
            code="WORKSPACE_UNREADABLE",
            hint="fix the directory's permissions",
        )
    store = open_store(config)
    keep_state_out_of_git(config.state_dir)
    from storyflow.adapters.telemetry.jsonl import JsonlTracer

    tracer = JsonlTracer(config.state_dir)
    store.event_sink = tracer.record
    if clock is utc_now and store.dialect == "postgresql":
        from storyflow.adapters.db.connection import database_clock

        clock = database_clock(store.conn)
    ctx = Context(
        config=config,
        store=store,
        files=StoryFiles(config.root, max_bytes=config.max_file_bytes),
        clock=clock,
        actor=default_actor(config, actor),
    )
    tracer.warn = ctx.warn  # best effort: written after the commit, the rows are the record
    if store.created and not new_database_ok:
        ctx.warn(NEW_DATABASE.format(where=_redact(config.effective_database_url)))
    offset = store.conn.clock_offset
    if abs(offset) >= CLOCK_WARNING_SECONDS:
        where = "behind" if offset > 0 else "ahead of"
        ctx.warn(
            f"this machine's clock is {abs(offset):,.0f} s {where} "
            "the database server's: storyflow times leases and stamps changes by the server's "
            "clock; set up time synchronisation (NTP) on this machine"
        )
    return ctx


def init_workspace(
    root: Path,
    *,
    database_url: str | None = None,
    layout: LayoutName = LayoutName.STAGED,
    timezone: str = "UTC",
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write storyflow.yaml and .storyflow/, and bring the database to the head revision.
    Safe to repeat: an existing storyflow.yaml is validated and kept."""
    root = root.resolve()
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="create it first")
    config_module.validate_timezone(timezone)
    path = root / CONFIG_FILE
    state = root / STATE_DIR
    undo = _Undo(state)
    try:
        created = not path.exists()
        if created:
            write_atomic(
                path,
                config_module.render_initial(
                    database_url=database_url, layout=layout, timezone=timezone
                ),
            )
            undo.files.append(path)
        state.mkdir(exist_ok=True)
        keep_state_out_of_git(state)
        flags = {"database_url": database_url} if database_url else None
        config = config_module.load(cwd=root, workspace=root, env=env, flags=flags)
        if not created and database_url and config.database_url != database_url:
            raise UsageError(
                f"{CONFIG_FILE} already exists with another database_url",
                code="WORKSPACE_EXISTS",
                hint=f"edit {CONFIG_FILE}, or set STORYFLOW_DATABASE_URL",
            )
        undo.database(config)
        store = open_store(config)
        try:
            revision = schema_revision(store.conn)
        finally:
            store.close()
    except BaseException:
        undo.run()
        raise
    return {
        "workspace": str(root),
        "config": CONFIG_FILE,
        "created": created,
        "new_database": store.created,
        "database": _redact(config.effective_database_url),
        "schema_revision": revision or HEAD_REVISION,
    }


class _Undo:
    """What a refused ``storyflow init`` created, removed again (and nothing else): the
    config file it wrote, the state folder (or, when it existed, the entries it added) and
    a SQLite database file it created."""

    def __init__(self, state: Path) -> None:
        self.files: list[Path] = []
        self.state = state
        self.state_entries = set(os.listdir(state)) if state.is_dir() else None
        self.db_files: list[Path] = []
        self.db_folder: Path | None = None  # the connector makes a missing parent folder

    def database(self, config: Config) -> None:
        """Note the SQLite files opening the database would create (outside the state
        folder: inside it, the folder's own entries cover them)."""
        from storyflow.adapters.db.connection import sqlite_path

        db = sqlite_path(config.effective_database_url, config.root)
        if db is None or db.parent == self.state:
            return
        if not db.parent.exists():
            self.db_folder = db.parent
        for suffix in ("", "-wal", "-shm", "-journal", "-lock"):
            candidate = db.with_name(db.name + suffix)
            if not os.path.lexists(candidate):
                self.db_files.append(candidate)

    def run(self) -> None:
        import shutil

        for file in [*self.files, *self.db_files]:
            file.unlink(missing_ok=True)
        if self.db_folder is not None:
            with contextlib.suppress(OSError):
                self.db_folder.rmdir()  # only when empty: then this init made it
        if self.state_entries is None:
            shutil.rmtree(self.state, ignore_errors=True)
            return
        try:
            added = set(os.listdir(self.state)) - self.state_entries
        except OSError:
            return
        for name in added:
            entry = self.state / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _redact(url: str) -> str:
    return redact_url(url)

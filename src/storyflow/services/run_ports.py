"""The port of runs and leases (implemented by adapters/db/run_store.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from storyflow.domain.statuses import Status

Row = dict[str, Any]


class RunStorePort(Protocol):
    # leases
    def candidates(
        self,
        *,
        now: datetime,
        statuses: Sequence[Status],
        epic: str | None,
        limit: int,
        skip: Collection[str] = (),
    ) -> list[Row]: ...
    def idle_state(
        self,
        *,
        now: datetime,
        statuses: Sequence[Status],
        epic: str | None,
        skip: Collection[str] = (),
    ) -> tuple[int, int]: ...
    def acquire(
        self, story_id: str, *, owner: str, phase: str | None, now: datetime, expires: datetime
    ) -> bool | None: ...
    def lease_row(self, story_id: str) -> Row | None: ...
    def expired(
        self, *, now: datetime, statuses: Sequence[Status], epic: str | None, limit: int
    ) -> list[Row]: ...
    def drop_expired(self, story_id: str, *, owner: str, now: datetime) -> bool: ...
    def heartbeat(self, story_id: str, *, owner: str, now: datetime, expires: datetime) -> bool: ...
    def holds(self, story_id: str, owner: str) -> bool: ...
    def set_lease_run(self, story_id: str, *, owner: str, run_id: str, phase: str) -> None: ...
    def release(self, story_id: str, *, owner: str) -> None: ...

    # runs
    def insert_run(
        self,
        *,
        run_id: str,
        story_id: str,
        phase: str,
        attempt: int,
        key: str,
        agent: str,
        model: str | None,
        worker: str,
        trace_id: str,
        started_at: datetime,
    ) -> bool: ...
    def runs_of(self, story_id: str, phase: str) -> list[Row]: ...
    def last_run(self, story_id: str) -> Row | None: ...
    def succeeded_once(self, story_id: str) -> bool: ...
    def runs_by_id(self, ids: Sequence[str]) -> list[Row]: ...
    def adopt_run(
        self,
        run_id: str,
        *,
        worker: str,
        agent: str,
        model: str | None,
        trace_id: str,
        now: datetime,
    ) -> bool: ...
    def finish_run(
        self,
        run_id: str,
        *,
        worker: str,
        status: str,
        verdict: str | None,
        outcome: dict[str, Any],
        model: str | None,
        error_code: str | None,
        error_message: str | None,
        now: datetime,
    ) -> bool: ...
    def abandon_running(self, story_id: str, *, keep: str, now: datetime, message: str) -> None: ...
    def last_statuses(self, story_id: str, limit: int) -> list[str]: ...
    def artifact_versions(self, story_id: str) -> dict[str, int]: ...
    def entries(self, story_id: str, status: Status) -> int: ...
    def entries_since_unblock(self, story_id: str, status: Status) -> int: ...
    def run_tokens(self, ids: Sequence[str]) -> dict[str, Row]: ...

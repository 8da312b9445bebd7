"""One command, one transaction: files are staged first, published only after the commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storyflow.services.context import Context
from storyflow.services.ports import PendingWritesPort


@contextmanager
def change(ctx: Context) -> Iterator[PendingWritesPort]:
    """Open a write transaction; new files written to the yielded object appear on disk only
    if the transaction commits, so a refused command leaves the workspace untouched."""
    pending = ctx.files.pending()
    try:
        with ctx.store.transaction():
            yield pending
    except BaseException:
        pending.discard()
        raise
    pending.publish()

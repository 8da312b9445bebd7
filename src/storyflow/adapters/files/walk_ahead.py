"""The no-op sync's folder digests, computed in a child process while this one connects.

On PostgreSQL a no-op ``storyflow sync`` spends ~100-150 ms importing the driver and
connecting, and ~300 ms (70,000 files) stat-ing the story folders; both are CPU-bound
Python, so a thread cannot overlap them (the GIL), a forked child can. The child walks the
epic roots the last idle sync indexed (``sync_scan.digest_epic``, the same function the
parent would call), pickles the digests into a pipe and exits; the parent takes them when
the no-op check asks for those roots. Whatever goes wrong in the child -- an error, a kill,
a garbled answer -- the parent just walks itself: the answer only saves time.

Only where ``os.fork`` exists and no other thread runs (forking a threaded process can copy
a held lock into the child).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
from collections.abc import Sequence

from storyflow.adapters.files import sync_scan
from storyflow.services.sync_ports import EpicDigests

# (epic root, staged layout, prefix) -> the digests of that root, as digest_epic returns them
Key = tuple[str, bool, str]
Answers = dict[Key, EpicDigests | None]


class WalkAhead:
    """One child process digesting epic roots; ``take`` its answers once, or ``discard``."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self._fd: int | None = fd

    @classmethod
    def start(cls, base: str, roots: Sequence[Key]) -> WalkAhead | None:
        """Fork the walker, or None where forking is not possible or not safe."""
        if not roots or not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return None
        if pid == 0:  # pragma: no cover - the child (coverage does not follow a fork)
            code = 1
            try:
                os.close(read_fd)
                answers: Answers = {
                    key: sync_scan.digest_epic(base, key[0], staged=key[1], prefixes=[key[2]])
                    for key in roots
                }
                with os.fdopen(write_fd, "wb") as out:
                    pickle.dump(answers, out, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)  # never the parent's atexit handlers, buffers or test runner
        os.close(write_fd)
        return cls(pid, read_fd)

    def take(self) -> Answers:
        """The child's answers ({} when it failed); waits for it to finish."""
        fd, self._fd = self._fd, None
        if fd is None:
            return {}
        try:
            with os.fdopen(fd, "rb") as source:
                data = source.read()
            _, status = os.waitpid(self.pid, 0)
            if status != 0 or not data:
                return {}
            answers = pickle.loads(data)  # our own child's bytes, through our own pipe
        except (OSError, EOFError, pickle.UnpicklingError):
            return {}
        return answers if isinstance(answers, dict) else {}

    def discard(self) -> None:
        """Stop the child if its answers were not taken (the check ended early)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)

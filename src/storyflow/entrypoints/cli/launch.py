"""The ``storyflow`` console script: the fast read path, else the Click command tree.

Click is imported only when the command line needs it (``fast.py`` serves the polled read
commands without it), and the process skips the 20-30 ms of interpreter teardown a
short-lived command does not need: the database is closed and output flushed first.
"""

from __future__ import annotations

import gc
import os
import sys


def _main() -> int:
    args = sys.argv[1:]
    if not os.environ.get("STORYFLOW_DEBUG"):
        from storyflow.entrypoints.cli import fast

        code = fast.handle(args)
        if code is not None:
            return code
    from storyflow.entrypoints.cli.main import main

    try:
        main(args)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def run() -> None:
    gc.disable()  # a CLI run allocates little and exits: collection is wasted work
    code = _main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)

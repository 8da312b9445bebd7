"""The command agent: any CLI (a coding agent in headless mode, a script) as an agent.

The argv comes from a template with ``{story}``, ``{phase}``, ``{model}``, ``{story_dir}``,
``{prompt_file}`` (and ``{reviewer}``, ``{run_id}``); no shell is involved. The prompt is
rendered from the phase's template and given on stdin (or only as ``{prompt_file}``). The
process runs in its own process group: a timeout, a hard budget or a shutdown kills the whole
group, and what is left of the group when the agent exits is ended too. On Linux the agent
dies with the worker (``PR_SET_PDEATHSIG``, set by a small launcher before it execs the
command): a worker killed with SIGKILL does not leave its agent working on while another
worker, taking the story over, runs the phase again. stdout goes to a file that is read as
it grows, so streamed usage (``stream-json``) is seen while the agent works; the final JSON
result gives usage and cost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from storyflow.adapters.agents.output import (
    StreamUsage,
    parse_output,
    plain_text,
    reviewer_result,
)
from storyflow.adapters.agents.prompts import PromptedAgent
from storyflow.errors import UsageError
from storyflow.services.agents import AgentFailure, AgentRequest, AgentResult, Monitor

POLL = 0.05  # seconds between looks at the process and its output
STRAGGLERS_GRACE = 1.0  # seconds the rest of the group gets after SIGTERM, once the agent exited
LAUNCH_FAILED = "storyflow-launch-failed: "
# Run by ``python -S -c LAUNCHER PARENT_PID MARK COMMAND…``: tie the process to the worker
# thread that starts it (SIGKILL when that thread, or the whole worker, dies), then become
# the agent's command; a command that cannot start is reported on stderr after MARK.
_LAUNCHER = """import ctypes, os, signal, sys
parent, mark = int(sys.argv[1]), sys.argv[2]
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != parent:  # the worker died before the line above took effect
    os._exit(1)
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as exc:
    sys.stderr.write(mark + (exc.strerror or str(exc)) + chr(10))
    os._exit(127)
"""
_TIED = sys.platform.startswith("linux")
GRACE = 2.0  # seconds between SIGTERM and SIGKILL of the process group
TAIL = 600  # characters of stderr quoted in an error


class CommandAgent(PromptedAgent):
    def _argv(self, request: AgentRequest, prompt_file: Path) -> list[str]:
        values = {
            "story": request.story_id,
            "phase": request.phase,
            "model": self.model_id(request),
            "story_dir": str(request.story_dir),
            "prompt_file": str(prompt_file),
            "reviewer": request.reviewer or "",
            "run_id": request.run_id,
        }
        return [part.format(**values) for part in self.spec.command]

    def _env(self, request: AgentRequest) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec.env)
        env.update(
            {
                "STORYFLOW_STORY": request.story_id,
                "STORYFLOW_PHASE": request.phase,
                "STORYFLOW_RUN_ID": request.run_id,
                "STORYFLOW_STORY_DIR": str(request.story_dir),
                "STORYFLOW_REVIEWER": request.reviewer or "",
                "STORYFLOW_MODEL": request.model or "",
            }
        )
        return env

    def check_startable(self, workspace: Path) -> None:
        """Refuse, before any story is claimed, a run whose command names no program that
        could start (every phase it runs would fail, and block its story, the same way)."""
        program = self.spec.command[0] if self.spec.command else ""
        if not program or "{" in program:
            return  # a placeholder: known only per run
        try:
            _check_startable(program, workspace, self.spec.env.get("PATH"))
        except OSError as exc:
            raise UsageError(
                f"agent {self.name}: cannot start {program!r}: {exc.strerror}",
                code="AGENT_SPAWN_FAILED",
                hint=f"install it (or put it on PATH), or fix runs.agents.{self.name}.command "
                "in storyflow.yaml",
                details={"agent": self.name, "command": program},
            ) from None

    def run(self, request: AgentRequest, monitor: Monitor) -> AgentResult:
        folder, suffix, prompt = self.prompt(request)
        prompt_file = folder / f"prompt{suffix}.md"
        prompt_file.write_text(prompt, encoding="utf-8")
        out_path, err_path = folder / f"stdout{suffix}.txt", folder / f"stderr{suffix}.txt"
        argv = self._argv(request, prompt_file)
        launched = (
            [sys.executable, "-S", "-c", _LAUNCHER, str(os.getpid()), LAUNCH_FAILED, *argv]
            if _TIED
            else argv
        )
        with (
            open(out_path, "wb") as out,
            open(err_path, "wb") as err,
            open(prompt_file, "rb")
            if self.spec.prompt == "stdin"
            else open(os.devnull, "rb") as stdin,
        ):
            try:
                if _TIED:
                    _check_startable(argv[0], request.workspace, self.spec.env.get("PATH"))
                proc = subprocess.Popen(
                    launched,
                    cwd=request.workspace,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    env=self._env(request),
                    start_new_session=True,  # its own process group, killed as a whole
                    close_fds=True,
                )
            except OSError as exc:
                raise AgentFailure(
                    "AGENT_SPAWN_FAILED", f"cannot start {argv[0]!r}: {exc.strerror or exc}"
                ) from exc
            try:
                stream = self._watch(proc, request, monitor, out_path)
            finally:
                _end_stragglers(proc.pid)
        stdout = out_path.read_text(encoding="utf-8", errors="replace")
        stderr = plain_text(err_path.read_text(encoding="utf-8", errors="replace"))[-TAIL:].strip()
        if proc.returncode == 127 and stderr.startswith(LAUNCH_FAILED):
            why = stderr.removeprefix(LAUNCH_FAILED).splitlines()[0]
            raise AgentFailure("AGENT_SPAWN_FAILED", f"cannot start {argv[0]!r}: {why}")
        parsed = parse_output(stdout)
        usage = parsed.usage if parsed is not None else stream.usage
        # calls seen while it streamed carry their times; a JSON document printed at the
        # end (a list of messages) gives them only now
        tools = stream.tools.calls if stream.tools.count or parsed is None else parsed.tool_calls
        monitor.usage(usage, final=True)
        if proc.returncode != 0:
            raise AgentFailure(
                "EXTERNAL_SERVICE_DOWN",
                f"{argv[0]} exited with status {proc.returncode}"
                + (f": {stderr}" if stderr else ""),
                usage=usage,
                tool_calls=tools,
            )
        if parsed is None:
            raise AgentFailure(
                "MALFORMED_OUTPUT",
                f"{argv[0]} printed no JSON result: {stdout.strip()[:200]!r}",
                usage=usage,
                tool_calls=tools,
            )
        if parsed.bad_figures:
            raise AgentFailure(
                "MALFORMED_OUTPUT",
                f"{argv[0]} reported figures that are no token count or cost: "
                + ", ".join(parsed.bad_figures)[:300],
                usage=usage,
                tool_calls=tools,
            )
        if parsed.is_error:
            raise AgentFailure(
                "EXTERNAL_SERVICE_DOWN",
                f"{argv[0]} reported an error: {plain_text(parsed.result[:300])}",
                usage=usage,
                tool_calls=tools,
            )
        if request.reviewer is None:
            return AgentResult(
                usage=usage,
                model=request.model,
                summary=plain_text(parsed.result[:500]),
                tool_calls=tools,
            )
        result = reviewer_result(
            request, parsed, where="the agent's result", summary=plain_text(parsed.result[:500])
        )
        return replace(result, tool_calls=tools)

    def _watch(
        self, proc: subprocess.Popen[bytes], request: AgentRequest, monitor: Monitor, out: Path
    ) -> StreamUsage:
        """Wait for the process, reading streamed usage; kill its group on timeout or when
        the monitor says stop."""
        started = time.monotonic()
        stream = StreamUsage(clock=lambda: time.monotonic() - started)
        deadline = started + request.timeout
        offset = 0
        while True:
            try:
                proc.wait(timeout=POLL)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            offset = self._read(out, offset, stream, monitor, proc, request.reviewer)
            if finished:
                return stream
            if time.monotonic() > deadline:
                _kill_group(proc)
                raise AgentFailure(
                    "AGENT_TIMEOUT",
                    f"{self.spec.command[0]} ran past its timeout of {request.timeout:g} s; "
                    "its process group was killed",
                    usage=stream.usage,
                    tool_calls=stream.tools.calls,
                )
            try:
                monitor.tick()
            except AgentFailure as stop:
                _kill_group(proc)
                stop.usage = stop.usage if stop.usage.total else stream.usage
                stop.tool_calls = stream.tools.calls
                raise

    @staticmethod
    def _read(
        out: Path,
        offset: int,
        stream: StreamUsage,
        monitor: Monitor,
        proc: subprocess.Popen[bytes],
        reviewer: str | None,
    ) -> int:
        """Feed what the agent printed since ``offset`` to ``stream``; tell the monitor its
        usage (which may stop it: its group is killed) and the tools it called."""
        try:
            with open(out, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return offset
        called = stream.tools.count
        if chunk and stream.feed(chunk.decode("utf-8", errors="replace")):
            try:
                monitor.usage(stream.usage)
            except AgentFailure as stop:
                _kill_group(proc)
                stop.usage = stream.usage
                stop.tool_calls = stream.tools.calls
                raise
        if stream.tools.count > called:
            for call in stream.tools.calls[called:]:
                monitor.tool(replace(call, reviewer=reviewer))
        return offset + len(chunk)


def _check_startable(command: str, cwd: Path, path: str | None = None) -> None:
    """Raise what exec would for ``command`` (through PATH -- ``path`` when the agent's env
    sets one --, or a path from ``cwd``) when it names no executable file: the launcher execs
    it in the child, too late to say."""
    if os.sep not in command:
        if shutil.which(command, path=path) is None:
            raise FileNotFoundError(2, "No such file or directory (not on PATH)")
        return
    path = command if os.path.isabs(command) else os.path.join(cwd, command)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file or directory")
    if not os.access(path, os.X_OK):
        raise PermissionError(13, "Permission denied (not executable)")


def _end_stragglers(pgid: int) -> None:
    """End what the agent left running in its process group (a forked child that would
    outlive the phase and write into the story folder later): SIGTERM, then SIGKILL after a
    grace period. Nothing left: one failed system call."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + STRAGGLERS_GRACE
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(POLL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period, reap the leader."""
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            if sig is signal.SIGTERM:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
            return
        except subprocess.TimeoutExpired:
            continue

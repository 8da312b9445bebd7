"""API agents: a model behind an LLM API as an agent, through the provider's SDK.

``anthropic`` talks to the Anthropic Messages API (``pip install 'storyflow[anthropic]'``),
``openai`` to any OpenAI-compatible Chat Completions API (``storyflow[openai]``; OpenAI, or a
local server through ``base_url``). A model behind an API can neither read nor write the
story folder, so the adapter does both for it:

- the prompt is the phase's template (the one command agents get), then the story folder's
  files as they are now, then the reply contract: each file the phase produces comes back
  as a fenced block whose opening line names it (`````file: NAME``);
- the reply's blocks are written into the story folder, under the names the layout expects
  and no other, and the engine collects, validates and submits them as it does any agent's
  files; a reviewer replies with its verdict instead (JSON, or a ``VERDICT:`` line).

The request streams. The engine's monitor keeps the lease alive while it does, sees the
usage as it arrives (a hard budget stops the reply) and a timeout or a shutdown closes the
stream. Errors follow the agent contract: no key or a refused request (400, 401, 403, 404,
422) is AGENT_SPAWN_FAILED; a lost connection, 429 or 5xx that outlasts the SDK's own
``max_retries`` is EXTERNAL_SERVICE_DOWN (retried by the run's policy); a reply without the
files, or cut at ``max_tokens``, is MALFORMED_OUTPUT. A missing SDK is refused when the
agents are built (EXTRA_MISSING). The prompt and the reply are kept in
``.storyflow/runs/<run id>/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyflow.adapters.agents.artifact_text import write_plain
from storyflow.adapters.agents.output import Parsed, reviewer_result
from storyflow.adapters.agents.prompts import PromptedAgent
from storyflow.domain.budgets import MAX_TOKENS
from storyflow.errors import UsageError
from storyflow.run_settings import AgentSpec
from storyflow.services.agents import AgentFailure, AgentRequest, AgentResult, Monitor, Usage

POLL = 0.05  # seconds between the monitor's ticks while the reply streams
DEFAULT_MAX_TOKENS = 16_000  # the reply's cap when the agent does not set max_tokens
FILE_MAX_BYTES = 64_000  # a story-folder file bigger than this is named, not quoted
FOLDER_MAX_BYTES = 256_000  # the most of the story folder one prompt quotes
_SDK = {"anthropic": "anthropic", "openai": "openai"}

SYSTEM = (
    "You are an agent of storyflow, a workflow engine that drives software stories through "
    "a gated lifecycle. You cannot read or write files: the files you need are quoted in the "
    "prompt, and storyflow writes the files you return. Follow the reply contract at the end "
    "of the prompt exactly."
)

# ````file: NAME ... ```` (three or more backticks or tildes; the closing fence matches)
_BLOCK = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?:[\w.+-]+[ \t]+)?file:[ \t]*(?P<name>[^\n]+?)[ \t]*\n"
    r"(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.M | re.S,
)
# a body that is itself one fenced block (```yaml ... ```), as models like to write it
_WRAPPED = re.compile(
    r"\A[ \t]*(`{3,}|~{3,})[\w.+-]*[ \t]*\n(?P<inner>.*?)\n?[ \t]*\1[ \t]*\n?\Z", re.S
)


def require_sdk(spec: AgentSpec) -> None:
    """Refuse, before any run starts, an API agent whose SDK is not installed."""
    module = _SDK[spec.type]
    if importlib.util.find_spec(module) is None:
        raise UsageError(
            f"runs.agents.{spec.name}: an agent of type {spec.type} needs the {module} package",
            code="EXTRA_MISSING",
            hint=f"pip install 'storyflow[{spec.type}]'",
            details={"missing": module, "agent": spec.name},
        )


@dataclass
class _Reply:
    """What the stream has delivered so far (written by the streaming thread)."""

    text: str = ""
    usage: Usage = field(default_factory=Usage)
    truncated: bool = False
    done: bool = False
    error: BaseException | None = None


class ApiAgent(PromptedAgent):
    def __init__(
        self,
        spec: AgentSpec,
        *,
        state_dir: Path,
        prompts_dir: Path,
        model_ids: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        require_sdk(spec)
        super().__init__(spec, state_dir=state_dir, prompts_dir=prompts_dir, model_ids=model_ids)
        self.environ = os.environ if environ is None else environ
        self._client: Any = None
        self._lock = threading.Lock()

    # ---- the run ----------------------------------------------------------------------------

    def run(self, request: AgentRequest, monitor: Monitor) -> AgentResult:
        model = self.model_id(request)
        if not model:
            raise AgentFailure(
                "AGENT_SPAWN_FAILED",
                f"agent {self.name}: no model assigned to the {request.phase} phase "
                "(set assignments.default, or one for the phase, in storyflow.yaml; "
                "storyflow models show lists them)",
            )
        folder, suffix, template = self.prompt(request)
        prompt = build_prompt(request, template)
        (folder / f"prompt{suffix}.md").write_text(prompt, encoding="utf-8")
        reply = self._stream(model, prompt, request, monitor, folder / f"reply{suffix}.md")
        usage = reply.usage
        if request.reviewer is not None:
            parsed = Parsed(usage=usage, result=reply.text)
            return reviewer_result(request, parsed, where="the reply", summary=_summary(reply.text))
        missing = write_files(request, reply.text)
        if missing:
            cut = ""
            if reply.truncated:
                limit = self._max_tokens()
                cut = (
                    f" (the reply was cut at max_tokens {limit})"
                    if limit
                    else (" (the reply was cut at the model's length limit)")
                )
            raise AgentFailure(
                "MALFORMED_OUTPUT",
                f"the reply has no ````file: block for {', '.join(missing)}{cut}",
                usage=usage,
            )
        return AgentResult(usage=usage, model=request.model, summary=_summary(reply.text))

    def _max_tokens(self) -> int | None:
        """The reply's cap: Anthropic requires one; an OpenAI-compatible API gets one only
        when the agent sets it (as ``max_completion_tokens``)."""
        if self.spec.type == "anthropic":
            return self.spec.max_tokens or DEFAULT_MAX_TOKENS
        return self.spec.max_tokens

    def check_key(self) -> None:
        """Refuse, before any story is claimed, a run whose API key is not set."""
        if not self.environ.get(self.spec.api_key_env or ""):
            raise UsageError(
                f"agent {self.name}: no API key in ${self.spec.api_key_env}",
                code="AGENT_SPAWN_FAILED",
                hint=f"export {self.spec.api_key_env}=..., or name the variable that holds the "
                f"key in runs.agents.{self.name}.api_key_env",
                details={"agent": self.name, "variable": self.spec.api_key_env},
            )

    def _connect(self) -> Any:
        """The SDK client, made on first use (importing an SDK takes a while)."""
        with self._lock:
            if self._client is not None:
                return self._client
            variable = self.spec.api_key_env or ""
            key = self.environ.get(variable, "")
            if not key:
                raise AgentFailure(
                    "AGENT_SPAWN_FAILED",
                    f"agent {self.name}: no API key in ${variable} "
                    f"(set it, or name another variable in runs.agents.{self.name}.api_key_env)",
                )
            # The SDK retries a 429, a 5xx or a lost connection itself (with backoff, and
            # retry-after when the API sends one) before the run fails with
            # EXTERNAL_SERVICE_DOWN and the run's own retry policy takes over.
            options: dict[str, Any] = {"api_key": key, "max_retries": self.spec.max_retries}
            if self.spec.base_url:
                options["base_url"] = self.spec.base_url
            if self.spec.type == "anthropic":
                import anthropic

                self._client = anthropic.Anthropic(**options)
            else:
                import openai

                self._client = openai.OpenAI(**options)
            return self._client

    def _stream(
        self,
        model: str,
        prompt: str,
        request: AgentRequest,
        monitor: Monitor,
        kept: Path,
    ) -> _Reply:
        """Stream the reply in a thread; tick the monitor here until it is done, and close
        the stream when the timeout passes or the monitor says stop. The reply, whole or as
        far as it came, is kept in ``kept``."""
        reply = _Reply()
        try:
            self._receive(reply, model, prompt, request, monitor)
            return reply
        finally:
            kept.write_text(reply.text, encoding="utf-8")

    def _receive(
        self,
        reply: _Reply,
        model: str,
        prompt: str,
        request: AgentRequest,
        monitor: Monitor,
    ) -> None:
        cancel = threading.Event()
        opened: list[Any] = []  # the SDK's stream, once open, so that it can be closed
        events = _anthropic_events if self.spec.type == "anthropic" else _openai_events

        def body() -> None:
            try:
                # the SDK's first import and the client are made here too, while the run's
                # thread keeps the lease alive (an import can take longer than a short lease)
                client = self._connect()
                for text, usage, truncated in events(
                    client, model, prompt, self._max_tokens(), request.timeout, opened
                ):
                    if cancel.is_set():
                        return
                    reply.text += text
                    reply.usage = usage or reply.usage
                    reply.truncated = reply.truncated or truncated
            except BaseException as exc:  # handed to the run's thread below
                reply.error = exc
            finally:
                reply.done = True

        thread = threading.Thread(target=body, name=f"storyflow-api-{request.run_id}", daemon=True)
        deadline = time.monotonic() + request.timeout
        thread.start()
        seen = Usage()
        try:
            while not reply.done:
                thread.join(POLL)
                if reply.usage != seen:
                    seen = reply.usage
                    monitor.usage(seen)
                if reply.done:
                    break
                if time.monotonic() > deadline:
                    where = self.spec.base_url or f"the {self.spec.type} API"
                    raise AgentFailure(
                        "AGENT_TIMEOUT",
                        f"{where} timed out: no complete reply within {request.timeout:g} s; "
                        "the request was closed",
                        usage=reply.usage,
                    )
                monitor.tick()
        except BaseException as stop:  # a stop, a timeout, an interrupt: close the stream
            cancel.set()
            _close(opened)
            if isinstance(stop, AgentFailure) and not stop.usage.total:
                stop.usage = reply.usage
            raise
        if isinstance(reply.error, AgentFailure):  # no key: _connect says so itself
            raise reply.error
        if reply.error is not None:
            raise _failure(self.spec, reply.error, reply.usage) from reply.error
        monitor.usage(reply.usage, final=True)


# ---- the prompt and the reply ---------------------------------------------------------------


def expected_files(request: AgentRequest) -> dict[str, Path]:
    """File name -> where it goes: the phase's artifacts, or the story file itself."""
    if request.writes_story:
        return {request.story_file.name: request.story_file}
    return {path.name: path for path in request.artifact_files.values()}


def build_prompt(request: AgentRequest, template: str) -> str:
    """The phase's prompt, the story folder's files and the reply contract."""
    parts = [template.rstrip(), "", "## The story folder as it is now", ""]
    parts += _folder_files(request)
    parts += ["", "## Reply contract", ""]
    parts.append(
        f"This is the {request.phase} phase of {request.story_id} "
        f"(iteration {request.iteration}, attempt {request.attempt})."
    )
    if request.reviewer is not None:
        parts.append(
            f"You are the {request.reviewer} reviewer: reply with the JSON object the prompt "
            "describes (verdict, findings, coverage) and nothing else. Do not return files."
        )
        return "\n".join(parts) + "\n"
    files = expected_files(request)
    parts.append(
        "storyflow writes the files for you. Reply with the complete content of each file "
        "below in a fenced block opened by four backticks and `file:` with its name, and "
        "closed by four backticks, then one paragraph that sums up what you did:"
    )
    parts.append("")
    for name in files:
        parts += [f"````file: {name}", "(the whole file)", "````"]
    if request.writes_story:
        parts += [
            "",
            "Return the whole story file: keep its front matter, its Token Budget and its "
            "Agent Log exactly as they are (storyflow owns them) and change only the parts "
            "the prompt asks for.",
        ]
    return "\n".join(parts) + "\n"


def _folder_files(request: AgentRequest) -> list[str]:
    """The story file first, then the other files of the story folder, each quoted whole
    (four-backtick fences) up to the size limits."""
    folder = request.story_dir
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.is_file() and not entry.name.startswith(".")
        )
    except OSError:
        names = []
    story = request.story_file.name
    ordered = [story] + [n for n in names if n != story] if story in names else names
    lines: list[str] = []
    budget = FOLDER_MAX_BYTES
    for name in ordered:
        try:
            data = (folder / name).read_bytes()
        except OSError:
            continue
        if len(data) > min(FILE_MAX_BYTES, budget):
            lines += [f"- {name}: {len(data):,} bytes, too big to quote here", ""]
            continue
        budget -= len(data)
        text = data.decode("utf-8", errors="replace")
        lines += [f"````file: {name}", text.rstrip("\n"), "````", ""]
    return lines or ["(the folder is empty)"]


def write_files(request: AgentRequest, text: str) -> list[str]:
    """Write the reply's blocks for the expected files (the last block of a name wins; any
    other name is ignored, so a reply cannot write outside the story folder); returns the
    names the reply did not have."""
    files = expected_files(request)
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(text):
        name = match.group("name").strip().strip("`'\"")
        if name in files:
            body = match.group("body")
            wrapped = _WRAPPED.match(body)
            found[name] = wrapped.group("inner") if wrapped else body
    for name, body in found.items():
        write_plain(files[name], body if body.endswith("\n") else body + "\n")
    return [name for name in files if name not in found]


def _summary(text: str) -> str:
    outside = _BLOCK.sub("", text).strip()
    return outside[:500]


# ---- the two SDKs ---------------------------------------------------------------------------

Events = Iterator[tuple[str, Usage | None, bool]]  # (text, usage so far, truncated)


def _tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        return 0
    return value


def _anthropic_events(
    client: Any, model: str, prompt: str, max_tokens: int | None, timeout: float, opened: list[Any]
) -> Events:
    stream = client.messages.create(
        model=model,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        system=SYSTEM,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        timeout=timeout,
    )
    opened.append(stream)
    counts = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}

    def take(raw: Any) -> Usage:
        for name, attribute in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
        ):
            value = _tokens(getattr(raw, attribute, None))
            if value:
                counts[name] = value  # cumulative counts: the latest wins
        return Usage(
            input_tokens=counts["input"],
            output_tokens=counts["output"],
            cache_read_tokens=counts["cache_read"],
            cache_write_tokens=counts["cache_write"],
        )

    with stream:
        for event in stream:
            kind = getattr(event, "type", "")
            if kind == "message_start":
                yield "", take(getattr(event.message, "usage", None)), False
            elif kind == "content_block_delta":
                text = getattr(event.delta, "text", None)
                if isinstance(text, str):
                    yield text, None, False
            elif kind == "message_delta":
                cut = getattr(event.delta, "stop_reason", None) == "max_tokens"
                yield "", take(getattr(event, "usage", None)), cut


def _openai_events(
    client: Any, model: str, prompt: str, max_tokens: int | None, timeout: float, opened: list[Any]
) -> Events:
    cap = {} if max_tokens is None else {"max_completion_tokens": max_tokens}
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
        timeout=timeout,
        **cap,
    )
    opened.append(stream)
    with stream:
        for chunk in stream:
            for choice in getattr(chunk, "choices", None) or []:
                text = getattr(choice.delta, "content", None)
                cut = getattr(choice, "finish_reason", None) == "length"
                if text or cut:
                    yield text or "", None, cut
            raw = getattr(chunk, "usage", None)
            if raw is not None:
                prompt_tokens = _tokens(getattr(raw, "prompt_tokens", None))
                details = getattr(raw, "prompt_tokens_details", None)
                cached = min(_tokens(getattr(details, "cached_tokens", None)), prompt_tokens)
                usage = Usage(
                    input_tokens=prompt_tokens - cached,  # prompt_tokens counts the cached ones
                    output_tokens=_tokens(getattr(raw, "completion_tokens", None)),
                    cache_read_tokens=cached,
                )
                yield "", usage, False


def _close(opened: list[Any]) -> None:
    for stream in opened:
        with contextlib.suppress(Exception):  # a broken stream may fail to close; it is gone
            stream.close()


# ---- errors ---------------------------------------------------------------------------------

_REFUSED = {400, 401, 403, 404, 422}  # the request as configured cannot succeed: no retry


def _failure(spec: AgentSpec, exc: BaseException, usage: Usage) -> AgentFailure:
    """The agent contract's failure for what the SDK raised."""
    where = spec.base_url or f"the {spec.type} API"
    status = getattr(exc, "status_code", None)
    message = _message(exc)
    name = type(exc).__name__
    if "Timeout" in name:
        return AgentFailure("AGENT_TIMEOUT", f"{where} timed out: {message}", usage=usage)
    if isinstance(status, int) and status in _REFUSED:
        hint = {
            401: f"check the key in ${spec.api_key_env}",
            403: f"check the key in ${spec.api_key_env} and its permissions",
            404: "check the model's name in the catalogue (models:) and base_url",
        }.get(status, "check the model and the agent's settings")
        return AgentFailure(
            "AGENT_SPAWN_FAILED",
            f"{where} refused the request ({status}): {message}; {hint}",
            usage=usage,
        )
    if isinstance(status, int):
        return AgentFailure(
            "EXTERNAL_SERVICE_DOWN", f"{where} answered {status}: {message}", usage=usage
        )
    if "Connection" in name or isinstance(exc, OSError):
        return AgentFailure(
            "EXTERNAL_SERVICE_DOWN", f"cannot reach {where}: {message}", usage=usage
        )
    return AgentFailure("EXTERNAL_SERVICE_DOWN", f"{where} failed: {name}: {message}", usage=usage)


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    return (str(exc) or type(exc).__name__)[:300]

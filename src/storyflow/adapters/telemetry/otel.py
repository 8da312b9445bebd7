"""OpenTelemetry export of the trace (the optional extra: ``pip install 'storyflow[otel]'``).

``to_spans`` maps trace lines to plain span records, with no OpenTelemetry import (it is
what the tests check); ``export`` builds SDK spans from them and sends them over OTLP/HTTP.

Mapping: the lines that share a span id are one span (a phase run: phase_start ...
phase_complete, named "phase review"; an agent call: agent_spawn ... agent_complete, "agent
review"), from the first line to the last, or for ``duration_ms`` before the last if that
is earlier; any other line is a span of its own, named by its type (and phase), an instant
unless it reports a duration. Trace ids, span ids and parent span ids are the lines'.
``error`` lines and failed phases have status ERROR. Payload fields become ``storyflow.*``
attributes (nested token counts flattened: ``storyflow.tokens.input``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storyflow.errors import UsageError

SERVICE_NAME = "storyflow"
_TOP = ("ts", "type", "trace_id", "span_id", "parent_span_id")
AttributeValue = str | bool | int | float
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, kw_only=True)
class SpanRecord:
    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_ns: int
    end_ns: int
    error: bool
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


def _hex_id(value: Any, digits: int) -> int | None:
    if not isinstance(value, str) or len(value) != digits:
        return None
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return number or None  # an all-zero id is invalid in OpenTelemetry


def _flatten(prefix: str, value: Any, out: dict[str, AttributeValue]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)
    elif isinstance(value, bool | int | float | str):
        out[prefix] = value
    else:  # lists and the rest: as their JSON-ish text
        out[prefix] = str(value)


def to_spans(lines: Iterable[Mapping[str, Any]]) -> list[SpanRecord]:
    """Trace lines (parsed JSON) as span records; lines without valid ids are skipped.
    Lines that share a span id (phase_start and its phase_complete, agent_spawn and its
    agent_complete) are one span from the first to the last."""
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for line in lines:
        trace_id = _hex_id(line.get("trace_id"), 32)
        span_id = _hex_id(line.get("span_id"), 16)
        if trace_id is None or span_id is None or "ts" not in line:
            continue
        groups.setdefault((trace_id, span_id), []).append(line)
    return [_span(trace_id, span_id, group) for (trace_id, span_id), group in groups.items()]


def _ns(line: Mapping[str, Any]) -> int:
    return (datetime.fromisoformat(str(line["ts"])) - EPOCH) // MICROSECOND * 1000


def _span(trace_id: int, span_id: int, group: list[Mapping[str, Any]]) -> SpanRecord:
    end = max(_ns(line) for line in group)
    start = min(_ns(line) for line in group)
    last = group[-1]
    duration = last.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0:
        start = min(start, _ns(last) - int(duration * 1_000_000))
    attributes: dict[str, AttributeValue] = {}
    for line in group:  # later lines win: the completion's figures
        for key, value in line.items():
            if key not in _TOP:
                _flatten(f"storyflow.{key}", value, attributes)
    kinds = [str(line.get("type", "event")) for line in group]
    if len(group) > 1:
        attributes["storyflow.events"] = ",".join(kinds)
    # phase_start + phase_complete -> "phase"; a lone line keeps its type
    kind = kinds[0].split("_")[0] if len(set(kinds)) > 1 else kinds[0]
    phase = last.get("phase")
    parent = next((p for line in group if (p := _hex_id(line.get("parent_span_id"), 16))), None)
    return SpanRecord(
        name=f"{kind} {phase}" if phase else kind,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        start_ns=start,
        end_ns=end,
        error="error" in kinds or last.get("status") == "failed" or last.get("ok") is False,
        attributes=attributes,
    )


def export(lines: Iterable[Mapping[str, Any]], endpoint: str, *, timeout: float = 10.0) -> int:
    """Send the lines as spans to an OTLP/HTTP traces endpoint; return how many were sent."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import SpanExportResult
        from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
    except ImportError as exc:
        raise UsageError(
            "exporting to OpenTelemetry needs the otel extra",
            code="EXTRA_MISSING",
            hint="pip install 'storyflow[otel]'",
            details={"missing": exc.name or "opentelemetry"},
        ) from exc
    resource = Resource.create({"service.name": SERVICE_NAME})
    flags = TraceFlags(TraceFlags.SAMPLED)

    def context(trace_id: int, span_id: int) -> Any:
        return SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False, trace_flags=flags)

    spans = [
        ReadableSpan(
            name=record.name,
            context=context(record.trace_id, record.span_id),
            parent=(
                context(record.trace_id, record.parent_span_id)
                if record.parent_span_id is not None
                else None
            ),
            resource=resource,
            attributes=record.attributes,
            start_time=record.start_ns,
            end_time=record.end_ns,
            status=Status(StatusCode.ERROR if record.error else StatusCode.UNSET),
        )
        for record in to_spans(lines)
    ]
    if not spans:
        return 0
    exporter: Any = OTLPSpanExporter(endpoint=endpoint, timeout=int(timeout))
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        raise UsageError(
            f"the OTLP endpoint {endpoint} did not accept the spans",
            code="EXPORT_FAILED",
            hint="check the URL (e.g. http://localhost:4318/v1/traces) and the collector's log",
            details={"endpoint": endpoint, "spans": len(spans)},
        )
    return len(spans)

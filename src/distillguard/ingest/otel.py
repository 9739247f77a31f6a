"""Read OpenTelemetry GenAI spans exported as OTLP/JSON and map them onto ``exchanges`` rows.

Input is either one ``ExportTraceServiceRequest`` JSON document (possibly pretty-printed) or JSON
Lines of such documents, as the OpenTelemetry Collector ``file`` exporter writes them; either may be
gzip-compressed (detected by its magic bytes, whatever the file is called). JSON Lines are streamed one
document at a time; a single document is loaded whole.

Each GenAI span becomes one :class:`~distillguard.ingest.records.RawRecord` whose ``value`` uses the
contract's ``exchanges`` field names. Fields whose source attribute is absent are left out of the
dict (not set to ``None``), so the ingest validator reports a missing required field by name. Values
are converted from OTLP ``AnyValue`` to JSON-native Python values and otherwise passed through as
found: type checks are the validator's job. Spans that are not GenAI model requests yield nothing,
but still use up a row number, so ``row`` is always the span's 1-based position in the file.

The attribute-to-field mapping, with its precedence rules and extensions, is documented in
``docs/otel.md``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from distillguard.ingest.records import RawRecord

__all__ = ["any_value", "is_genai_span", "iter_otlp_exchanges", "map_span"]

# Where each field comes from, first match wins; deprecated semconv names come after current ones.
ACCOUNT_KEYS = ("distillguard.account.id", "user.id", "enduser.id")
API_KEY_KEYS = ("distillguard.api_key.id", "api_key.id")
CLIENT_IP_KEYS = ("client.address", "http.client_ip")
ASN_KEYS = ("client.as.number", "network.peer.asn")
USER_AGENT_KEYS = ("user_agent.original", "http.user_agent")
MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model")
INPUT_TOKENS_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
STATUS_KEYS = ("http.response.status_code", "http.status_code")
THINKING_FLAG_KEY = "distillguard.request.thinking"
REASONING_EFFORT_KEY = "gen_ai.request.reasoning_effort"
# Content attributes that may sit on the span or on one of its events
# (e.g. ``gen_ai.client.inference.operation.details``).
INPUT_MESSAGES_KEY = "gen_ai.input.messages"
SYSTEM_KEY = "gen_ai.system_instructions"
TOOLS_KEY = "gen_ai.tool.definitions"
CONTENT_KEYS = (INPUT_MESSAGES_KEY, SYSTEM_KEY, TOOLS_KEY)

#: ``gen_ai.operation.name`` values that are not a request to a model (skipped unless the span
#: also names a ``gen_ai.request.model``).
NON_REQUEST_OPERATIONS = frozenset({"execute_tool", "create_agent"})

_STATUS_CODES = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
}
_GZIP_MAGIC = b"\x1f\x8b"
_RAW_MAX = 65_536


class _NotOtlp(ValueError):
    """A document that is JSON but not an OTLP trace export."""


# --------------------------------------------------------------------------- reading


def iter_otlp_exchanges(path: Path) -> Iterator[RawRecord]:
    """Yield one :class:`RawRecord` per GenAI span in the OTLP/JSON export at ``path``.

    ``row`` is the 1-based index of the span in the file, counted across documents and including
    skipped non-GenAI spans; a document that cannot be read takes one row of its own and yields a
    record with ``value=None`` and ``error=(None, "not valid OTLP JSON: ...")``. ``raw`` is the span
    as compact JSON.
    """
    row = 0
    for data, doc, err in _iter_documents(Path(path)):
        if err is None:
            try:
                spans = list(_iter_spans(doc))
            except _NotOtlp as exc:
                err = str(exc)
        if err is not None:
            row += 1
            raw = data[:_RAW_MAX].decode("utf-8", errors="replace")
            yield RawRecord(row=row, raw=raw, value=None, error=(None, f"not valid OTLP JSON: {err}"))
            continue
        for resource_attrs, span in spans:
            row += 1
            if not isinstance(span, dict):
                yield RawRecord(
                    row=row,
                    raw=_compact(span),
                    value=None,
                    error=(None, "not valid OTLP JSON: span is not an object"),
                )
                continue
            attrs = _attributes(span.get("attributes"))
            if not is_genai_span(attrs):
                continue
            yield RawRecord(row=row, raw=_compact(span), value=map_span(span, resource_attrs, attrs))


@contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading bytes, through gzip when it starts with the gzip magic bytes."""
    with path.open("rb") as fh:
        if fh.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                yield gz
        else:
            yield fh


def _iter_documents(path: Path) -> Iterator[tuple[bytes, Any, str | None]]:
    """Yield ``(raw bytes, parsed document or None, error or None)`` per document.

    JSON Lines is chosen when the first non-blank line, or failing that the second, is a JSON object
    on its own (the first may be a broken record); otherwise the file is one document.
    """
    with _open(path) as fh:
        lines = _nonblank(fh)
        head: list[bytes] = []
        jsonl = False
        for line in lines:
            head.append(line)
            if _parses(line):
                jsonl = True
                break
            if len(head) == 2:
                break
        if jsonl:
            for line in _chain(head, lines):
                yield _parse(line)
            return
        # One (pretty-printed) document: read the rest and parse it whole.
        data = b"".join(head) + fh.read() if head else fh.read()
    if data.strip():
        yield _parse(data)


def _nonblank(fh: IO[bytes]) -> Iterator[bytes]:
    for line in fh:
        if line.strip():
            yield line


def _chain(head: list[bytes], rest: Iterable[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest


def _parses(line: bytes) -> bool:
    """True when ``line`` on its own is a JSON object (never true of a pretty-printed document's lines)."""
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _parse(data: bytes) -> tuple[bytes, Any, str | None]:
    data = data.strip()
    try:
        return data, orjson.loads(data), None
    except orjson.JSONDecodeError as exc:
        return data, None, str(exc)


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """OTLP/JSON uses lowerCamelCase keys; protobuf JSON parsers also accept the proto names."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _iter_spans(doc: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yield ``(resource + scope attributes, span)`` for each span of an ExportTraceServiceRequest."""
    if not isinstance(doc, dict):
        raise _NotOtlp(f"expected an ExportTraceServiceRequest object, got {type(doc).__name__}")
    resource_spans = _get(doc, "resourceSpans", "resource_spans")
    if resource_spans is None:
        for other in ("resourceMetrics", "resourceLogs", "resource_metrics", "resource_logs"):
            if other in doc:
                raise _NotOtlp(f"not a trace export (found {other!r})")
        if doc:
            raise _NotOtlp("no 'resourceSpans' in document")
        return
    if not isinstance(resource_spans, list):
        raise _NotOtlp("'resourceSpans' is not an array")
    for rs in resource_spans:
        if not isinstance(rs, dict):
            raise _NotOtlp("resourceSpans entry is not an object")
        resource = rs.get("resource") or {}
        resource_attrs = _attributes(resource.get("attributes") if isinstance(resource, dict) else None)
        scope_spans = _get(rs, "scopeSpans", "scope_spans")
        if scope_spans is None:  # pre-1.0 OTLP name
            scope_spans = _get(rs, "instrumentationLibrarySpans", "instrumentation_library_spans")
        if not isinstance(scope_spans, list):
            if scope_spans is None:
                continue
            raise _NotOtlp("'scopeSpans' is not an array")
        for ss in scope_spans:
            if not isinstance(ss, dict):
                raise _NotOtlp("scopeSpans entry is not an object")
            scope = ss.get("scope") or {}
            scope_attrs = _attributes(scope.get("attributes") if isinstance(scope, dict) else None)
            outer = {**resource_attrs, **scope_attrs}
            spans = ss.get("spans") or []
            if not isinstance(spans, list):
                raise _NotOtlp("'spans' is not an array")
            for span in spans:
                yield outer, span


def _compact(obj: Any) -> str:
    return orjson.dumps(obj).decode("utf-8")


# --------------------------------------------------------------------------- AnyValue


def any_value(value: Any) -> Any:
    """Convert an OTLP/JSON ``AnyValue`` to a plain Python value (``intValue`` strings to ``int``)."""
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "string_value"):
        if key in value:
            return value[key]
    for key in ("intValue", "int_value"):
        if key in value:
            return _to_int(value[key])
    for key in ("doubleValue", "double_value"):
        if key in value:
            return value[key]
    for key in ("boolValue", "bool_value"):
        if key in value:
            return value[key]
    for key in ("arrayValue", "array_value"):
        if key in value:
            inner = value[key] or {}
            return [any_value(v) for v in (inner.get("values") or [])]
    for key in ("kvlistValue", "kvlist_value"):
        if key in value:
            inner = value[key] or {}
            return _attributes(inner.get("values"))
    for key in ("bytesValue", "bytes_value"):
        if key in value:
            return value[key]  # base64 text, kept as is
    return None


def _attributes(kvs: Any) -> dict[str, Any]:
    """``[{"key": k, "value": AnyValue}, ...]`` to ``{k: value}``; malformed entries are ignored."""
    out: dict[str, Any] = {}
    if not isinstance(kvs, list):
        return out
    for kv in kvs:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = any_value(kv.get("value"))
    return out


def _to_int(value: Any) -> Any:
    """``"123"`` or ``123`` to ``123``; anything else is passed through for the validator to judge."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


# --------------------------------------------------------------------------- mapping


def is_genai_span(attrs: dict[str, Any]) -> bool:
    """A span is a GenAI model request when it names a requested model, or has a GenAI operation
    other than local tool execution / agent creation."""
    if "gen_ai.request.model" in attrs:
        return True
    op = attrs.get("gen_ai.operation.name")
    if op is None:
        return False
    return not (isinstance(op, str) and op in NON_REQUEST_OPERATIONS)


def map_span(
    span: dict[str, Any],
    outer_attrs: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Map one span to an ``exchanges`` dict (see ``docs/otel.md``).

    ``outer_attrs`` are the resource and scope attributes; span attributes override them.
    """
    if attrs is None:
        attrs = _attributes(span.get("attributes"))
    merged = {**(outer_attrs or {}), **attrs}
    content = _content_attributes(span, attrs)
    out: dict[str, Any] = {}

    def put(field: str, value: Any) -> None:
        if value is not None:
            out[field] = value

    start = _to_int(_get(span, "startTimeUnixNano", "start_time_unix_nano"))
    end = _to_int(_get(span, "endTimeUnixNano", "end_time_unix_nano"))

    request_id = attrs.get("gen_ai.response.id")
    if request_id is None:
        trace_id = _get(span, "traceId", "trace_id")
        span_id = _get(span, "spanId", "span_id")
        if isinstance(trace_id, str) and isinstance(span_id, str) and (trace_id or span_id):
            request_id = (trace_id + span_id).lower()
    put("request_id", request_id)
    put("ts", _rfc3339(start))
    put("account_id", _first(merged, ACCOUNT_KEYS))
    put("api_key_id", _first(merged, API_KEY_KEYS))
    put("client_ip", _first(merged, CLIENT_IP_KEYS))
    put("asn", _first(merged, ASN_KEYS))
    put("user_agent", _first(merged, USER_AGENT_KEYS))
    put("model", _first(attrs, MODEL_KEYS))

    messages = _messages(content.get(INPUT_MESSAGES_KEY))
    system = _system_text(content.get(SYSTEM_KEY))
    if system is None and messages is not None:
        system = _joined(m for m in messages if _role(m) == "system")
    put("system", system)
    if messages is not None:
        user_turns = [m for m in messages if _role(m) == "user"]
        if user_turns:
            put("prompt", _message_text(user_turns[-1]))
            put("turn_index", len(user_turns) - 1)

    put("conversation_id", attrs.get("gen_ai.conversation.id"))
    tools = _json_list(content.get(TOOLS_KEY))
    if tools is not None:
        put("n_tools", len(tools))
    put("thinking", _thinking(attrs))
    put("max_tokens", attrs.get("gen_ai.request.max_tokens"))
    put("input_tokens", _first(attrs, INPUT_TOKENS_KEYS))
    put("output_tokens", _first(attrs, OUTPUT_TOKENS_KEYS))
    put("finish_reason", _finish_reason(attrs.get("gen_ai.response.finish_reasons")))
    if isinstance(start, int) and isinstance(end, int) and start > 0 and end > 0:
        put("latency_ms", (end - start + 500_000) // 1_000_000)
    put("status", _status(span, attrs))
    return out


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _content_attributes(span: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """Opt-in content attributes: from the span, else from the first span event that carries them."""
    found = {k: attrs[k] for k in CONTENT_KEYS if attrs.get(k) is not None}
    events = span.get("events")
    if len(found) < len(CONTENT_KEYS) and isinstance(events, list):
        for event in events:
            if not isinstance(event, dict):
                continue
            event_attrs = _attributes(event.get("attributes"))
            for key in CONTENT_KEYS:
                if key not in found and event_attrs.get(key) is not None:
                    found[key] = event_attrs[key]
    return found


def _rfc3339(nanos: Any) -> Any:
    """Unix nanoseconds to ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``0``/absent to ``None``; junk passed on."""
    if nanos is None or nanos == 0:
        return None
    if not isinstance(nanos, int) or isinstance(nanos, bool):
        return nanos
    seconds, rest = divmod(nanos, 1_000_000_000)
    try:
        dt = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1_000)
    except (OverflowError, OSError, ValueError):
        return str(nanos)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_list(value: Any) -> list[Any] | None:
    """A content attribute as a list: structured already, or a JSON string holding an array."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, list) else None


def _messages(value: Any) -> list[dict[str, Any]] | None:
    items = _json_list(value)
    if items is None:
        return None
    return [m for m in items if isinstance(m, dict)]


def _role(message: dict[str, Any]) -> Any:
    return message.get("role")


def _part_text(part: Any) -> str | None:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict) or part.get("type", "text") != "text":
        return None
    text = part.get("content", part.get("text"))
    return text if isinstance(text, str) else None


def _parts_text(parts: Iterable[Any]) -> str:
    return "\n".join(t for t in (_part_text(p) for p in parts) if t is not None)


def _message_text(message: dict[str, Any]) -> str:
    """Text parts of a message joined by newlines (semconv ``parts``, or an OpenAI-style ``content``)."""
    parts = message.get("parts")
    if isinstance(parts, list):
        return _parts_text(parts)
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _parts_text(content)
    return ""


def _joined(messages: Iterable[dict[str, Any]]) -> str | None:
    texts = [_message_text(m) for m in messages]
    return "\n".join(texts) if texts else None


def _system_text(value: Any) -> str | None:
    """``gen_ai.system_instructions``: an array of parts (structured or as a JSON string), or plain text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        value = decoded
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return _parts_text(value)
    return None


def _thinking(attrs: dict[str, Any]) -> Any:
    flag = attrs.get(THINKING_FLAG_KEY)
    if flag is not None:
        return flag
    effort = attrs.get(REASONING_EFFORT_KEY)
    if effort is None:
        return None
    return str(effort).strip().lower() not in ("", "none", "off", "disabled")


def _finish_reason(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _status(span: dict[str, Any], attrs: dict[str, Any]) -> Any:
    """HTTP status: the attribute; else a numeric ``error.type``; else 200 for a span that ended
    without error; ``None`` for an error span that names no code."""
    code = _first(attrs, STATUS_KEYS)
    if code is not None:
        return code
    error_type = attrs.get("error.type")
    if isinstance(error_type, str) and error_type.isdigit() and 100 <= int(error_type) <= 599:
        return int(error_type)
    status = span.get("status")
    span_code = status.get("code", 0) if isinstance(status, dict) else 0
    span_code = _STATUS_CODES.get(span_code, span_code) if isinstance(span_code, str) else span_code
    if span_code == 2 or error_type is not None:
        return None
    return 200

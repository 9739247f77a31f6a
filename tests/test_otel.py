"""The OTLP/JSON GenAI span adapter, on hand-written span files (tests/data/otel)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from distillguard.contract import EXCHANGES
from distillguard.ingest.otel import any_value, is_genai_span, iter_otlp_exchanges, map_span
from distillguard.ingest.records import RawRecord

DATA = Path(__file__).parent / "data" / "otel"
CHAT = DATA / "chat.otlp.json"  # one pretty-printed ExportTraceServiceRequest
COLLECTOR = DATA / "collector.otlp.json"  # collector file exporter: JSON Lines, with a broken line

CHAT_ROWS = {
    # row 1: the HTTP server span (no gen_ai.* attribute) is skipped
    2: {
        "request_id": "chatcmpl-7Qx1aZ",
        "ts": "2025-03-01T12:00:00.123456Z",
        "account_id": "acct_1001",
        "api_key_id": "key_ab12",
        "client_ip": "203.0.113.7",
        "asn": 64500,
        "user_agent": "python-httpx/0.27.0",
        "model": "acme-large-2",
        "system": "You are a careful math tutor.",
        "prompt": "Show your reasoning step by step.\nThen check it.",
        "turn_index": 1,
        "conversation_id": "conv_8f2a",
        "thinking": True,
        "max_tokens": 1024,
        "input_tokens": 412,
        "output_tokens": 233,
        "finish_reason": "stop",
        "latency_ms": 1877,
        "status": 200,
    },
    # tool use: structured (kvlist) messages, system message inside them, int timestamps, no response id
    3: {
        "request_id": "0af7651916cd43dd8448eb211c80319cb7ad6b7169203331",
        "ts": "2025-03-01T12:01:00.000000Z",
        "account_id": "acct_2002",
        "client_ip": "2001:db8::42",
        "user_agent": "acme-sdk-python/3.1.0",
        "model": "acme-small-1",
        "system": "You are a travel assistant.",
        "prompt": "Weather in Paris right now?",
        "turn_index": 0,
        "n_tools": 3,
        "thinking": False,
        "input_tokens": 96,
        "output_tokens": 18,
        "finish_reason": "tool_calls",
        "latency_ms": 734,
        "status": 200,
    },
    # row 4: the execute_tool span is local tool execution, not a model request: skipped
    # no user id: account_id is absent and the validator will quarantine the row; 429 from error.type
    5: {
        "request_id": "4bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b7",
        "ts": "2025-03-01T12:02:00.000000Z",
        "client_ip": "198.51.100.23",
        "model": "acme-large-2",
        "prompt": "Translate 'bonjour' to English.",
        "turn_index": 0,
        "max_tokens": 4096,
        "latency_ms": 12,
        "status": 429,
    },
}

COLLECTOR_ROWS = {
    # user.id from the resource; deprecated prompt/completion token names; OpenAI-style string content
    1: {
        "request_id": "cmpl-001",
        "ts": "2025-03-02T12:00:00.000001Z",
        "account_id": "acct_3003",
        "model": "acme-base",
        "prompt": "Once upon a time",
        "turn_index": 0,
        "input_tokens": 12,
        "output_tokens": 40,
        "latency_ms": 250,
        "status": 200,
    },
    # span user.id overrides the resource's; content from the inference-details event
    2: {
        "request_id": "chatcmpl-002",
        "ts": "2025-03-02T12:00:01.000000Z",
        "account_id": "acct_3004",
        "model": "acme-large-2",
        "system": "Answer briefly.",
        "prompt": "Now in one sentence.",
        "turn_index": 2,
        "conversation_id": "conv_77",
        "n_tools": 0,
        "latency_ms": 2500,
        "status": 200,
    },
    # row 3: the truncated line (checked separately); row 4: a database span, skipped
    # an error span without any HTTP code: status left out
    5: {
        "request_id": "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3d4d4d4d4d4d4d4d4",
        "ts": "2025-03-02T12:01:40.100000Z",
        "account_id": "acct_3005",
        "model": "acme-large-2",
        "prompt": "Write a 10,000 word essay.",
        "turn_index": 0,
        "latency_ms": 30000,
    },
}


def _ok(records: list[RawRecord]) -> dict[int, dict]:
    return {r.row: r.value for r in records if r.error is None}


def test_single_document_maps_genai_spans_exactly() -> None:
    records = list(iter_otlp_exchanges(CHAT))
    assert [r.row for r in records] == [2, 3, 5]
    assert all(r.error is None for r in records)
    assert _ok(records) == CHAT_ROWS


def test_mapped_fields_are_contract_fields() -> None:
    for path in (CHAT, COLLECTOR):
        for record in iter_otlp_exchanges(path):
            if record.value is not None:
                assert set(record.value) <= set(EXCHANGES.names)


def test_raw_is_the_compact_span() -> None:
    record = next(iter_otlp_exchanges(CHAT))
    span = json.loads(record.raw)
    assert span["spanId"] == "eee19b7ec3c1b175"
    assert ": " not in record.raw.split('"attributes"')[0]  # compact separators
    assert "\n" not in record.raw
    doc = json.loads(CHAT.read_text())
    assert span == doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]


def test_missing_user_id_leaves_account_id_out() -> None:
    value = _ok(list(iter_otlp_exchanges(CHAT)))[5]
    assert "account_id" not in value
    assert set(EXCHANGES.required) - set(value) == {"account_id"}


def test_jsonl_collector_export_with_broken_line() -> None:
    records = list(iter_otlp_exchanges(COLLECTOR))
    assert [r.row for r in records] == [1, 2, 3, 5]
    broken = records[2]
    assert broken.value is None
    assert broken.error is not None
    field, reason = broken.error
    assert field is None
    assert reason.startswith("not valid OTLP JSON: ")
    assert broken.raw == COLLECTOR.read_text().splitlines()[1]
    assert _ok(records) == COLLECTOR_ROWS


def test_jsonl_is_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first document is yielded before later lines are parsed."""
    import distillguard.ingest.otel as otel

    parsed: list[int] = []
    real = otel._parse

    def spy(data: bytes) -> tuple:
        parsed.append(len(data))
        return real(data)

    monkeypatch.setattr(otel, "_parse", spy)
    it = iter_otlp_exchanges(COLLECTOR)
    first = next(it)
    assert first.row == 1
    assert len(parsed) == 1
    assert len(list(it)) == 3
    assert len(parsed) == 3


@pytest.mark.parametrize("name", ["traces.json.gz", "traces.json"])
def test_gzip_is_detected_by_content(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    with COLLECTOR.open("rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    records = list(iter_otlp_exchanges(target))
    assert [(r.row, r.value, r.error) for r in records] == [
        (r.row, r.value, r.error) for r in iter_otlp_exchanges(COLLECTOR)
    ]


def test_gzip_single_pretty_document(tmp_path: Path) -> None:
    target = tmp_path / "chat.json.gz"
    target.write_bytes(gzip.compress(CHAT.read_bytes()))
    assert _ok(list(iter_otlp_exchanges(target))) == CHAT_ROWS


def test_single_line_document_reads_like_pretty_one(tmp_path: Path) -> None:
    target = tmp_path / "one.json"
    target.write_text(json.dumps(json.loads(CHAT.read_text())))
    assert _ok(list(iter_otlp_exchanges(target))) == CHAT_ROWS


def test_jsonl_whose_first_line_is_broken(tmp_path: Path) -> None:
    lines = COLLECTOR.read_text().splitlines()
    target = tmp_path / "t.jsonl"
    target.write_text("\n".join([lines[1], lines[0], lines[3]]) + "\n")
    records = list(iter_otlp_exchanges(target))
    assert [(r.row, r.value is None) for r in records] == [(1, True), (2, False), (3, False), (5, False)]


def test_broken_single_document_is_one_error(tmp_path: Path) -> None:
    target = tmp_path / "broken.json"
    text = CHAT.read_text()
    target.write_text(text[: len(text) // 2])
    records = list(iter_otlp_exchanges(target))
    assert len(records) == 1
    assert records[0].row == 1
    assert records[0].value is None
    assert records[0].error is not None
    assert records[0].error[1].startswith("not valid OTLP JSON: ")


def test_json_that_is_not_a_trace_export(tmp_path: Path) -> None:
    target = tmp_path / "x.jsonl"
    target.write_text(
        '{"resourceMetrics": []}\n'
        "[1, 2, 3]\n"
        '{"hello": "world"}\n'
        '{"resourceSpans": "nope"}\n'
        "{}\n"
        '{"resourceSpans": [{"scopeSpans": [{"spans": [42]}]}]}\n'
    )
    records = list(iter_otlp_exchanges(target))
    assert [(r.row, r.value, r.error) for r in records] == [
        (1, None, (None, "not valid OTLP JSON: not a trace export (found 'resourceMetrics')")),
        (2, None, (None, "not valid OTLP JSON: expected an ExportTraceServiceRequest object, got list")),
        (3, None, (None, "not valid OTLP JSON: no 'resourceSpans' in document")),
        (4, None, (None, "not valid OTLP JSON: 'resourceSpans' is not an array")),
        # {} is a valid, empty request: no rows
        (5, None, (None, "not valid OTLP JSON: span is not an object")),
    ]


def test_invalid_utf8_line(tmp_path: Path) -> None:
    good = COLLECTOR.read_bytes().splitlines()[0]
    target = tmp_path / "bad.jsonl"
    target.write_bytes(good + b"\n" + b'{"resourceSpans": [\xff\xfe]}\n')
    records = list(iter_otlp_exchanges(target))
    assert [r.row for r in records] == [1, 2, 3]
    assert records[2].value is None
    assert records[2].error is not None
    assert records[2].error[1].startswith("not valid OTLP JSON: ")
    assert "\ufffd" in records[2].raw


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    target = tmp_path / "empty.json"
    target.write_text("\n\n")
    assert list(iter_otlp_exchanges(target)) == []


def test_any_value_forms() -> None:
    assert any_value({"stringValue": "a"}) == "a"
    assert any_value({"intValue": "123"}) == 123
    assert any_value({"intValue": 7}) == 7
    assert any_value({"intValue": "x"}) == "x"  # passed through for the validator
    assert any_value({"doubleValue": 0.5}) == 0.5
    assert any_value({"boolValue": True}) is True
    assert any_value({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}) == ["a", 2]
    assert any_value({"arrayValue": {}}) == []
    assert any_value(
        {"kvlistValue": {"values": [{"key": "k", "value": {"kvlistValue": {"values": []}}}]}}
    ) == {"k": {}}
    assert any_value({"bytesValue": "AQI="}) == "AQI="
    assert any_value({}) is None
    assert any_value({"string_value": "snake"}) == "snake"


def test_is_genai_span() -> None:
    assert is_genai_span({"gen_ai.operation.name": "chat"})
    assert is_genai_span({"gen_ai.request.model": "m"})
    assert is_genai_span({"gen_ai.operation.name": "embeddings"})
    assert not is_genai_span({"gen_ai.operation.name": "execute_tool"})
    assert not is_genai_span({"gen_ai.operation.name": "create_agent"})
    assert is_genai_span({"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "m"})
    assert not is_genai_span({"http.request.method": "POST", "gen_ai.provider.name": "x"})


def _span(**attrs: object) -> dict:
    def wrap(v: object) -> dict:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": v}

    return {
        "traceId": "AB" * 16,
        "spanId": "CD" * 8,
        "startTimeUnixNano": "1700000000000000000",
        "attributes": [{"key": k, "value": wrap(v)} for k, v in attrs.items()],
    }


def test_map_span_precedence_and_fallbacks() -> None:
    outer = {"service.name": "gateway", "user.id": "acct_res", "client.address": "10.0.0.1"}
    span = _span(**{"gen_ai.request.model": "m", "enduser.id": "acct_end", "user.id": "acct_span"})
    value = map_span(span, outer)
    assert value["account_id"] == "acct_span"
    assert value["client_ip"] == "10.0.0.1"  # from the resource when the span has none
    assert value["request_id"] == "ab" * 16 + "cd" * 8  # hex, lower-cased
    assert value["ts"] == "2023-11-14T22:13:20.000000Z"
    assert "latency_ms" not in value  # no end time
    # distillguard.account.id beats user.id; service.name is never an account
    value = map_span(_span(**{"distillguard.account.id": "acct_x", "user.id": "u"}), outer)
    assert value["account_id"] == "acct_x"
    assert "account_id" not in map_span(_span(), {"service.name": "gateway"})
    # gen_ai.request.user is the caller's own end user, not the billed account
    assert "account_id" not in map_span(_span(**{"gen_ai.request.user": "end-user-9"}))
    # response model when the request model was not recorded
    assert map_span(_span(**{"gen_ai.response.model": "m-0301"}))["model"] == "m-0301"
    # deprecated names
    value = map_span(
        _span(**{"http.status_code": 503, "http.user_agent": "curl/8", "http.client_ip": "1.2.3.4"})
    )
    assert (value["status"], value["user_agent"], value["client_ip"]) == (503, "curl/8", "1.2.3.4")


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({}, None),
        ({"gen_ai.request.reasoning_effort": "low"}, True),
        ({"gen_ai.request.reasoning_effort": "none"}, False),
        ({"distillguard.request.thinking": True, "gen_ai.request.reasoning_effort": "none"}, True),
        ({"distillguard.request.thinking": False}, False),
    ],
)
def test_thinking(attrs: dict, expected: bool | None) -> None:
    assert map_span(_span(**attrs)).get("thinking") == expected


@pytest.mark.parametrize(
    ("status", "attrs", "expected"),
    [
        ({}, {}, 200),
        ({"code": 1}, {}, 200),
        ({"code": 2}, {}, None),
        ({"code": "STATUS_CODE_ERROR"}, {}, None),
        ({"code": 2}, {"http.response.status_code": 500}, 500),
        ({"code": 2}, {"error.type": "429"}, 429),
        ({}, {"error.type": "ValueError"}, None),
    ],
)
def test_status(status: dict, attrs: dict, expected: int | None) -> None:
    span = _span(**attrs) | {"status": status}
    assert map_span(span).get("status") == expected


def test_prompt_edge_cases() -> None:
    no_user = json.dumps([{"role": "system", "parts": [{"type": "text", "content": "sys"}]}])
    value = map_span(_span(**{"gen_ai.input.messages": no_user}))
    assert "prompt" not in value and "turn_index" not in value
    assert value["system"] == "sys"
    value = map_span(_span(**{"gen_ai.input.messages": "not json"}))
    assert "prompt" not in value
    image_only = json.dumps([{"role": "user", "parts": [{"type": "blob", "modality": "image"}]}])
    assert map_span(_span(**{"gen_ai.input.messages": image_only}))["prompt"] == ""
    openai_style = json.dumps([{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    assert map_span(_span(**{"gen_ai.input.messages": openai_style}))["prompt"] == "hello"
    # system_instructions win over system messages; plain text is accepted as is
    both = map_span(_span(**{"gen_ai.input.messages": no_user, "gen_ai.system_instructions": "plain"}))
    assert both["system"] == "plain"


def test_finish_reason_and_tools() -> None:
    span = _span()
    span["attributes"] += [
        {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": []}}},
        {"key": "gen_ai.tool.definitions", "value": {"stringValue": "{not json"}},
    ]
    value = map_span(span)
    assert "finish_reason" not in value
    assert "n_tools" not in value

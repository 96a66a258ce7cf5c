"""Body limits at the HTTP edge, checked before parsing (SURFACE.md "Limits at the edge"):
413 over TALLY_MAX_BODY_BYTES (declared or counted while reading a chunked body), 400 naming
`body` for JSON nested deeper than TALLY_MAX_JSON_DEPTH, and a body that is not JSON named
`body` too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from adapters.bootstrap import bootstrap
from adapters.http.app import create_app
from adapters.http.limits import BodyLimits
from adapters.json_depth import nests_deeper_than
from adapters.settings import Settings
from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

SMALL_BYTES, SHALLOW = 2048, 8
PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 1000, "currency": "USD"}}


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'events.db'}",
        max_body_bytes=SMALL_BYTES,
        max_json_depth=SHALLOW,
    )
    system = bootstrap(settings, SettableClock(T0))
    try:
        yield Api(TestClient(create_app(system), raise_server_exceptions=False), system, "acme")
    finally:
        system.close()


def nested(depth: int) -> bytes:
    """A JSON body whose `name` is arrays nested `depth` levels (the object adds one)."""
    return b'{"name": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def post(api: Api, path: str, content: Any, **headers: str) -> Any:
    return api.call(
        "POST", path, content=content, headers={"content-type": "application/json", **headers}
    )


def plans(api: Api) -> list[Any]:
    return list(api.call("GET", "/v1/plans").json()["plans"])


def padded_plan(size: int) -> bytes:
    """A valid plan body of exactly `size` bytes (JSON whitespace after it)."""
    body = orjson.dumps(PLAN)
    return body + b" " * (size - len(body))


def test_a_body_over_the_limit_is_413_before_it_is_read(small: Api) -> None:
    response = post(small, "/v1/plans", padded_plan(SMALL_BYTES + 1))
    assert_error(response, 413, "payload_too_large", "body")
    assert response.json()["error"]["details"][0]["limit"] == SMALL_BYTES
    assert plans(small) == []


def test_a_body_at_the_limit_is_taken(small: Api) -> None:
    assert post(small, "/v1/plans", padded_plan(SMALL_BYTES)).status_code == 201


def test_a_chunked_body_is_counted_while_it_is_read(small: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield from [b" " * 1000] * 3

    response = post(small, "/v1/plans", chunks())  # no Content-Length: chunked
    assert_error(response, 413, "payload_too_large", "body")
    assert plans(small) == []


def test_reading_stops_once_past_the_limit() -> None:
    received: list[int] = []
    reached: list[bool] = []

    async def receive() -> Message:
        received.append(1)
        return {"type": "http.request", "body": b" " * 1000, "more_body": True}  # endless

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            reached.append(message["status"] == 413)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not see a body over the limit")

    scope = {"type": "http", "method": "POST", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimits(app, max_bytes=SMALL_BYTES, max_depth=SHALLOW)(scope, receive, send))
    assert (len(received), reached) == (3, [True])


def test_a_declared_length_over_the_default_5_mb_is_413(acme: Api) -> None:
    response = post(acme, "/v1/plans", b" " * 5_000_001)
    assert_error(response, 413, "payload_too_large", "body")
    assert response.json()["error"]["details"][0]["limit"] == 5_000_000


def test_json_nested_too_deeply_is_400_naming_the_body(small: Api) -> None:
    response = post(small, "/v1/plans", nested(SHALLOW + 1))
    assert_error(response, 400, "invalid_body", "body")
    assert "nested too deeply" in response.json()["error"]["message"]
    at_the_limit = post(small, "/v1/plans", nested(SHALLOW))
    assert_error(at_the_limit, 422, "validation_error")  # parsed: the name is not a string


def test_the_default_depth_is_64_and_the_issues_990_deep_body_is_refused(acme: Api) -> None:
    for depth in (65, 990):
        response = post(acme, "/v1/commands/define_plan", nested(depth))
        assert_error(response, 400, "invalid_body", "body")
    assert_error(post(acme, "/v1/plans", nested(64)), 422, "validation_error")


def test_brackets_inside_strings_do_not_count(small: Api) -> None:
    name = '[{"\\"' * 30  # brackets, quotes and escapes, all inside one string
    response = post(small, "/v1/plans", orjson.dumps({**PLAN, "name": name}))
    assert response.status_code == 201, response.text


def test_a_body_that_is_not_json_names_the_body(acme: Api) -> None:
    for path in ("/v1/plans", "/v1/commands/define_plan"):
        response = post(acme, path, b"not json")
        assert_error(response, 422, "validation_error", "body")
        assert "not valid JSON" in response.json()["error"]["message"]


def test_requests_without_a_body_pass_untouched(small: Api) -> None:
    assert small.call("GET", "/v1/plans").status_code == 200
    assert small.client.get("/live").status_code == 200


def test_the_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().max_body_bytes, Settings().max_json_depth) == (5_000_000, 64)
    monkeypatch.setenv("TALLY_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("TALLY_MAX_JSON_DEPTH", "10")
    assert (Settings().max_body_bytes, Settings().max_json_depth) == (1000, 10)


@pytest.mark.parametrize(
    ("text", "deeper_than_2"),
    [
        (b"[[1]]", False),
        (b"[[[1]]]", True),
        (b'{"a": {"b": {"c": 1}}}', True),
        (b'["[[[[", "]]]]"]', False),
        (b'["\\"[[[["]', False),  # an escaped quote does not end the string
        (b"[[], [], [], []]", False),
    ],
)
def test_the_depth_scanner(text: bytes, deeper_than_2: bool) -> None:
    assert nests_deeper_than(text, 2) is deeper_than_2


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[{"\\k', max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=JSON, limit=st.integers(0, 6))
def test_the_scanner_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    text = orjson.dumps(value)
    assert nests_deeper_than(text, limit) is (depth_of(orjson.loads(text)) > limit)


def test_a_batch_of_1000_usage_events_is_scanned_whole() -> None:
    event = {"idempotency_key": "k", "tenant_id": "t1", "event_type": "api_request"}
    batch = orjson.dumps({"events": [{**event, "properties": {"route": "/x"}}] * 1000})
    assert not nests_deeper_than(batch, 64)
    assert nests_deeper_than(batch[:-2] + b"[" * 70 + b"]" * 70 + b"]}", 64)

"""Strict input at every edge (issue 13, R6).

- Integers are JSON integers: every integer field of every command (and of the request
  bodies that are not commands) refuses "5", true and 5.0 naming the field, on the bus
  (`System.dispatch`), over HTTP and over NATS alike. The first tests enumerate the models
  themselves, so a new field that is not strict fails here.
- An instant out of range is refused naming its field.
- Errors name things as the client named them: a plan by its key, a coupon by its code; one
  reason for a feature missing from the plan; "an active", not "a active".
"""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError

from adapters.bootstrap import System
from adapters.http.app import create_app
from adapters.http.pricing import RateBody
from adapters.http.usage import UsageEvent
from adapters.nats.command_bus import build_command
from commands.base import Command
from commands.billing.simulate_pricing import SimulatePricing
from commands.edge import Refused
from domain.errors import with_article
from tests.factories import embedded_system, ok
from tests.unit.http.support import Api, assert_error

SLOT = object()
"""Where a payload template takes the value under test."""

BAD_INTEGERS: tuple[Any, ...] = ("5", True, 3.0)
EDGE_BODIES: tuple[type[BaseModel], ...] = (SimulatePricing, UsageEvent, RateBody)
"""Request bodies that are not commands (their nested models are walked too)."""
DECIMAL_STRINGS_ALLOWED = {(RateBody, ("quantity",))}
"""POST /v1/pricing/rate prices "12.5" units: a decimal string, never a float (SURFACE.md)."""
OUT_OF_RANGE = ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9000-01-01T00:00Z")

PLAN = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 1000, "currency": "USD"},
    "features": [{"key": "api", "kind": "metered", "limit": 100}],
}


def every_command() -> list[type[Command]]:
    """Every command the edges take: the bus's registry (HTTP, NATS and dispatch use it)."""
    system = embedded_system()
    try:
        return [system.bus.command_type(name) for name in system.bus.command_names]
    finally:
        system.close()


def every_model() -> list[type[BaseModel]]:
    return [*every_command(), *EDGE_BODIES]


# --- where the integers (and the instants) are -----------------------------------------


def slots(annotation: Any, leaf: type, depth: int = 0) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(loc, payload template) for each value of type `leaf` the annotation holds, nested
    models, lists, dicts and unions included; the template reaches it (tags included)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is leaf:
        yield (), SLOT
    elif origin is Annotated:
        yield from slots(args[0], leaf, depth)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and depth < 8:
        yield from model_slots(annotation, leaf, depth + 1)
    elif origin in (Union, UnionType) and str not in args:  # with str: compared as sent
        for arg in args:
            yield from slots(arg, leaf, depth)
    elif origin is list:
        yield from (((0, *loc), [template]) for loc, template in slots(args[0], leaf, depth))
    elif origin is dict:
        yield from ((("k", *loc), {"k": t}) for loc, t in slots(args[1], leaf, depth))


def model_slots(
    model: type[BaseModel], leaf: type, depth: int = 0
) -> Iterator[tuple[tuple[Any, ...], Any]]:
    fields = model.model_fields
    tags = {n: get_args(f.annotation)[0] for n, f in fields.items() if _is_tag(f.annotation)}
    for name, field in fields.items():
        for loc, template in slots(field.annotation, leaf, depth):
            yield (name, *loc), {**tags, name: template}


def _is_tag(annotation: Any) -> bool:
    return get_origin(annotation) is Literal and len(get_args(annotation)) == 1


def fill(template: Any, value: Any) -> Any:
    if template is SLOT:
        return value
    if isinstance(template, dict):
        return {key: fill(item, value) for key, item in template.items()}
    if isinstance(template, list):
        return [fill(item, value) for item in template]
    return template


def refused_at(model: type[BaseModel], payload: Any, loc: tuple[Any, ...]) -> list[str]:
    """The rules broken at `loc` (a tagged union's tag may sit between its parts)."""
    try:
        model.model_validate(payload)
    except ValidationError as error:
        return [e["type"] for e in error.errors() if _names(e["loc"], loc)]
    return []


def _names(actual: tuple[Any, ...], wanted: tuple[Any, ...]) -> bool:
    parts = iter(actual)
    return bool(actual) and actual[-1] == wanted[-1] and all(p in parts for p in wanted)


def lax_integers(model: type[BaseModel], value: Any) -> list[tuple[Any, ...]]:
    """The integer fields of the model (nested ones too) that accept `value`."""
    return [
        loc
        for loc, template in model_slots(model, int)
        if (model, loc) not in DECIMAL_STRINGS_ALLOWED
        and "int_type" not in refused_at(model, fill(template, value), loc)
    ]


# --- the models -------------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_INTEGERS, ids=repr)
def test_every_integer_field_of_every_command_and_body_is_strict(value: Any) -> None:
    lax = {m.__name__: lax_integers(m, value) for m in every_model() if lax_integers(m, value)}
    assert lax == {}, f"integer fields that accept {value!r}"


@settings(max_examples=25, deadline=None)
@given(
    value=st.one_of(
        st.integers(-(10**18), 10**18).map(str),
        st.integers(-(10**6), 10**6).map(float),
        st.booleans(),
        st.decimals(allow_nan=False, allow_infinity=False).map(str),
    )
)
def test_no_integer_field_takes_text_floats_or_booleans(value: Any) -> None:
    assert [m.__name__ for m in every_model() if lax_integers(m, value)] == []


def test_the_enumeration_finds_the_integers_it_must() -> None:
    found = {(m.__name__, loc) for m in every_model() for loc, _ in model_slots(m, int)}
    assert {
        ("ChangeSeats", ("quantity",)),
        ("GrantAllowance", ("amount",)),
        ("ConsumeQuota", ("amount",)),
        ("ConfigureBilling", ("dunning_retry_days", 0)),
        ("DefinePlan", ("features", 0, "overage", "package_size")),
        ("DefinePlan", ("features", 0, "overage", "tiers", 0, "up_to")),
        ("AddInvoiceLine", ("line", "unit_amount", "amount")),
        ("IssueCreditNote", ("lines", 0, "quantity")),
        ("LinkPlanPrice", ("version",)),
        ("CreateAlert", ("thresholds", 0, "percent")),
        ("SimulatePricing", ("draft", "trial_days")),
        ("UsageEvent", ("quantity",)),
    } <= found
    assert len(found) > 80


def test_the_check_finds_a_lax_integer() -> None:
    class Lax(BaseModel):
        count: int
        counts: list[int] = []
        maybe: int | None = None

    assert lax_integers(Lax, "5") == [("count",), ("counts", 0), ("maybe",)]


def test_a_new_command_gets_strict_integers_and_keeps_json_strings() -> None:
    class ProbeIntegers(Command):
        count: int
        maybe: int | None = None
        many: list[int] = []
        at: AwareDatetime | None = None

    assert lax_integers(ProbeIntegers, "5") == []
    probe = ProbeIntegers.model_validate(
        {"app_id": "acme", "count": 5, "many": [1], "at": "2026-01-01T00:00:00Z"}
    )
    assert (probe.count, probe.many, probe.at is not None) == (5, [1], True)


def test_rate_quantities_are_integers_or_decimal_strings_never_floats_or_booleans() -> None:
    model = {"model": "per_unit", "unit_price": {"amount": 10, "currency": "USD"}}
    assert RateBody.model_validate({"model": model, "quantity": "12.5"})
    for value in (3.0, True):
        assert refused_at(RateBody, {"model": model, "quantity": value}, ("quantity",))


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_every_instant_of_every_command_out_of_range_is_refused_naming_it(value: str) -> None:
    instants = [(m, loc, t) for m in every_command() for loc, t in model_slots(m, AwareDatetime)]
    assert len(instants) >= 6
    named = [(m.__name__, loc) for m, loc, t in instants if not refused_at(m, fill(t, value), loc)]
    assert named == []


def test_an_instant_in_range_is_taken_as_given() -> None:
    from commands.coupons.create_coupon import CreateCoupon

    coupon = CreateCoupon.model_validate(
        {
            "app_id": "acme",
            "code": "spring",
            "percent_off": 10,
            "duration": "once",
            "valid_until": "8999-12-31T12:00:00-05:00",
        }
    )
    assert coupon.valid_until is not None and coupon.valid_until.utcoffset() is not None


# --- the edges --------------------------------------------------------------------------


@pytest.fixture
def system() -> Iterator[System]:
    built = embedded_system(deliver_in_process=True)
    ok(built.dispatch("define_plan", {"app_id": "acme", **PLAN}))
    ok(
        built.dispatch(
            "start_subscription", {"app_id": "acme", "tenant_id": "t1", "plan_key": "pro"}
        )
    )
    yield built
    built.close()


@pytest.fixture
def acme(system: System) -> Api:
    return Api(TestClient(create_app(system), raise_server_exceptions=False), system, "acme")


CASES = [
    ("consume_quota", {"tenant_id": "t1", "feature_key": "api", "idempotency_key": "k"}, "amount"),
    ("grant_allowance", {"tenant_id": "t1", "feature_key": "api", "reason": "r"}, "amount"),
    ("configure_quota", {"tenant_id": "t1", "feature_key": "api"}, "limit"),
    ("grant_feature", {"tenant_id": "t1", "feature_key": "api", "reason": "r"}, "limit"),
]


def used(system: System) -> int:
    system.sync()
    answer = system.query("entitlement", app_id="acme", tenant_id="t1", feature_key="api")
    return int(answer["used"])


@pytest.mark.parametrize("value", ("1", True, 3.0), ids=repr)
@pytest.mark.parametrize(("name", "fields", "field"), CASES, ids=[c[0] for c in CASES])
def test_the_bus_refuses_integers_that_are_not_json_integers(
    system: System, name: str, fields: dict[str, Any], field: str, value: Any
) -> None:
    reply = system.dispatch(name, {"app_id": "acme", **fields, field: value})
    assert not reply["ok"]
    assert reply["error"]["code"] == "validation_error"
    assert [d["field"] for d in reply["error"]["details"]] == [field]
    assert used(system) == 0


@pytest.mark.parametrize("value", ("5", True, 3.0), ids=repr)
def test_http_refuses_them_on_typed_and_generic_routes(
    system: System, acme: Api, value: Any
) -> None:
    usage = {"idempotency_key": "k", "tenant_id": "t1", "feature_key": "api", "quantity": value}
    assert_error(acme.call("POST", "/v1/usage", json=usage), 422, "validation_error", "quantity")
    batch = {"events": [usage]}
    refused = acme.call("POST", "/v1/usage", json=batch)
    assert_error(refused, 422, "validation_error", "events.0.quantity")
    generic = acme.call("POST", "/v1/commands/consume_quota", json={**CASES[0][1], "amount": value})
    assert generic.status_code == 422
    assert generic.json()["error"]["details"][0]["field"] == "amount"
    plan = {
        **PLAN,
        "plan_key": "team",
        "features": [{"key": "api", "kind": "metered", "limit": value}],
    }
    assert_error(
        acme.call("POST", "/v1/plans", json=plan), 422, "validation_error", "features.0.limit"
    )
    grant = {"feature_key": "api", "reason": "vip", "limit": value}
    assert_error(
        acme.call("POST", "/v1/tenants/t1/grants", json=grant), 422, "validation_error", "limit"
    )
    assert used(system) == 0


def test_http_refuses_an_amount_of_money_as_text(acme: Api) -> None:
    body = {"amount": {"amount": "1", "currency": "USD"}, "reason": "goodwill"}
    refused = acme.call("POST", "/v1/tenants/t1/credits", json=body)
    assert_error(refused, 422, "validation_error", "amount.amount")


@pytest.mark.parametrize("value", ("5", True, 3.0), ids=repr)
def test_nats_refuses_them(system: System, value: Any) -> None:
    body = orjson.dumps({**CASES[0][1], "amount": value})
    with pytest.raises(Refused) as refused:
        build_command(system, "consume_quota", "acme", body)
    error = refused.value.error
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "amount"
    good = build_command(
        system, "consume_quota", "acme", orjson.dumps({**CASES[0][1], "amount": 5})
    )
    assert good.model_dump()["amount"] == 5


def test_nats_refuses_json_nested_too_deeply(system: System) -> None:
    with pytest.raises(Refused) as refused:
        build_command(system, "consume_quota", "acme", b'{"a":' + b"[" * 100 + b"]" * 100 + b"}")
    error = refused.value.error
    assert (error["code"], error["details"][0]["field"]) == ("invalid_body", "body")
    assert "nested too deeply" in error["message"]


def test_an_instant_out_of_range_names_its_field(system: System, acme: Api) -> None:
    coupon = {"code": "far", "percent_off": 10, "duration": "once"}
    far = acme.call("POST", "/v1/coupons", json={**coupon, "valid_from": OUT_OF_RANGE[0]})
    assert_error(far, 422, "validation_error", "valid_from")
    sid = ok(
        system.dispatch(
            "start_subscription", {"app_id": "acme", "tenant_id": "t2", "plan_key": "pro"}
        )
    )
    draft = {
        "app_id": "acme",
        "tenant_id": "t2",
        "subscription_id": sid["subscription_id"],
        "currency": "USD",
        "period": {"start": "2026-01-01T00:00:00Z", "end": OUT_OF_RANGE[0]},
    }
    reply = system.dispatch("draft_invoice", draft)
    assert [d["field"] for d in reply["error"]["details"]] == ["period.end"]


# --- errors name things as the client did ------------------------------------------------


def test_an_unknown_plan_is_named_by_its_key(system: System, acme: Api) -> None:
    started = acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t9", "plan_key": "gold"})
    assert_error(started, 404, "not_found", "plan_key")
    assert started.json()["error"]["message"] == "plan gold not found"
    assert acme.call("GET", "/v1/plans/gold").json()["error"]["message"] == "plan gold not found"
    archived = system.dispatch("archive_plan", {"app_id": "acme", "plan_key": "gold"})
    assert archived["error"]["message"] == "plan gold not found"
    compared = acme.call("GET", "/v1/plans/compare?a=gold&b=pro")
    assert compared.json()["error"]["message"] == "plan gold not found"


def test_an_unknown_coupon_is_named_by_its_code(acme: Api) -> None:
    assert (
        acme.call("GET", "/v1/coupons/nope").json()["error"]["message"] == "coupon nope not found"
    )


def test_one_reason_for_a_feature_missing_from_the_plan(system: System) -> None:
    system.sync()
    never = system.query("entitlement", app_id="acme", tenant_id="t1", feature_key="sso")
    plan = {**PLAN, "plan_key": "lite", "features": []}
    ok(system.dispatch("define_plan", {"app_id": "acme", **plan}))
    sub = system.query("entitlement", app_id="acme", tenant_id="t1", feature_key="api")
    assert sub["allowed"]
    sid = system.index.ids("acme", "subscription", "t1")[0]
    ok(
        system.dispatch(
            "change_plan", {"app_id": "acme", "subscription_id": str(sid), "plan_key": "lite"}
        )
    )
    system.sync()
    left = system.query("entitlement", app_id="acme", tenant_id="t1", feature_key="api")
    assert (never["reason"], left["reason"]) == ("not_in_plan", "not_in_plan")


def test_messages_say_an_before_a_vowel_sound(system: System) -> None:
    sid = system.index.ids("acme", "subscription", "t1")[0]
    reply = system.dispatch("resume_subscription", {"app_id": "acme", "subscription_id": str(sid)})
    assert reply["error"]["message"].startswith("cannot resume an active subscription")
    said = [with_article(w) for w in ("active", "open", "uncollectible", "usage", "unique_count")]
    assert said == ["an active", "an open", "an uncollectible", "a usage", "a unique_count"]
    assert with_article("paused") == "a paused"

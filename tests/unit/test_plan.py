import pytest
from pydantic import ValidationError

from domain.catalog import FeatureSpec, GraduatedPrice, PlanTerms
from domain.errors import InvalidValue, NotFound, PlanArchived
from domain.plan import Plan, PlanDefined, PlanRevised, PlanWasArchived, plan_id
from tests.factories import cause, terms


def test_define_records_version_one_with_audit_context() -> None:
    plan = Plan.define("acme", terms(), cause(command_id="c-1"))
    [event] = plan.collect_events()
    assert isinstance(event, PlanDefined)
    assert (event.actor, event.command_id, event.correlation_id) == ("tester", "c-1", "corr-1")
    assert plan.id == plan_id("acme", "pro")
    assert plan.terms().version == 1


def test_revise_adds_a_version_and_keeps_old_ones() -> None:
    plan = Plan.define("acme", terms(price=1000), cause())
    assert plan.revise(terms(price=2000), cause()) == 2
    assert plan.terms(1).base_price.amount == 1000
    assert plan.terms().base_price.amount == 2000
    assert isinstance(plan.collect_events()[-1], PlanRevised)
    with pytest.raises(NotFound):
        plan.terms(7)
    with pytest.raises(InvalidValue):
        plan.revise(terms("other"), cause())


def test_archived_plan_refuses_changes_and_new_subscribers() -> None:
    plan = Plan.define("acme", terms(), cause())
    plan.archive(cause())
    assert isinstance(plan.pending_events[-1], PlanWasArchived)
    with pytest.raises(PlanArchived):
        plan.revise(terms(), cause())
    with pytest.raises(PlanArchived):
        plan.terms_for_new_subscriber("t1")
    with pytest.raises(PlanArchived):
        plan.archive(cause())


def test_custom_plan_is_only_for_its_tenant() -> None:
    plan = Plan.define("acme", terms("enterprise-t1"), cause(), custom_for_tenant="t1")
    assert plan.terms_for_new_subscriber("t1").plan_key == "enterprise-t1"
    with pytest.raises(NotFound):
        plan.terms_for_new_subscriber("t2")


def test_feature_rules() -> None:
    with pytest.raises(ValidationError, match="boolean feature has no limit"):
        FeatureSpec(key="sso", kind="boolean", limit=3)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="only metered"):
        FeatureSpec.model_validate(
            {
                "key": "sso",
                "kind": "boolean",
                "overage": {"model": "flat", "amount": {"amount": 1, "currency": "USD"}},
            }
        )
    with pytest.raises(ValidationError, match="unique"):
        terms(features=[{"key": "a", "kind": "boolean"}, {"key": "a", "kind": "boolean"}])
    with pytest.raises(ValidationError):
        terms("Bad Key")


def test_pricing_models_validate_their_shape() -> None:
    usd = {"amount": 10, "currency": "USD"}
    tiers = GraduatedPrice.model_validate(
        {"tiers": [{"up_to": 100, "unit_price": usd}, {"up_to": None, "unit_price": usd}]}
    )
    assert tiers.model == "graduated"
    with pytest.raises(ValidationError, match="open-ended"):
        GraduatedPrice.model_validate(
            {"tiers": [{"up_to": None, "unit_price": usd}, {"up_to": 5, "unit_price": usd}]}
        )
    with pytest.raises(ValidationError, match="ascend"):
        GraduatedPrice.model_validate(
            {
                "tiers": [
                    {"up_to": 50, "unit_price": usd},
                    {"up_to": 10, "unit_price": usd},
                    {"unit_price": usd},
                ]
            }
        )
    with pytest.raises(ValidationError, match="one currency"):
        GraduatedPrice.model_validate(
            {
                "tiers": [
                    {"up_to": 5, "unit_price": usd},
                    {"unit_price": {"amount": 1, "currency": "EUR"}},
                ]
            }
        )
    spec = FeatureSpec.model_validate(
        {
            "key": "api",
            "kind": "metered",
            "limit": 10,
            "overage": {"model": "package", "package_size": 100, "package_price": usd},
        }
    )
    assert spec.overage is not None and spec.overage.model == "package"


def test_price_override_per_zone() -> None:
    t = PlanTerms.model_validate(
        {
            **terms().model_dump(),
            "price_overrides": {"in": {"amount": 300, "currency": "USD"}},
        }
    )
    assert t.price_for("in").amount == 300
    assert t.price_for("de").amount == 1000
    assert t.price_for(None).amount == 1000


# --- pricing in the catalog (issue 8): unit prices, currencies, included units, timing ---

USD_OVERAGE = {"model": "per_unit", "unit_price": {"amount": 2, "currency": "USD"}}


def metered(**fields: object) -> dict[str, object]:
    return {"key": "api", "kind": "metered", "limit": 100, **fields}


def test_prices_in_a_plan_are_never_negative_and_the_error_names_the_field() -> None:
    tiers = [
        {"up_to": 10, "unit_price": {"amount": 1, "currency": "USD"}},
        {"unit_price": {"amount": -1, "currency": "USD"}},
    ]
    with pytest.raises(ValidationError) as refused:
        terms(features=[metered(overage={"model": "graduated", "tiers": tiers})])
    [error] = refused.value.errors()
    assert ".".join(map(str, error["loc"])) == "overage.graduated.tiers.1.unit_price.amount"
    with pytest.raises(ValidationError, match="seat_price"):
        terms(
            features=[
                {"key": "seats", "kind": "seats", "seat_price": {"amount": -5, "currency": "USD"}}
            ]
        )


@pytest.mark.parametrize(
    ("feature", "field"),
    [
        (metered(overage={"model": "flat", "amount": {"amount": 5, "currency": "EUR"}}),
         "features.api.overage"),
        ({"key": "seats", "kind": "seats", "seat_price": {"amount": 5, "currency": "EUR"}},
         "features.seats.seat_price"),
    ],
)  # fmt: skip
def test_every_price_of_a_plan_is_in_the_base_price_currency(
    feature: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        terms(features=[feature])
    cause = refused.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, InvalidValue) and cause.field == field
    assert cause.details == {"rule": "currency"} and "USD" in cause.message
    with pytest.raises(ValidationError, match=r"price_overrides\.in"):
        PlanTerms.model_validate(
            {**terms().model_dump(), "price_overrides": {"in": {"amount": 3, "currency": "INR"}}}
        )


def test_define_plan_refuses_another_currency_before_anything_is_recorded() -> None:
    from tests.factories import embedded_system

    system = embedded_system()
    try:
        reply = system.dispatch(
            "define_plan",
            {
                "app_id": "acme",
                "plan_key": "pro",
                "name": "Pro",
                "base_price": {"amount": 1000, "currency": "USD"},
                "features": [
                    metered(overage={**USD_OVERAGE, "unit_price": {"amount": 2, "currency": "JPY"}})
                ],
            },
        )
        assert not reply["ok"] and reply["error"]["code"] == "validation_error"
        assert reply["error"]["details"][0]["field"] == "features.api.overage"
        assert system.aggregate(plan_id("acme", "pro")) is None
    finally:
        system.close()


def test_included_units_and_base_fee_timing() -> None:
    plan = terms(features=[metered(included=250, overage=USD_OVERAGE)])
    assert plan.feature("api").included == 250  # type: ignore[union-attr]
    assert plan.base_fee_timing == "in_advance"  # the default, as Stripe
    arrears = PlanTerms.model_validate({**plan.model_dump(), "base_fee_timing": "in_arrears"})
    assert arrears.base_fee_timing == "in_arrears"
    with pytest.raises(ValidationError):
        PlanTerms.model_validate({**plan.model_dump(), "base_fee_timing": "monthly"})
    with pytest.raises(ValidationError, match="boolean feature has no included"):
        terms(features=[{"key": "sso", "kind": "boolean", "included": 3}])
    with pytest.raises(ValidationError):
        terms(features=[metered(included=-1)])


def test_terms_stored_before_decimal_prices_load_unchanged() -> None:
    plan = terms(features=[metered(overage=USD_OVERAGE)])
    stored = plan.model_dump(mode="json")
    for new_field in ("base_fee_timing",):
        stored.pop(new_field)
    for feature in stored["features"]:
        feature.pop("included")
        feature["overage"].pop("free_units")
    loaded = PlanTerms.model_validate(stored)
    assert loaded == plan
    assert loaded.model_dump(mode="json")["features"][0]["overage"]["unit_price"] == {
        "amount": 2,
        "currency": "USD",
    }
    decimal = {"model": "per_unit", "unit_price": {"amount_decimal": "0.0035", "currency": "USD"}}
    with_decimal = terms(features=[metered(overage=decimal)])
    assert PlanTerms.model_validate(with_decimal.model_dump(mode="json")) == with_decimal

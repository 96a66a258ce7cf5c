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

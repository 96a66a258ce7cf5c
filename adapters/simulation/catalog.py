"""The opening of every simulated history: billing settings, tax rates, coupons, a catalog of
plans in two currencies and the tenants with their billing profiles, all drawn from the seed."""

from __future__ import annotations

from typing import Any

from adapters.simulation.world import World
from commands.billing.configure_billing import ConfigureBilling
from commands.coupons.create_coupon import CreateCoupon
from commands.plans.define_plan import DefinePlan
from commands.plans.revise_plan import RevisePlan
from commands.profiles.set_billing_profile import SetBillingProfile
from commands.tax.set_tax_rate import SetTaxRate

# country -> (timezone, tax rate, behaviour)
COUNTRIES = {
    "US": ("America/New_York", "8.875", "exclusive"),
    "DE": ("Europe/Berlin", "19.0", "inclusive"),
    "GB": ("Europe/London", "20.0", "exclusive"),
}
CURRENCIES = ("USD", "USD", "EUR")
METERED = ("api", "events")  # the features usage goes to
COUPONS: dict[str, dict[str, Any]] = {
    "ten": {"percent_off": 10, "duration": "forever"},
    "q2": {"percent_off": "12.5", "duration": "repeating", "duration_in_periods": 2},
    "once5": {"amount_off": {"amount": 500, "currency": "USD"}, "duration": "once"},
    "credit15": {"amount_off": {"amount": 1500, "currency": "USD"}, "carry_forward": True},
}
TENANTS = 6
PLANS = 5


def money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def open_catalog(world: World) -> None:
    """Everything the random steps act on; each command traced like any other step."""
    configure(world)
    for country, (_zone, rate, behavior) in COUNTRIES.items():
        world.act(
            f"set_tax_rate {country}",
            SetTaxRate,
            country=country,
            rate_percent=rate,
            behavior=behavior,
        )
    for code, terms in COUPONS.items():
        world.act(f"create_coupon {code}", CreateCoupon, code=code, **terms)
    world.coupons = sorted(COUPONS)
    for index in range(PLANS):
        define(world, f"plan{index}", world.rng.choice(CURRENCIES))
    for index in range(TENANTS):
        tenant(world, f"t{index + 1}")


def configure(world: World) -> None:
    rng = world.rng
    world.act(
        "configure_billing",
        ConfigureBilling,
        grace_period_hours=rng.choice([0, 0, 24]),
        proration_unit=rng.choice(["second", "day"]),
        dunning_retry_days=rng.choice([[1, 3, 5], [2, 7]]),
        dunning_final_action=rng.choice(["cancel", "unpaid"]),
    )


def define(world: World, key: str, currency: str) -> None:
    terms = plan_terms(world, key, currency)
    if world.act(f"define_plan {key} {currency}", DefinePlan, **terms).ok:
        world.plans[key] = terms


def revise(world: World) -> None:
    """A new version of a plan (new subscribers get it; existing ones keep theirs)."""
    key = world.pick(sorted(world.plans))
    if key is None:
        return
    terms = plan_terms(world, key, world.plans[key]["base_price"]["currency"])
    if world.act(f"revise_plan {key}", RevisePlan, **terms).ok:
        world.plans[key] = terms


def plan_terms(world: World, key: str, currency: str) -> dict[str, Any]:
    rng = world.rng
    features = [api_feature(world, currency), events_feature(world, currency)]
    if rng.random() < 0.6:
        price = rng.choice([0, 300, 500])
        features.append(
            {"key": "seats", "kind": "seats", "limit": 20, "seat_price": money(price, currency)}
        )
    if rng.random() < 0.5:
        features.append({"key": "sso", "kind": "boolean"})
    terms: dict[str, Any] = {
        "plan_key": key,
        "name": key.title(),
        "base_price": money(rng.choice([0, 900, 1000, 2500, 4900]), currency),
        "interval": rng.choice(["month", "month", "month", "year"]),
        "trial_days": rng.choice([0, 0, 7, 14]),
        "base_fee_timing": rng.choice(["in_advance", "in_advance", "in_arrears"]),
        "features": features,
    }
    if rng.random() < 0.2:
        terms["minimum_spend"] = money(rng.choice([2000, 5000]), currency)
    if rng.random() < 0.2:  # interim invoices when usage spend crosses these
        terms["progressive_thresholds"] = [money(300, currency), money(1500, currency)]
    return terms


def api_feature(world: World, currency: str) -> dict[str, Any]:
    """Hard-limited requests: the quota checks are about this one."""
    rng = world.rng
    return {
        "key": "api",
        "kind": "metered",
        "limit": rng.choice([100, 300, 1000]),
        "period": rng.choice(["month", "month", "day"]),
        "enforcement": "hard",
        "overage": {"model": "per_unit", "unit_price": money(rng.choice([1, 2, 5]), currency)},
        "included": rng.choice([0, 50]),
    }


def events_feature(world: World, currency: str) -> dict[str, Any]:
    """Soft-limited events billed past the limit in graduated tiers."""
    rng = world.rng
    tiers = [
        {"up_to": 100, "unit_price": money(3, currency)},
        {"up_to": None, "unit_price": {"amount_decimal": "0.5", "currency": currency}},
    ]
    return {
        "key": "events",
        "kind": "metered",
        "limit": rng.choice([200, 500]),
        "enforcement": "soft",
        "meter": rng.choice(["sum", "sum", "max"]),
        "overage": {"model": "graduated", "tiers": tiers},
    }


def tenant(world: World, name: str) -> None:
    """A tenant, most with a billing profile (country, timezone, tax status)."""
    world.tenants.append(name)
    if world.rng.random() < 0.2:
        return
    country = world.rng.choice(sorted(COUNTRIES))
    status = world.rng.choice(["taxable", "taxable", "exempt", "reverse_charge"])
    world.act(
        f"set_billing_profile {name} {country} {status}",
        SetBillingProfile,
        tenant_id=name,
        name=f"Tenant {name}",
        email=f"{name}@example.com",
        country=country,
        tax_id=None if status == "taxable" else f"{country}123456789",
        tax_status=status,
        timezone=COUNTRIES[country][0],
        currency="USD",
    )

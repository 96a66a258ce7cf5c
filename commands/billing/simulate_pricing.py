"""What-if pricing: re-price a period's recorded usage under a draft of a plan's terms, per
subscription on the plan, beside what its current terms cost; records nothing.

The amount of a period under some terms (docs/pricing.md "Compare and what-if") is what an
invoice's charge lines would hold, by the very line rules of domain/billing.py:
- the base fee (the subscription's pricing zone) and its seats, for `fee_intervals` of the
  terms' interval: one full fee when the period is one interval, else the fee times the exact
  number of intervals the period spans, rounded once, half-up;
- one usage line per tier, package step or unit price reached, for each priced metered feature
  of the terms, from the usage recorded over [start, end) (up to `cutoff`), its included units
  off first.
Each side is rated by the PricingStrategy (and counted by the UsageAggregator) its terms
name, else the settings' ones (docs/plugins.md), as billing would. Before coupons and tax
(the same for both sides); trials, pauses and pending prorations are
not considered. A subscription whose current terms are in another currency than the draft is
skipped, as is a listed tenant without a live subscription on the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from commands.base import ID_PATTERN
from commands.billing.compose import BillingPorts
from commands.billing.ports import UsageReader
from commands.plans.terms_input import PlanTermsInput
from domain.billing import BillingPoint, UsageTotal, fee_lines, priced_features, usage_lines
from domain.catalog import KEY_PATTERN, PlanTerms
from domain.errors import InvalidValue, NotFound
from domain.invoice import InvoiceLine, compute_totals
from domain.money import Money
from domain.period import Period
from domain.plan import Plan, plan_id
from domain.plan_compare import fee_intervals
from domain.subscription import Subscription, SubscriptionState

MAX_TENANTS = 1000
MAX_PERIOD = timedelta(days=3660)  # ten years
SIDES = ("current", "draft", "difference")

Load = Callable[[UUID], Any]


class SubscriptionIndex(Protocol):
    """Port: the ids of an app's aggregates of a kind, optionally one tenant's."""

    def ids(self, app_id: str, kind: str, tenant_id: str | None = None) -> list[UUID]: ...


class SimulationPeriod(BaseModel):
    """The half-open window [start, end) whose usage is re-priced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: AwareDatetime
    end: AwareDatetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is None:
            return value
        if value <= start:
            raise InvalidValue("period.end must be after period.start", field="period.end")
        if value - start > MAX_PERIOD:
            raise InvalidValue("a period spans at most 3660 days", field="period.end")
        return value

    def window(self) -> Period:
        return Period(start=self.start, end=self.end)


class SimulatePricing(BaseModel):
    """A draft of a plan's terms and the period whose recorded usage it re-prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_key: str = Field(pattern=KEY_PATTERN)
    draft: PlanTermsInput = Field(description="plan terms as POST /v1/plans takes them")
    period: SimulationPeriod
    tenant_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        default=None,
        max_length=MAX_TENANTS,
        description="only these tenants' subscriptions (default: every one on the plan)",
    )

    @model_validator(mode="before")
    @classmethod
    def _draft_of_the_plan(cls, data: Any) -> Any:
        """The draft's plan_key may be left out: it is the plan's."""
        plan_key = data.get("plan_key") if isinstance(data, dict) else None
        if isinstance(plan_key, str) and isinstance(data.get("draft"), dict):
            data = {**data, "draft": {"plan_key": plan_key, **data["draft"]}}
        return data

    @field_validator("tenant_ids")
    @classmethod
    def _once_each(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))


def simulate_pricing(
    load: Load,
    index: SubscriptionIndex,
    usage: UsageReader,
    app_id: str,
    simulation: SimulatePricing,
    cutoff: int | None = None,
    ports: BillingPorts | None = None,
) -> dict[str, Any]:
    """Per subscription on the plan: the period under its current terms, under the draft,
    and the difference; with totals per currency. Reads only. `ports`: the strategies
    (default: the domain's, reading `usage`)."""
    ports = ports or BillingPorts(usage=usage)
    plan = _plan(load, app_id, simulation.plan_key)
    draft = draft_terms(plan, simulation)
    _check_strategies(ports, draft)
    period = simulation.period.window()
    found, skipped = _subscriptions(load, index, app_id, simulation)
    rows = []
    for subscription in found:
        if subscription.state.terms.base_price.currency != draft.base_price.currency:
            skipped.append(_skip(subscription.state, subscription.id, "currency"))
            continue
        rows.append(_row(subscription, draft, period, ports, cutoff))
    return {
        "plan_key": plan.state.key,
        "draft": draft.model_dump(mode="json"),
        "period": period.model_dump(mode="json"),
        "usage_cutoff": cutoff,
        "tenants": rows,
        "totals": _totals(rows),
        "skipped": skipped,
    }


def _check_strategies(ports: BillingPorts, draft: PlanTerms) -> None:
    """The strategies a draft names are registered plugins (the field named under draft)."""
    try:
        ports.named.check(draft)
    except InvalidValue as error:
        raise InvalidValue(error.message, field=f"draft.{error.field}") from None


def _plan(load: Load, app_id: str, plan_key: str) -> Plan:
    plan = load(plan_id(app_id, plan_key))
    if not isinstance(plan, Plan) or plan.state.app_id != app_id:
        raise NotFound(f"plan {plan_key} not found", field="plan_key")
    return plan


def draft_terms(plan: Plan, simulation: SimulatePricing) -> PlanTerms:
    """The draft as the plan's next version would be; in the plan's currency."""
    draft = simulation.draft
    if draft.plan_key != plan.state.key:
        raise InvalidValue(
            f"the draft is of plan {plan.state.key}, got {draft.plan_key}", field="draft.plan_key"
        )
    currency = plan.state.latest.base_price.currency
    if draft.base_price.currency != currency:
        raise InvalidValue(
            f"draft.base_price must be in the plan's currency {currency}, "
            f"got {draft.base_price.currency}",
            field="draft.base_price",
            rule="currency",
        )
    return draft.terms(version=plan.state.latest.version + 1)


def _subscriptions(
    load: Load, index: SubscriptionIndex, app_id: str, simulation: SimulatePricing
) -> tuple[list[Subscription], list[dict[str, Any]]]:
    """The live subscriptions on the plan (of the listed tenants), and the listed tenants
    that have none."""
    key = simulation.plan_key
    if simulation.tenant_ids is None:
        return _on_plan(load, index.ids(app_id, "subscription"), app_id, key), []
    found: list[Subscription] = []
    skipped: list[dict[str, Any]] = []
    for tenant in simulation.tenant_ids:
        theirs = _on_plan(load, index.ids(app_id, "subscription", tenant), app_id, key)
        found += theirs
        if not theirs:
            skipped.append(
                {"tenant_id": tenant, "subscription_id": None, "reason": "no_subscription"}
            )
    return found, skipped


def _on_plan(load: Load, ids: list[UUID], app_id: str, plan_key: str) -> list[Subscription]:
    subscriptions = (load(aggregate_id) for aggregate_id in ids)
    return [
        s
        for s in subscriptions
        if isinstance(s, Subscription)
        and s.state.app_id == app_id
        and s.is_live()
        and s.state.terms.plan_key == plan_key
    ]


def _skip(state: SubscriptionState, subscription_id: UUID, reason: str) -> dict[str, Any]:
    return {"tenant_id": state.tenant_id, "subscription_id": str(subscription_id), "reason": reason}


def _row(
    subscription: Subscription,
    draft: PlanTerms,
    period: Period,
    ports: BillingPorts,
    cutoff: int | None,
) -> dict[str, Any]:
    state = subscription.state
    sides = (ports.for_terms(state.terms), ports.for_terms(draft))
    readers = (sides[0].usage, sides[1].usage)
    current_usage, draft_usage = read_usage(readers, state, (state.terms, draft), period, cutoff)
    current = priced_lines(state, state.terms, period, current_usage, sides[0])
    drafted = priced_lines(state, draft, period, draft_usage, sides[1])
    before, after = _amount(state.terms, current), _amount(draft, drafted)
    return {
        "tenant_id": state.tenant_id,
        "subscription_id": str(subscription.id),
        "status": state.status.value,
        "current_version": state.terms.version,
        "current": before.model_dump(mode="json"),
        "draft": after.model_dump(mode="json"),
        "difference": (after - before).model_dump(mode="json"),
        "lines": {"current": _shown(current), "draft": _shown(drafted)},
    }


def read_usage(
    readers: tuple[UsageReader, UsageReader],
    state: SubscriptionState,
    terms: tuple[PlanTerms, PlanTerms],
    period: Period,
    cutoff: int | None,
) -> tuple[dict[str, UsageTotal], dict[str, UsageTotal]]:
    """The usage each side prices: one read when both count each feature by the same meter."""
    wanted = [[(f.key, f.meter.value) for f in priced_features(t)] for t in terms]
    union = list(dict.fromkeys(pair for pairs in wanted for pair in pairs))

    def read(pairs: list[tuple[str, str]], reader: UsageReader) -> dict[str, UsageTotal]:
        if not pairs:
            return {}
        return reader.totals(state.app_id, state.tenant_id, pairs, period, cutoff)

    if readers[0] is readers[1] and len({key for key, _ in union}) == len(union):
        both = read(union, readers[0])
        return both, both
    return read(wanted[0], readers[0]), read(wanted[1], readers[1])


def priced_lines(
    state: SubscriptionState,
    terms: PlanTerms,
    period: Period,
    usage: dict[str, UsageTotal],
    ports: BillingPorts,
) -> list[InvoiceLine]:
    """The charge lines of `period` under `terms`: fee and seats, then usage."""
    point = BillingPoint(
        at=period.end,
        fee_period=period,
        fee_share=fee_intervals(period, terms.interval, state.timezone),
        usage_period=period,
        fee_terms=terms,
        usage_terms=terms,
    )
    return fee_lines(state, point) + usage_lines(point, usage, ports.pricing.rate_feature)


def _amount(terms: PlanTerms, lines: list[InvoiceLine]) -> Money:
    return compute_totals(terms.base_price.currency, lines).subtotal


def _shown(lines: list[InvoiceLine]) -> list[dict[str, Any]]:
    """The lines as an invoice holds them, without the event ids (explain has those)."""
    return [line.model_dump(mode="json", exclude={"source_event_ids"}) for line in lines]


def _totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per currency: the sums of the current amounts, the draft amounts and the differences,
    and how many subscriptions they cover."""
    sums: dict[str, dict[str, Money]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        currency = row["current"]["currency"]
        into = sums.setdefault(currency, {side: Money.zero(currency) for side in SIDES})
        for side in SIDES:
            into[side] = into[side] + Money(**row[side])
        counts[currency] = counts.get(currency, 0) + 1
    return {
        currency: {
            **{side: money.model_dump(mode="json") for side, money in by_side.items()},
            "subscriptions": counts[currency],
        }
        for currency, by_side in sums.items()
    }

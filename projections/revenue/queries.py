"""Queries over the revenue read model (see projections/revenue/projector.py for the rules).

- `revenue`: MRR and ARR now per currency (MRR = ARR / 12 rounded half-up, from the exact
  annualized sum), recognized revenue per day or month (recognized on the day an invoice is
  paid, UTC) optionally limited to a currency and a time range (`from` rounded down to its
  day or month, `to` exclusive), and paid/failed invoice counts.
- `subscription_metrics`: subscriptions that have not ended per plan and status, totals,
  and churned subscriptions per month with the MRR they took away.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from domain.money import round_half_up, validate_currency
from projections.queries import QueryContext, query
from projections.revenue.projector import (
    ARR,
    CHURN,
    INVOICES,
    LIVE,
    PAYING,
    PLAN_STATUS,
    RECOGNIZED,
)
from projections.usage.projector import DAY, MONTH
from projections.usage.queries import (
    check_granularity,
    reject_unknown,
    required_text,
    time_range,
)


def mrr_of(arr: int) -> int:
    """Monthly recurring revenue from the exact annual amount: ARR / 12, half-up."""
    return round_half_up(Fraction(arr, 12))


def _currency(currency: Any) -> str | None:
    if currency is None or currency == "":
        return None
    if not isinstance(currency, str):
        return validate_currency(repr(currency))
    return validate_currency(currency)


@query("revenue")
def revenue(
    ctx: QueryContext,
    app_id: str,
    granularity: str = MONTH,
    currency: str | None = None,
    to: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """{mrr: {currency: minor units}, arr: {...}, recognized: [{period, currency, amount,
    invoices}], invoices: {paid, failed, failed_attempts}}. `period` is "YYYY-MM-DD" (day)
    or "YYYY-MM" (month); pass the start as `from` or `from_`."""
    reject_unknown(params)
    app_id = required_text(app_id, "app_id")
    granularity = check_granularity(granularity, (DAY, MONTH))
    code = _currency(currency)
    start, end = time_range(params, to, granularity)

    filters = "app_id = :app_id" + (" AND currency = :currency" if code else "")
    values: dict[str, Any] = {"app_id": app_id}
    if code:
        values["currency"] = code
    arr_rows = ctx.views.query(
        f"SELECT currency, arr FROM {{{ARR}}} WHERE {filters} ORDER BY currency", values
    )
    arr = {row["currency"]: int(row["arr"]) for row in arr_rows}

    where = filters
    if start is not None:
        where += " AND day >= :range_start"
        values["range_start"] = start.strftime("%Y-%m-%d")
    if end is not None:
        where += " AND day < :range_end"
        values["range_end"] = end.strftime("%Y-%m-%d")
    days = ctx.views.query(
        f"SELECT currency, day, amount, invoices FROM {{{RECOGNIZED}}} WHERE {where}",
        values,
    )
    width = 10 if granularity == DAY else 7
    recognized: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in days:
        totals = recognized[(str(row["day"])[:width], str(row["currency"]))]
        totals[0] += int(row["amount"])
        totals[1] += int(row["invoices"])

    counts = ctx.views.query(
        "SELECT SUM(paid) AS paid, SUM(failed) AS failed, SUM(failed_attempts) AS attempts "
        f"FROM {{{INVOICES}}} WHERE {filters}",
        values,
    )[0]
    return {
        "mrr": {code_: mrr_of(amount) for code_, amount in arr.items()},
        "arr": arr,
        "recognized": [
            {"period": period, "currency": code_, "amount": amount, "invoices": invoices}
            for (period, code_), (amount, invoices) in sorted(recognized.items())
        ],
        "invoices": {
            "paid": int(counts["paid"] or 0),
            "failed": int(counts["failed"] or 0),
            "failed_attempts": int(counts["attempts"] or 0),
        },
    }


@query("subscription_metrics")
def subscription_metrics(ctx: QueryContext, app_id: str) -> dict[str, Any]:
    """{by_plan_and_status: [{plan_key, status, subscriptions}] (subscriptions that have not
    ended: trialing, active, past_due, paused), by_status: {status: n} (every status, ended
    ones too), active_total (not ended), paying_total (active + past_due, the ones in MRR),
    churned_by_month: [{month, subscriptions, lost_mrr: {currency: minor units}}]}."""
    app_id = required_text(app_id, "app_id")
    values = {"app_id": app_id}
    rows = ctx.views.query(
        f"SELECT plan_key, status, subscriptions FROM {{{PLAN_STATUS}}} "
        "WHERE app_id = :app_id AND subscriptions <> 0 ORDER BY plan_key, status",
        values,
    )
    by_status: dict[str, int] = defaultdict(int)
    for row in rows:
        by_status[row["status"]] += int(row["subscriptions"])
    churn_rows = ctx.views.query(
        f"SELECT month, currency, subscriptions, arr FROM {{{CHURN}}} "
        "WHERE app_id = :app_id ORDER BY month, currency",
        values,
    )
    churned: dict[str, dict[str, Any]] = {}
    for row in churn_rows:
        month = churned.setdefault(
            row["month"], {"month": row["month"], "subscriptions": 0, "lost_mrr": {}}
        )
        month["subscriptions"] += int(row["subscriptions"])
        month["lost_mrr"][row["currency"]] = mrr_of(int(row["arr"]))
    return {
        "by_plan_and_status": [
            {
                "plan_key": row["plan_key"],
                "status": row["status"],
                "subscriptions": int(row["subscriptions"]),
            }
            for row in rows
            if row["status"] in LIVE
        ],
        "by_status": dict(sorted(by_status.items())),
        "active_total": sum(n for status, n in by_status.items() if status in LIVE),
        "paying_total": sum(n for status, n in by_status.items() if status in PAYING),
        "churned_by_month": list(churned.values()),
    }

"""Queries over the revenue read model (see projections/revenue/projector.py and
docs/revenue.md for the rules).

- `revenue`: MRR and ARR now per currency (MRR = ARR / 12 rounded half-up, from the exact
  annualized sum), recognized revenue per day or month, deferred revenue, and paid/failed
  invoice counts; optionally one currency, a time range (`from` rounded down to its day or
  month, `to` exclusive) and `as_of` (default: now by the clock) for recognized and deferred.
- `recognized_revenue`: the recognized rows alone, `deferred_revenue`: deferred revenue at
  an instant alone.
- `subscription_metrics`: subscriptions that have not ended per plan and status, totals,
  and churned subscriptions per month with the MRR they took away.

Recognized revenue is the schedule of finalized, not voided invoices by service day, as
known now, counted up to and including the UTC day of `as_of` (a day is recognized once it
has begun). Deferred revenue at an instant is what invoices finalized by the end of that
UTC day billed and had not yet earned by then.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

from domain.money import round_half_up, validate_currency
from domain.subscription import PAYING, RUNNING
from projections.queries import QueryContext, query
from projections.revenue.projector import (
    ARR,
    ARR_CHANGES,
    CHURN,
    INVOICES,
    PLAN_STATUS,
    RECOGNITION,
)
from projections.usage.projector import DAY, MONTH, parse_instant
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


def _instant(ctx: QueryContext, value: Any, field: str) -> datetime:
    """The instant a parameter names, or now by the query's clock."""
    if value is None:
        return ctx.now().astimezone(UTC)
    return parse_instant(value, field)


def _filters(app_id: str, currency: str | None) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {"app_id": app_id}
    if currency is None:
        return "app_id = :app_id", values
    values["currency"] = currency
    return "app_id = :app_id AND currency = :currency", values


@query("recognized_revenue")
def recognized_revenue(
    ctx: QueryContext,
    app_id: str,
    granularity: str = MONTH,
    currency: str | None = None,
    to: str | None = None,
    as_of: str | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """[{period, currency, amount, invoices}]: revenue recognized per UTC day ("YYYY-MM-DD")
    or calendar month ("YYYY-MM") up to and including the day of `as_of` (default now);
    `invoices` counts the invoices with a non-zero share in the period. Pass the start as
    `from` or `from_`; periods with nothing recognized are left out."""
    reject_unknown(params)
    app_id = required_text(app_id, "app_id")
    granularity = check_granularity(granularity, (DAY, MONTH))
    code = _currency(currency)
    start, end = time_range(params, to, granularity)
    return _recognized(ctx, app_id, granularity, code, (start, end), _instant(ctx, as_of, "as_of"))


def _days_to(app_id: str, currency: str | None, instant: datetime) -> tuple[str, dict[str, Any]]:
    """The filter of a per-day table's rows of the app (and currency) up to `instant`'s day."""
    where, values = _filters(app_id, currency)
    values["last_day"] = instant.strftime("%Y-%m-%d")
    return where + " AND day <= :last_day", values


def _recognized(
    ctx: QueryContext,
    app_id: str,
    granularity: str,
    currency: str | None,
    window: tuple[datetime | None, datetime | None],
    instant: datetime,
) -> list[dict[str, Any]]:
    start, end = window
    where, values = _days_to(app_id, currency, instant)
    if start is not None:
        where += " AND day >= :range_start"
        values["range_start"] = start.strftime("%Y-%m-%d")
    if end is not None:
        where += " AND day < :range_end"
        values["range_end"] = end.strftime("%Y-%m-%d")
    rows = ctx.views.query(
        f"SELECT currency, day, amount, invoices, first_in_month FROM {{{RECOGNITION}}} "
        f"WHERE {where}",
        values,
    )
    return _per_period(rows, granularity)


def _history(
    ctx: QueryContext,
    app_id: str,
    granularity: str,
    currency: str | None,
    window: tuple[datetime | None, datetime | None],
    instant: datetime,
) -> list[dict[str, Any]]:
    """ARR (and MRR) at the end of each period, per currency, from the first change (or the
    window's start) to the period of `instant` (or the window's end): the day-by-day ARR
    changes summed in order, periods without a change carrying the last figure on."""
    where, values = _days_to(app_id, currency, instant)
    rows = ctx.views.query(
        f"SELECT currency, day, arr_delta FROM {{{ARR_CHANGES}}} WHERE {where} "
        "ORDER BY currency, day",
        values,
    )
    by_currency: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        by_currency[str(row["currency"])].append((str(row["day"]), int(row["arr_delta"])))
    width = 10 if granularity == DAY else 7
    return [
        {"period": period, "currency": code, "arr": arr, "mrr": mrr_of(arr)}
        for code, changes in sorted(by_currency.items())
        for period, arr in _at_period_ends(changes, width, window, instant, granularity)
    ]


def _at_period_ends(
    changes: list[tuple[str, int]],
    width: int,
    window: tuple[datetime | None, datetime | None],
    instant: datetime,
    granularity: str,
) -> list[tuple[str, int]]:
    """(period, ARR at its end) for each period from the first change to `instant`'s, kept
    to the window."""
    totals: dict[str, int] = {}
    running = 0
    for day, delta in changes:
        running += delta
        totals[day[:width]] = running
    start, end = window
    first = min(totals)
    periods = _periods(first, instant.strftime("%Y-%m-%d")[:width], granularity)
    found, arr = [], 0
    for period in periods:
        arr = totals.get(period, arr)
        inside = (start is None or period >= start.strftime("%Y-%m-%d")[:width]) and (
            end is None or period < end.strftime("%Y-%m-%d")[:width]
        )
        if inside:
            found.append((period, arr))
    return found


def _periods(first: str, last: str, granularity: str) -> list[str]:
    """Every day ("YYYY-MM-DD") or month ("YYYY-MM") from first to last, both included."""
    if granularity == DAY:
        day, stop = date.fromisoformat(first), date.fromisoformat(last)
        return [(day + timedelta(days=n)).isoformat() for n in range((stop - day).days + 1)]
    year, month = int(first[:4]), int(first[5:7])
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _per_period(rows: list[dict[str, Any]], granularity: str) -> list[dict[str, Any]]:
    width, counted = (10, "invoices") if granularity == DAY else (7, "first_in_month")
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        total = totals[(str(row["day"])[:width], str(row["currency"]))]
        total[0] += int(row["amount"])
        total[1] += int(row[counted])
    return [
        {"period": period, "currency": code, "amount": amount, "invoices": invoices}
        for (period, code), (amount, invoices) in sorted(totals.items())
        if amount or invoices
    ]


@query("deferred_revenue")
def deferred_revenue(
    ctx: QueryContext, app_id: str, currency: str | None = None, at: str | None = None
) -> dict[str, Any]:
    """{at, deferred: {currency: minor units}}: what invoices finalized by the end of the UTC
    day of `at` (default now) billed and had not earned by then (voided invoices left out)."""
    app_id = required_text(app_id, "app_id")
    code = _currency(currency)
    instant = _instant(ctx, at, "at")
    return {"at": instant.isoformat(), "deferred": _deferred(ctx, app_id, code, instant)}


def _deferred(
    ctx: QueryContext, app_id: str, currency: str | None, instant: datetime
) -> dict[str, int]:
    where, values = _filters(app_id, currency)
    values["last_day"] = instant.strftime("%Y-%m-%d")
    rows = ctx.views.query(
        f"SELECT currency, SUM(billed) - SUM(earned) AS deferred FROM {{{RECOGNITION}}} "
        f"WHERE {where} AND day <= :last_day GROUP BY currency ORDER BY currency",
        values,
    )
    return {str(row["currency"]): int(row["deferred"]) for row in rows}


@query("revenue")
def revenue(
    ctx: QueryContext,
    app_id: str,
    granularity: str = MONTH,
    currency: str | None = None,
    to: str | None = None,
    as_of: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """{mrr: {currency: minor units}, arr: {...}, history: [{period, currency, arr, mrr}]
    (ARR and MRR at the end of each day or month, up to `as_of`), recognized: [{period,
    currency, amount, invoices}] (as recognized_revenue), deferred: {currency: minor units}
    at `as_of`, as_of, invoices: {paid, failed, failed_attempts}}. MRR and ARR are always
    now; `as_of` (default now) moves history, recognized and deferred."""
    reject_unknown(params)
    app_id = required_text(app_id, "app_id")
    granularity = check_granularity(granularity, (DAY, MONTH))
    code = _currency(currency)
    window = time_range(params, to, granularity)
    instant = _instant(ctx, as_of, "as_of")
    where, values = _filters(app_id, code)
    arr_rows = ctx.views.query(
        f"SELECT currency, arr FROM {{{ARR}}} WHERE {where} ORDER BY currency", values
    )
    arr = {row["currency"]: int(row["arr"]) for row in arr_rows}
    counts = ctx.views.query(
        "SELECT SUM(paid) AS paid, SUM(failed) AS failed, SUM(failed_attempts) AS attempts "
        f"FROM {{{INVOICES}}} WHERE {where}",
        values,
    )[0]
    return {
        "mrr": {code_: mrr_of(amount) for code_, amount in arr.items()},
        "arr": arr,
        "history": _history(ctx, app_id, granularity, code, window, instant),
        "recognized": _recognized(ctx, app_id, granularity, code, window, instant),
        "deferred": _deferred(ctx, app_id, code, instant),
        "as_of": instant.isoformat(),
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
            if row["status"] in RUNNING
        ],
        "by_status": dict(sorted(by_status.items())),
        "active_total": sum(n for status, n in by_status.items() if status in RUNNING),
        "paying_total": sum(n for status, n in by_status.items() if status in PAYING),
        "churned_by_month": list(churned.values()),
    }

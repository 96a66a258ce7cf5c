"""Chart specs from the API's answers (revenue, subscription metrics, usage): the same
numbers the API gives, only arranged as labels and series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from adapters.console.render import chart, major


def _money(amount: int, currency: str) -> float:
    return major({"amount": amount, "currency": currency})


def mrr_arr(revenue: Mapping[str, Any]) -> dict[str, Any]:
    """MRR and ARR now, per currency (major units)."""
    currencies = sorted(revenue["arr"])
    return chart(
        "bar",
        currencies,
        [
            {"label": "MRR", "data": [_money(revenue["mrr"][c], c) for c in currencies]},
            {"label": "ARR", "data": [_money(revenue["arr"][c], c) for c in currencies]},
        ],
    )


def mrr_history(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """MRR at the end of each month, one line per currency (major units)."""
    return chart("line", *_per_currency(rows, "mrr", "MRR "))


def recognized(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Recognized revenue per month, one series per currency."""
    return chart("bar", *_per_currency(rows, "amount"))


def _per_currency(
    rows: Iterable[Mapping[str, Any]], figure: str, label: str = ""
) -> tuple[list[str], list[dict[str, Any]]]:
    """(periods, one series per currency) of a money figure of {period, currency, …} rows."""
    by_currency: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        by_currency[row["currency"]][row["period"]] = _money(row[figure], row["currency"])
    periods = sorted({period for series in by_currency.values() for period in series})
    datasets = [
        {"label": f"{label}{currency}", "data": [series.get(p, 0.0) for p in periods]}
        for currency, series in sorted(by_currency.items())
    ]
    return periods, datasets


def plans(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Subscriptions that have not ended, per plan, stacked by status."""
    rows = metrics["by_plan_and_status"]
    keys = sorted({row["plan_key"] for row in rows})
    statuses = sorted({row["status"] for row in rows})
    counts = {(row["plan_key"], row["status"]): row["subscriptions"] for row in rows}
    datasets = [{"label": s, "data": [counts.get((k, s), 0) for k in keys]} for s in statuses]
    return chart("bar", keys, datasets, stacked=True)


def churn(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Paying subscriptions canceled or expired, per month."""
    months = metrics["churned_by_month"]
    return chart(
        "bar",
        [m["month"] for m in months],
        [{"label": "churned", "data": [m["subscriptions"] for m in months]}],
    )


def invoices(revenue: Mapping[str, Any]) -> dict[str, Any]:
    """Paid invoices beside invoices with a failed payment attempt."""
    counts = revenue["invoices"]
    return chart(
        "doughnut",
        ["paid", "failed"],
        [{"label": "invoices", "data": [counts["paid"], counts["failed"]]}],
    )


def usage(rows: Iterable[Mapping[str, Any]], feature: str) -> dict[str, Any]:
    """One feature's usage buckets (quantity per bucket)."""
    found = [row for row in rows if row["feature"] == feature]
    return chart(
        "bar",
        [row["bucket_start"] for row in found],
        [{"label": feature, "data": [row["quantity"] for row in found]}],
    )


def has_points(spec: Mapping[str, Any]) -> bool:
    return any(any(value for value in d["data"]) for d in spec["datasets"])

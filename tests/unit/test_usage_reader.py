"""The billing engine's usage reader: totals up to a cut-off, and answers prefetched for a
billing run's batch served without asking the read model again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import adapters.billing.usage_reader as reader_module
from domain.period import Period
from tests.factories import T0, embedded_system, ok

PERIOD = Period(start=T0, end=T0 + timedelta(days=31))


def consumed(system: Any, *amounts: int) -> int:
    ok(
        system.dispatch(
            "configure_quota",
            {"app_id": "acme", "tenant_id": "t1", "feature_key": "api", "limit": None},
        )
    )
    for i, amount in enumerate(amounts):
        ok(
            system.dispatch(
                "consume_quota",
                {
                    "app_id": "acme",
                    "tenant_id": "t1",
                    "feature_key": "api",
                    "amount": amount,
                    "idempotency_key": f"k{i}",
                },
            )
        )
    return int(system.sync())


def test_prefetched_answers_are_served_and_others_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    system = embedded_system()
    try:
        cutoff = consumed(system, 5, 3, 5)
        usage = system.usage_reader
        usage.prefetch("acme", [("t1", [("api", "sum"), ("api", "max")], PERIOD)], cutoff)
        calls: list[int] = []
        real = reader_module.billable_usage_many

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(reader_module, "billable_usage_many", counting)
        totals = usage.totals("acme", "t1", [("api", "sum"), ("api", "max")], PERIOD, cutoff)
        assert (totals["api"].quantity, calls) == (5, [])  # the last asked (max) wins the key
        summed = usage.totals("acme", "t1", [("api", "sum")], PERIOD, cutoff)
        assert summed["api"].quantity == 13 and calls == []
        usage.totals("acme", "t1", [("api", "count")], PERIOD, cutoff)
        assert calls == [1]  # not prefetched: asked
        usage.forget()
        assert usage.totals("acme", "t1", [("api", "sum")], PERIOD, cutoff)["api"].quantity == 13
        assert calls == [1, 1]
        assert usage.totals("acme", "t1", [("api", "sum")], PERIOD, 1)["api"].quantity == 0
    finally:
        system.close()

"""Racing credit notes on PostgreSQL: two Systems (two command buses, as two processes would
be) on one event store, many threads each. The invoice aggregate and the app's credit note
numbering decide by optimistic concurrency: never more than the line holds is credited, and
the numbers that were given are 1..n without gaps or repeats."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from domain.clock import SettableClock
from domain.credit_note import CreditNoteNumbering, credit_note_numbering_id
from domain.invoice import Invoice
from tests.factories import T0, ok

pytestmark = pytest.mark.postgres

APP = "acme"


@pytest.fixture
def systems(pg_url: str, pg_schema: str) -> Iterator[list[System]]:
    built = [
        bootstrap(Settings(database_url=pg_url), SettableClock(T0), schema=pg_schema)
        for _ in range(2)
    ]
    try:
        yield built
    finally:
        for system in built:
            system.close()


def finalized_invoice(system: System, tenant: str, amount: int) -> tuple[str, str]:
    line = {
        "kind": "seats",
        "description": "Seats",
        "quantity": 10,
        "unit_amount": {"amount": amount // 10, "currency": "USD"},
    }
    drafted = ok(
        system.dispatch(
            "draft_invoice",
            {"app_id": APP, "tenant_id": tenant, "currency": "USD", "lines": [line]},
        )
    )
    ok(system.dispatch("finalize_invoice", {"app_id": APP, "invoice_id": drafted["invoice_id"]}))
    return str(drafted["invoice_id"]), str(drafted["lines"][0]["line_id"])


def test_racing_credit_notes_never_credit_more_than_the_line(systems: list[System]) -> None:
    invoice_id, line_id = finalized_invoice(systems[0], "t1", 10_000)
    other_id, other_line = finalized_invoice(systems[0], "t2", 5_000)

    def attempt(index: int) -> dict[str, Any]:
        target, line = (invoice_id, line_id) if index % 4 else (other_id, other_line)
        return systems[index % 2].dispatch(
            "issue_credit_note",
            {
                "app_id": APP,
                "invoice_id": target,
                "reason": f"race {index}",
                "method": "credit_balance",
                "lines": [{"line_id": line, "quantity": 1}],  # 1,000 (500 on the other)
            },
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(attempt, range(32)))
    issued = [reply["result"] for reply in replies if reply["ok"]]
    refused = [reply["error"] for reply in replies if not reply["ok"]]
    assert {error["code"] for error in refused} == {"credit_exceeds_creditable"}, refused
    # 24 asked for the 10 units of the first invoice, 8 for the 10 units of the other
    on_first = [note for note in issued if note["invoice_id"] == invoice_id]
    on_other = [note for note in issued if note["invoice_id"] == other_id]
    assert (len(on_first), len(on_other)) == (10, 8)
    assert sorted(note["number"] for note in issued) == list(range(1, 19))
    assert len({note["number_text"] for note in issued}) == 18
    invoice = systems[1].aggregate(UUID(invoice_id))
    assert isinstance(invoice, Invoice)
    assert invoice.state.credited_amounts == {line_id: 10_000}
    assert invoice.state.credited_quantities == {line_id: 10}
    assert invoice.creditable_total.is_zero()
    numbering = systems[1].aggregate(credit_note_numbering_id(APP))
    assert isinstance(numbering, CreditNoteNumbering) and numbering.last_number == 18

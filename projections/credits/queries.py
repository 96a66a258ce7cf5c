"""Queries over the credits read model.

- `credits`: one tenant's grants, oldest first, each with what is left (`remaining`, the
  sum of its movements) and its movements in log order, and the balance per currency (what
  the active grants hold; expired and voided grants hold nothing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidValue
from projections.credits.projector import GRANTS, MOVEMENTS
from projections.queries import QueryContext, query


@query("credits")
def credits(ctx: QueryContext, app_id: str, tenant_id: str) -> dict[str, Any]:
    params = {"app_id": _text(app_id, "app_id"), "tenant_id": _text(tenant_id, "tenant_id")}
    where = "app_id = :app_id AND tenant_id = :tenant_id"
    rows = ctx.views.query(f"SELECT * FROM {{{GRANTS}}} WHERE {where} ORDER BY sequence", params)
    moves = ctx.views.query(
        f"SELECT * FROM {{{MOVEMENTS}}} WHERE {where} ORDER BY position", params
    )
    by_grant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for move in moves:
        by_grant[str(move["grant_id"])].append(_movement(move))
    balance: dict[str, int] = {}
    for row in rows:
        if row["status"] == "active":
            balance[row["currency"]] = balance.get(row["currency"], 0) + int(row["remaining"])
    return {
        "tenant_id": tenant_id,
        "balance": [{"amount": balance[c], "currency": c} for c in sorted(balance)],
        "grants": [_grant(row, by_grant[str(row["grant_id"])]) for row in rows],
    }


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{field} must be a non-empty text", field=field)
    return value


def _money(amount: Any, currency: str) -> dict[str, Any]:
    return {"amount": int(amount), "currency": currency}


def _grant(row: Mapping[str, Any], movements: list[dict[str, Any]]) -> dict[str, Any]:
    currency = row["currency"]
    return {
        "grant_id": row["grant_id"],
        "tenant_id": row["tenant_id"],
        "amount": _money(row["amount"], currency),
        "remaining": _money(row["remaining"], currency),
        "priority": int(row["priority"]),
        "expires_at": row["expires_at"],
        "reason": row["reason"],
        "actor": row["actor"],
        "granted_at": row["granted_at"],
        "status": row["status"],
        "movements": movements,
    }


def _movement(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": row["kind"],
        "amount": _money(row["amount"], row["currency"]),
        "invoice_id": row["invoice_id"],
        "occurred_at": row["occurred_at"],
        "event_id": row["event_id"],
        "position": int(row["position"]),
    }

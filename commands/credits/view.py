"""The replies of the credit commands: a grant, and a tenant's credits now."""

from __future__ import annotations

from typing import Any

from domain.credit_grant import Grant, TenantCredits


def grant_view(tenant_id: str, grant: Grant) -> dict[str, Any]:
    """Ids as strings, Money as {"amount", "currency"}, times as ISO 8601."""
    return {
        "grant_id": str(grant.grant_id),
        "tenant_id": tenant_id,
        "amount": grant.amount.model_dump(),
        "remaining": grant.remaining.model_dump(),
        "priority": grant.priority,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "reason": grant.reason,
        "actor": grant.actor,
        "granted_at": grant.granted_at.isoformat(),
        "status": grant.status,
    }


def credits_view(ledger: TenantCredits) -> dict[str, Any]:
    """Every grant, oldest first, and the balance per currency (what active grants hold)."""
    tenant = ledger.state.tenant_id
    balances = ledger.balances()
    return {
        "tenant_id": tenant,
        "balance": [balances[c].model_dump() for c in sorted(balances)],
        "grants": [grant_view(tenant, g) for g in ledger.grants()],
    }

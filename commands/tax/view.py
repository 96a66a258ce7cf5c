"""The reply of the tax rate command and routes: one country's rate now."""

from __future__ import annotations

from typing import Any

from domain.tax import TaxRate


def tax_rate_view(rate: TaxRate) -> dict[str, Any]:
    state = rate.state
    return {
        "tax_rate_id": str(rate.id),
        "country": state.country,
        "rate_percent": state.rate_percent,
        "behavior": state.behavior.value,
        "version": rate.version,
        "updated_at": rate.modified_on.isoformat(),
    }

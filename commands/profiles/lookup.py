"""What the billing engine calls to read a customer: the tenant's profile terms, if any."""

from __future__ import annotations

from commands.unit_of_work import UnitOfWork
from domain.profile import BillingProfile, ProfileTerms, billing_profile_id


def profile_terms(uow: UnitOfWork, app_id: str, tenant_id: str) -> ProfileTerms | None:
    """The tenant's billing profile (name, email, country, tax status, timezone, currency),
    or None before its first PUT."""
    profile = uow.find(BillingProfile, billing_profile_id(app_id, tenant_id))
    if profile is None or profile.state.app_id != app_id:
        return None
    return profile.terms

"""Set a tenant's billing profile: created the first time, replaced after (a PUT); saving
the same profile again records nothing."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from commands.base import TENANT_FIELD, Command, Currency
from commands.profiles.view import profile_view
from commands.unit_of_work import UnitOfWork
from domain.profile import (
    BillingProfile,
    Country,
    Email,
    ProfileName,
    ProfileTerms,
    TaxId,
    TaxStatus,
    Timezone,
    billing_profile_id,
    check_tax_status,
)


class SetBillingProfile(Command):
    tenant_id: str = TENANT_FIELD
    name: ProfileName = Field(description="the customer's legal name, 1 to 200 characters")
    email: Email = Field(description="where invoices are sent")
    country: Country = Field(description="ISO 3166-1 alpha-2, upper case (DE, US...)")
    tax_id: TaxId | None = Field(default=None, description="VAT number etc., up to 64")
    tax_status: TaxStatus = Field(description="taxable, exempt or reverse_charge")
    timezone: Timezone = Field(description="IANA name, e.g. Europe/Berlin")
    currency: Currency = Field(description="preferred ISO 4217 currency")

    @model_validator(mode="after")
    def _tax_status(self) -> SetBillingProfile:
        check_tax_status(self.tax_status, self.tax_id)
        return self

    def terms(self) -> ProfileTerms:
        return ProfileTerms.checked(**self.model_dump(include=set(ProfileTerms.FIELDS)))


def set_billing_profile(command: SetBillingProfile, uow: UnitOfWork) -> dict[str, Any]:
    terms = command.terms()
    profile = uow.find(BillingProfile, billing_profile_id(command.app_id, command.tenant_id))
    if profile is None:
        profile = uow.add(
            BillingProfile.create(command.app_id, command.tenant_id, terms, uow.cause)
        )
    else:
        profile.update(terms, uow.cause)
    return profile_view(profile)

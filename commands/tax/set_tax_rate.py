"""Set the tax rate an app charges customers of one country (created or replaced; the
same rate again records nothing)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from commands.base import Command
from commands.tax.view import tax_rate_view
from commands.unit_of_work import UnitOfWork
from domain.profile import Country
from domain.tax import TaxBehavior, TaxRate, TaxRateTerms, canonical_rate_percent, tax_rate_id

RatePercent = Annotated[str, AfterValidator(canonical_rate_percent)]


class SetTaxRate(Command):
    country: Country = Field(description="ISO 3166-1 alpha-2, upper case")
    rate_percent: RatePercent = Field(description='0 to 100, up to 4 decimals, e.g. "19.0"')
    behavior: TaxBehavior = Field(description="exclusive (added on top) or inclusive")


def set_tax_rate(command: SetTaxRate, uow: UnitOfWork) -> dict[str, Any]:
    terms = TaxRateTerms(rate_percent=command.rate_percent, behavior=command.behavior)
    rate = uow.find(TaxRate, tax_rate_id(command.app_id, command.country))
    if rate is None:
        rate = uow.add(TaxRate.create(command.app_id, command.country, terms, uow.cause))
    else:
        rate.change(terms, uow.cause)
    return tax_rate_view(rate)

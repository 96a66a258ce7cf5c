"""What the billing engine calls to tax an invoice: the app's rate table and calculator."""

from __future__ import annotations

from collections.abc import Iterable

from commands.unit_of_work import UnitOfWork
from domain.tax import RateTableTaxCalculator, TaxRate, TaxRateTerms, tax_rate_id


def rate_table(uow: UnitOfWork, app_id: str, countries: Iterable[str]) -> dict[str, TaxRateTerms]:
    """The app's rates for these countries (a country without a rate is left out)."""
    table: dict[str, TaxRateTerms] = {}
    for country in countries:
        rate = uow.find(TaxRate, tax_rate_id(app_id, country))
        if rate is not None and rate.state.app_id == app_id:
            table[country] = rate.terms
    return table


def tax_calculator(uow: UnitOfWork, app_id: str, country: str) -> RateTableTaxCalculator:
    """The default calculator loaded with the one rate an invoice for `country` needs."""
    return RateTableTaxCalculator(rate_table(uow, app_id, [country]))

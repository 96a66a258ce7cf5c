"""Record the provider product and price of a plan version, and the deactivation of an
archived plan's prices (the app's payment catalog opens with its first price)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Command
from commands.payments.account import PROVIDER_ID
from commands.unit_of_work import UnitOfWork
from domain.payment_catalog import PaymentCatalog, payment_catalog_id

PLAN_KEY = Field(min_length=1, max_length=128)


class LinkPlanPrice(Command):
    plan_key: str = PLAN_KEY
    version: int = Field(ge=1)
    product_id: str = PROVIDER_ID
    price_id: str = PROVIDER_ID


class RecordPlanPricesDeactivated(Command):
    plan_key: str = PLAN_KEY


def catalog_of(uow: UnitOfWork, app_id: str) -> PaymentCatalog:
    catalog = uow.find(PaymentCatalog, payment_catalog_id(app_id))
    return catalog or uow.add(PaymentCatalog.open(app_id, uow.cause))


def catalog_view(catalog: PaymentCatalog) -> dict[str, Any]:
    state = catalog.state
    return {"products": dict(state.products), "prices": dict(state.prices)}


def link_plan_price(command: LinkPlanPrice, uow: UnitOfWork) -> dict[str, Any]:
    catalog = catalog_of(uow, command.app_id)
    catalog.link_price(
        command.plan_key, command.version, command.product_id, command.price_id, uow.cause
    )
    return catalog_view(catalog)


def record_plan_prices_deactivated(
    command: RecordPlanPricesDeactivated, uow: UnitOfWork
) -> dict[str, Any]:
    catalog = catalog_of(uow, command.app_id)
    catalog.deactivated(command.plan_key, uow.cause)
    return catalog_view(catalog)

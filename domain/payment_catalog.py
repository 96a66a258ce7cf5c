"""An app's plans at the payment provider: one product per plan, one price per plan version
(a revision makes a new price; an archived plan's prices are deactivated)."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id


def payment_catalog_id(app_id: str) -> UUID:
    return stable_id("payment-catalog", app_id)


def price_key(plan_key: str, version: int) -> str:
    return f"{plan_key}@{version}"


class PaymentCatalogState(AggregateState):
    products: dict[str, str] = {}  # plan key -> provider product id
    prices: dict[str, str] = {}  # plan key@version -> provider price id
    archived: list[str] = []  # plan keys whose prices are deactivated


class PaymentCatalogEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "payment_catalog"


class PaymentCatalogOpened(PaymentCatalogEvent, CreatedEvent):
    NAME: ClassVar[str] = "PaymentCatalogOpened"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = PaymentCatalogState(app_id=self.app_id)


class PlanPriceLinked(PaymentCatalogEvent):
    NAME: ClassVar[str] = "PlanPriceLinked"
    plan_key: str
    version: int
    product_id: str
    price_id: str

    def apply(self, aggregate: Any) -> None:
        aggregate.state.products[self.plan_key] = self.product_id
        aggregate.state.prices[price_key(self.plan_key, self.version)] = self.price_id


class PlanPricesDeactivated(PaymentCatalogEvent):
    NAME: ClassVar[str] = "PlanPricesDeactivated"
    plan_key: str
    price_ids: list[str]

    def apply(self, aggregate: Any) -> None:
        aggregate.state.archived.append(self.plan_key)


class PaymentCatalog(Aggregate[PaymentCatalogState]):
    """Which provider product and prices stand for each plan of one app."""

    TYPE: ClassVar[str] = "payment_catalog"
    State = PaymentCatalogState

    @classmethod
    def open(cls, app_id: str, cause: Cause) -> PaymentCatalog:
        return cls._create(PaymentCatalogOpened, payment_catalog_id(app_id), cause, app_id=app_id)

    def product(self, plan_key: str) -> str | None:
        return self.state.products.get(plan_key)

    def price(self, plan_key: str, version: int) -> str | None:
        return self.state.prices.get(price_key(plan_key, version))

    def plan_of(self, price_id: str) -> tuple[str, int] | None:
        for key, linked in self.state.prices.items():
            if linked == price_id:
                plan_key, version = key.rsplit("@", 1)
                return plan_key, int(version)
        return None

    def prices_of(self, plan_key: str) -> list[str]:
        prefix = f"{plan_key}@"
        return [price for key, price in self.state.prices.items() if key.startswith(prefix)]

    def is_archived(self, plan_key: str) -> bool:
        return plan_key in self.state.archived

    def link_price(
        self, plan_key: str, version: int, product_id: str, price_id: str, cause: Cause
    ) -> bool:
        if self.price(plan_key, version) == price_id:
            return False
        self._trigger(
            PlanPriceLinked,
            cause,
            plan_key=plan_key,
            version=version,
            product_id=product_id,
            price_id=price_id,
        )
        return True

    def deactivated(self, plan_key: str, cause: Cause) -> bool:
        if self.is_archived(plan_key):
            return False
        self._trigger(
            PlanPricesDeactivated, cause, plan_key=plan_key, price_ids=self.prices_of(plan_key)
        )
        return True

"""Change a subscription's seats now, prorating the seat fee for the rest of the period."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.billing.compose import BillingPorts, settings_of
from commands.subscriptions.change_plan import with_proration_invoice
from commands.subscriptions.target import SubscriptionCommand
from commands.unit_of_work import UnitOfWork
from domain.proration import ProrationMode
from domain.subscription import MAX_SEATS


class ChangeSeats(SubscriptionCommand):
    quantity: int = Field(ge=1, le=MAX_SEATS, strict=True)
    proration: ProrationMode = "create_prorations"


def change_seats(
    command: ChangeSeats, uow: UnitOfWork, ports: BillingPorts | None = None
) -> dict[str, Any]:
    subscription = command.load(uow)
    unit = settings_of(uow, command.app_id).proration_unit
    subscription.change_seats(command.quantity, uow.cause, proration=command.proration, unit=unit)
    return with_proration_invoice(uow, subscription, command.proration, ports)

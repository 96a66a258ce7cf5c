"""Renew at period end by the clock (or cancel, if a cancel was scheduled).

In the same unit of work, as a billing system does at a renewal: the quotas whose window
ended start their next one, and the billing point the renewal opens is invoiced (the fee in
advance of the new period, or in arrears of the ended one, with its usage).
"""

from __future__ import annotations

from typing import Any

from commands.billing.compose import BillingPorts
from commands.billing.invoice_subscription import invoice_due_point
from commands.billing.ports import UsageCutoff
from commands.bus import Handler
from commands.quotas.sync_from_plan import follow_subscription, reset_ended_windows
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class RenewSubscription(SubscriptionCommand):
    usage_cutoff: UsageCutoff = None


def renew_subscription_handler(ports: BillingPorts | None) -> Handler:
    """The handler; with billing ports the renewal also invoices the point it opens."""

    def renew_subscription(command: RenewSubscription, uow: UnitOfWork) -> dict[str, Any]:
        subscription = command.load(uow)
        previous = subscription.state.terms
        subscription.renew(uow.cause)
        follow_subscription(uow, subscription, previous)
        view = {
            **subscription_view(subscription),
            "quotas_reset": reset_ended_windows(uow, subscription),
        }
        if ports is None:
            return view
        invoiced = invoice_due_point(uow, subscription, ports, command.usage_cutoff)
        return {**view, "invoice": invoiced}

    return renew_subscription


renew_subscription = renew_subscription_handler(None)

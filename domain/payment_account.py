"""A tenant's account at the payment provider (Stripe): which customer, subscriptions and
invoices there are the ledger's. The links are facts of the ledger, so a reconciliation can
tell a missing or extra provider object from one Tally made, and every repair is an event
naming the drift it repaired."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import InvalidTransition

PROVIDER = "stripe"


def payment_account_id(app_id: str, tenant_id: str) -> UUID:
    return stable_id("payment-account", app_id, tenant_id)


class PaymentAccountState(AggregateState):
    tenant_id: str
    provider: str = PROVIDER
    customer_id: str
    customer_digest: str = ""  # of the profile fields last sent to the provider
    subscriptions: dict[str, str] = {}  # Tally subscription id -> provider subscription id
    invoices: dict[str, str] = {}  # Tally invoice id -> provider invoice id


class PaymentAccountEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "payment_account"


class PaymentCustomerLinked(PaymentAccountEvent, CreatedEvent):
    NAME: ClassVar[str] = "PaymentCustomerLinked"
    provider: str = PROVIDER
    customer_id: str
    digest: str = ""

    def apply(self, aggregate: Any) -> None:
        aggregate.state = PaymentAccountState(
            app_id=self.app_id,
            tenant_id=self.tenant_id or "",
            provider=self.provider,
            customer_id=self.customer_id,
            customer_digest=self.digest,
        )


class PaymentCustomerSynced(PaymentAccountEvent):
    NAME: ClassVar[str] = "PaymentCustomerSynced"
    customer_id: str
    digest: str
    fields: list[str]

    def apply(self, aggregate: Any) -> None:
        aggregate.state.customer_digest = self.digest


class PaymentSubscriptionLinked(PaymentAccountEvent):
    NAME: ClassVar[str] = "PaymentSubscriptionLinked"
    subscription_id: UUID
    provider_subscription_id: str

    def apply(self, aggregate: Any) -> None:
        aggregate.state.subscriptions[str(self.subscription_id)] = self.provider_subscription_id


class PaymentInvoiceLinked(PaymentAccountEvent):
    NAME: ClassVar[str] = "PaymentInvoiceLinked"
    invoice_id: UUID
    provider_invoice_id: str
    replaces: str | None = None  # the provider invoice voided for this one (amount changed)

    def apply(self, aggregate: Any) -> None:
        aggregate.state.invoices[str(self.invoice_id)] = self.provider_invoice_id


class PaymentDriftRepaired(PaymentAccountEvent):
    """A reconciliation found the provider and the ledger apart and repaired it."""

    NAME: ClassVar[str] = "PaymentDriftRepaired"
    drift: str  # missing | extra | amount | status
    object: str  # customer | subscription | invoice | payment
    object_id: str
    detail: str
    action: str
    customer_id: str | None = None  # a relinked customer
    invoice_id: UUID | None = None
    provider_invoice_id: str | None = None  # a re-pushed invoice

    def apply(self, aggregate: Any) -> None:
        if self.customer_id:  # a new customer: the old one's mirrors went with it
            aggregate.state.customer_id = self.customer_id
            aggregate.state.customer_digest = ""
            aggregate.state.subscriptions = {}
        if self.invoice_id and self.provider_invoice_id:
            aggregate.state.invoices[str(self.invoice_id)] = self.provider_invoice_id


class PaymentAccount(Aggregate[PaymentAccountState]):
    """One tenant's customer at the provider and the provider objects that are Tally's."""

    TYPE: ClassVar[str] = "payment_account"
    State = PaymentAccountState

    @classmethod
    def link(
        cls, app_id: str, tenant_id: str, customer_id: str, digest: str, cause: Cause
    ) -> PaymentAccount:
        return cls._create(
            PaymentCustomerLinked,
            payment_account_id(app_id, tenant_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            customer_id=customer_id,
            digest=digest,
        )

    @property
    def customer_id(self) -> str:
        return self.state.customer_id

    def provider_subscription(self, subscription_id: UUID) -> str | None:
        return self.state.subscriptions.get(str(subscription_id))

    def provider_invoice(self, invoice_id: UUID) -> str | None:
        return self.state.invoices.get(str(invoice_id))

    def tally_subscription(self, provider_subscription_id: str) -> UUID | None:
        return _key_of(self.state.subscriptions, provider_subscription_id)

    def tally_invoice(self, provider_invoice_id: str) -> UUID | None:
        return _key_of(self.state.invoices, provider_invoice_id)

    def synced(self, digest: str, fields: list[str], cause: Cause) -> bool:
        """Record that the customer now carries the profile with this digest (once)."""
        if digest == self.state.customer_digest:
            return False
        self._trigger(
            PaymentCustomerSynced, cause, customer_id=self.customer_id, digest=digest, fields=fields
        )
        return True

    def link_subscription(
        self, subscription_id: UUID, provider_subscription_id: str, cause: Cause
    ) -> bool:
        known = self.provider_subscription(subscription_id)
        if known == provider_subscription_id:
            return False
        _refuse_relink("subscription", subscription_id, known)
        self._trigger(
            PaymentSubscriptionLinked,
            cause,
            subscription_id=subscription_id,
            provider_subscription_id=provider_subscription_id,
        )
        return True

    def link_invoice(
        self, invoice_id: UUID, provider_invoice_id: str, cause: Cause, replaces: str | None = None
    ) -> bool:
        """Link once; a new provider invoice replaces only the one it names (voided)."""
        known = self.provider_invoice(invoice_id)
        if known == provider_invoice_id:
            return False
        if known != replaces:
            _refuse_relink("invoice", invoice_id, known)
        self._trigger(
            PaymentInvoiceLinked,
            cause,
            invoice_id=invoice_id,
            provider_invoice_id=provider_invoice_id,
            replaces=replaces,
        )
        return True

    def repaired(self, cause: Cause, **drift: Any) -> None:
        """Record one repair (the drift found and the action taken)."""
        self._trigger(PaymentDriftRepaired, cause, **drift)


def _key_of(links: dict[str, str], provider_id: str) -> UUID | None:
    for tally_id, linked in links.items():
        if linked == provider_id:
            return UUID(tally_id)
    return None


def _refuse_relink(kind: str, tally_id: UUID, known: str | None) -> None:
    if known is not None:
        raise InvalidTransition(
            f"{kind} {tally_id} is already linked to {known}", field=f"{kind}_id"
        )

"""Every aggregate type of the domain, listed once (the event store snapshots each)."""

from __future__ import annotations

from typing import Any

from domain.alert import Alert
from domain.api_key import ApiKey
from domain.balance import CreditBalance
from domain.base import Aggregate
from domain.billing_settings import BillingSettings
from domain.coupon import Coupon
from domain.credit_grant import TenantCredits
from domain.credit_note import CreditNote, CreditNoteNumbering
from domain.discount import SubscriptionDiscounts
from domain.entitlement_grant import TenantGrants
from domain.invoice import Invoice, InvoiceNumbering
from domain.meter_catalog import MeterCatalog
from domain.plan import Plan
from domain.profile import BillingProfile
from domain.quota import Quota
from domain.subscription import Subscription, TenantSlot
from domain.tax import TaxRate

ALL_AGGREGATES: tuple[type[Aggregate[Any]], ...] = (
    Plan,
    Subscription,
    TenantSlot,
    Quota,
    Invoice,
    InvoiceNumbering,
    CreditNote,
    CreditNoteNumbering,
    Coupon,
    SubscriptionDiscounts,
    TenantGrants,
    ApiKey,
    BillingProfile,
    TaxRate,
    BillingSettings,
    CreditBalance,
    Alert,
    MeterCatalog,
    TenantCredits,
)

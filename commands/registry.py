"""Every command and its handler, listed once: the bus, HTTP and NATS edges all use this."""

from __future__ import annotations

from functools import partial

from commands.alerts.create_alert import CreateAlert, create_alert
from commands.alerts.delete_alert import DeleteAlert, delete_alert
from commands.base import Command
from commands.billing.compose import BillingPorts
from commands.billing.configure_billing import ConfigureBilling, configure_billing
from commands.billing.dunning import InvoiceIndex
from commands.billing.invoice_subscription import (
    InvoiceSubscription,
    invoice_subscription_handler,
)
from commands.billing.invoice_thresholds import InvoiceThresholds, invoice_thresholds_handler
from commands.bus import Handler

# invoices and coupons
from commands.coupons.attach_coupon import AttachCoupon, attach_coupon
from commands.coupons.create_coupon import CreateCoupon, create_coupon
from commands.coupons.deactivate_coupon import DeactivateCoupon, deactivate_coupon
from commands.coupons.redeem_coupon import RedeemCoupon, redeem_coupon
from commands.credit_notes.issue_credit_note import (
    IssueCreditNote,
    issue_credit_note,
    issue_credit_note_handler,
)

# prepaid credits
from commands.credits.expire_credit_grants import ExpireCreditGrants, expire_credit_grants
from commands.credits.grant_credit import GrantCredit, grant_credit
from commands.credits.void_credit_grant import VoidCreditGrant, void_credit_grant

# entitlements
from commands.entitlements.grant_feature import GrantFeature, grant_feature
from commands.entitlements.revoke_feature import RevokeFeature, revoke_feature
from commands.invoices.add_invoice_line import AddInvoiceLine, add_invoice_line
from commands.invoices.draft_invoice import DraftInvoice, draft_invoice
from commands.invoices.fail_invoice_payment import FailInvoicePayment, fail_invoice_payment
from commands.invoices.finalize_invoice import FinalizeInvoice, finalize_invoice
from commands.invoices.mark_invoice_uncollectible import (
    MarkInvoiceUncollectible,
    mark_invoice_uncollectible,
)
from commands.invoices.pay_invoice import PayInvoice, pay_invoice, pay_invoice_handler
from commands.invoices.retry_invoice_payment import (
    RetryInvoicePayment,
    retry_invoice_payment_handler,
)
from commands.invoices.void_invoice import VoidInvoice, void_invoice

# api keys
from commands.keys.create_api_key import CreateApiKey, create_api_key
from commands.keys.revoke_api_key import RevokeApiKey, revoke_api_key

# meters
from commands.meters.define_meter import DefineMeter, define_meter
from commands.payments.link_payment_customer import LinkPaymentCustomer, link_payment_customer
from commands.payments.link_plan_price import (
    LinkPlanPrice,
    RecordPlanPricesDeactivated,
    link_plan_price,
    record_plan_prices_deactivated,
)
from commands.payments.link_provider_objects import (
    LinkProviderInvoice,
    LinkProviderSubscription,
    link_provider_invoice,
    link_provider_subscription,
)
from commands.payments.record_customer_sync import RecordCustomerSync, record_customer_sync
from commands.payments.record_payment_repair import RecordPaymentRepair, record_payment_repair
from commands.payments.record_provider_webhook import (
    RecordProviderWebhook,
    record_provider_webhook,
)
from commands.plans.archive_plan import ArchivePlan, archive_plan
from commands.plans.define_plan import DefinePlan, define_plan
from commands.plans.revise_plan import RevisePlan, revise_plan

# billing profiles and tax
from commands.profiles.set_billing_profile import SetBillingProfile, set_billing_profile

# quotas
from commands.quotas.configure_quota import ConfigureQuota, configure_quota
from commands.quotas.consume_quota import ConsumeQuota, consume_quota_handler
from commands.quotas.grant_allowance import GrantAllowance, grant_allowance
from commands.quotas.reset_quota import ResetQuota, reset_quota
from commands.quotas.revoke_grant import RevokeGrant, revoke_grant
from commands.subscriptions.cancel_subscription import CancelSubscription, cancel_subscription
from commands.subscriptions.change_plan import ChangePlan, change_plan
from commands.subscriptions.change_seats import ChangeSeats, change_seats
from commands.subscriptions.end_trial import EndTrial, end_trial
from commands.subscriptions.expire_subscription import ExpireSubscription, expire_subscription
from commands.subscriptions.mark_subscription_past_due import (
    MarkSubscriptionPastDue,
    mark_subscription_past_due,
)
from commands.subscriptions.pause_subscription import PauseSubscription, pause_subscription
from commands.subscriptions.recover_subscription_payment import (
    RecoverSubscriptionPayment,
    recover_subscription_payment,
)
from commands.subscriptions.renew_subscription import (
    RenewSubscription,
    renew_subscription,
    renew_subscription_handler,
)
from commands.subscriptions.resume_subscription import ResumeSubscription, resume_subscription
from commands.subscriptions.start_subscription import StartSubscription, start_subscription
from commands.subscriptions.undo_scheduled_cancel import (
    UndoScheduledCancel,
    undo_scheduled_cancel,
)
from commands.tax.set_tax_rate import SetTaxRate, set_tax_rate
from commands.usage.ports import UsageKeys

HANDLERS: dict[type[Command], Handler] = {
    # catalog
    DefinePlan: define_plan,
    DefineMeter: define_meter,
    RevisePlan: revise_plan,
    ArchivePlan: archive_plan,
    # subscriptions
    StartSubscription: start_subscription,
    EndTrial: end_trial,
    CancelSubscription: cancel_subscription,
    UndoScheduledCancel: undo_scheduled_cancel,
    ChangePlan: change_plan,
    ChangeSeats: change_seats,
    PauseSubscription: pause_subscription,
    ResumeSubscription: resume_subscription,
    RenewSubscription: renew_subscription,
    MarkSubscriptionPastDue: mark_subscription_past_due,
    RecoverSubscriptionPayment: recover_subscription_payment,
    ExpireSubscription: expire_subscription,
    # quotas
    ConfigureQuota: configure_quota,
    GrantAllowance: grant_allowance,
    RevokeGrant: revoke_grant,
    ResetQuota: reset_quota,
    # entitlements
    GrantFeature: grant_feature,
    RevokeFeature: revoke_feature,
    # invoices and coupons
    DraftInvoice: draft_invoice,
    AddInvoiceLine: add_invoice_line,
    FinalizeInvoice: finalize_invoice,
    PayInvoice: pay_invoice,
    FailInvoicePayment: fail_invoice_payment,
    VoidInvoice: void_invoice,
    MarkInvoiceUncollectible: mark_invoice_uncollectible,
    IssueCreditNote: issue_credit_note,
    CreateCoupon: create_coupon,
    RedeemCoupon: redeem_coupon,
    AttachCoupon: attach_coupon,
    DeactivateCoupon: deactivate_coupon,
    # billing profiles and tax
    SetBillingProfile: set_billing_profile,
    SetTaxRate: set_tax_rate,
    # api keys
    CreateApiKey: create_api_key,
    RevokeApiKey: revoke_api_key,
    # alerts
    CreateAlert: create_alert,
    DeleteAlert: delete_alert,
    # prepaid credits
    GrantCredit: grant_credit,
    VoidCreditGrant: void_credit_grant,
    ExpireCreditGrants: expire_credit_grants,
    # the payment provider's objects (Stripe)
    LinkPaymentCustomer: link_payment_customer,
    RecordCustomerSync: record_customer_sync,
    LinkProviderSubscription: link_provider_subscription,
    LinkProviderInvoice: link_provider_invoice,
    RecordPaymentRepair: record_payment_repair,
    LinkPlanPrice: link_plan_price,
    RecordPlanPricesDeactivated: record_plan_prices_deactivated,
    RecordProviderWebhook: record_provider_webhook,
}


def build_handlers(
    ports: BillingPorts, usage_keys: UsageKeys, invoices: InvoiceIndex | None = None
) -> dict[type[Command], Handler]:
    """Every handler, with the billing engine wired to its ports and the usage keys the
    database counted (bootstrap calls this); `invoices` lets a payment see the
    subscription's other failing invoices (dunning)."""
    return {
        **HANDLERS,
        ConsumeQuota: consume_quota_handler(usage_keys),
        ConfigureBilling: configure_billing,
        InvoiceSubscription: invoice_subscription_handler(ports),
        InvoiceThresholds: invoice_thresholds_handler(ports),
        RenewSubscription: renew_subscription_handler(ports),
        PayInvoice: pay_invoice_handler(invoices),
        IssueCreditNote: issue_credit_note_handler(invoices),
        RetryInvoicePayment: retry_invoice_payment_handler(ports.payments, invoices),
        # strategy plugins (docs/plugins.md): what plan terms name, coupons, proration tax
        DefinePlan: partial(define_plan, strategies=ports.named),
        RevisePlan: partial(revise_plan, strategies=ports.named),
        AttachCoupon: partial(attach_coupon, coupons=ports.coupons),
        RedeemCoupon: partial(redeem_coupon, coupons=ports.coupons),
        StartSubscription: partial(start_subscription, coupons=ports.coupons),
        ChangePlan: partial(change_plan, ports=ports),
        ChangeSeats: partial(change_seats, ports=ports),
        CancelSubscription: partial(cancel_subscription, ports=ports),
    }

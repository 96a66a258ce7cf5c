"""Every command and its handler, listed once: the bus, HTTP and NATS edges all use this."""

from __future__ import annotations

from commands.base import Command
from commands.bus import Handler
from commands.plans.archive_plan import ArchivePlan, archive_plan
from commands.plans.define_plan import DefinePlan, define_plan
from commands.plans.revise_plan import RevisePlan, revise_plan
from commands.subscriptions.cancel_subscription import CancelSubscription, cancel_subscription
from commands.subscriptions.change_plan import ChangePlan, change_plan
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
from commands.subscriptions.renew_subscription import RenewSubscription, renew_subscription
from commands.subscriptions.resume_subscription import ResumeSubscription, resume_subscription
from commands.subscriptions.start_subscription import StartSubscription, start_subscription
from commands.subscriptions.undo_scheduled_cancel import (
    UndoScheduledCancel,
    undo_scheduled_cancel,
)

HANDLERS: dict[type[Command], Handler] = {
    # catalog
    DefinePlan: define_plan,
    RevisePlan: revise_plan,
    ArchivePlan: archive_plan,
    # subscriptions
    StartSubscription: start_subscription,
    EndTrial: end_trial,
    CancelSubscription: cancel_subscription,
    UndoScheduledCancel: undo_scheduled_cancel,
    ChangePlan: change_plan,
    PauseSubscription: pause_subscription,
    ResumeSubscription: resume_subscription,
    RenewSubscription: renew_subscription,
    MarkSubscriptionPastDue: mark_subscription_past_due,
    RecoverSubscriptionPayment: recover_subscription_payment,
    ExpireSubscription: expire_subscription,
}

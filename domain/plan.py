"""Plan aggregate: a versioned catalog entry; revisions never change existing subscribers."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import PlanTerms, validate_key
from domain.errors import InvalidValue, NotFound, PlanArchived


def plan_id(app_id: str, plan_key: str) -> Any:
    return stable_id("plan", app_id, plan_key)


class PlanState(AggregateState):
    key: str
    versions: list[PlanTerms]
    archived: bool = False
    custom_for_tenant: str | None = None

    @property
    def latest(self) -> PlanTerms:
        return self.versions[-1]


class PlanEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "plan"


class PlanDefined(PlanEvent, CreatedEvent):
    NAME: ClassVar[str] = "PlanDefined"
    terms: PlanTerms
    custom_for_tenant: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state = PlanState(
            app_id=self.app_id,
            tenant_id=self.tenant_id,
            key=self.terms.plan_key,
            versions=[self.terms],
            custom_for_tenant=self.custom_for_tenant,
        )


class PlanRevised(PlanEvent):
    NAME: ClassVar[str] = "PlanRevised"
    terms: PlanTerms

    def apply(self, aggregate: Any) -> None:
        aggregate.state.versions.append(self.terms)


class PlanWasArchived(PlanEvent):
    NAME: ClassVar[str] = "PlanArchived"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.archived = True


class Plan(Aggregate[PlanState]):
    """A plan in an app's catalog, with every version it has had."""

    TYPE: ClassVar[str] = "plan"
    State = PlanState

    @classmethod
    def define(
        cls, app_id: str, terms: PlanTerms, cause: Cause, custom_for_tenant: str | None = None
    ) -> Plan:
        validate_key(terms.plan_key, "plan_key")
        if terms.version != 1:
            raise InvalidValue("a new plan starts at version 1", field="version")
        return cls._create(
            PlanDefined,
            plan_id(app_id, terms.plan_key),
            cause,
            app_id=app_id,
            tenant_id=custom_for_tenant,
            terms=terms,
            custom_for_tenant=custom_for_tenant,
        )

    def revise(self, terms: PlanTerms, cause: Cause) -> int:
        """Add a new version; returns its number. Existing subscribers keep theirs."""
        self._require_live()
        if terms.plan_key != self.state.key:
            raise InvalidValue("a revision keeps the plan's key", field="plan_key")
        numbered = terms.model_copy(update={"version": self.state.latest.version + 1})
        self._trigger(PlanRevised, cause, terms=numbered)
        return numbered.version

    def archive(self, cause: Cause) -> None:
        self._require_live()
        self._trigger(PlanWasArchived, cause)

    def terms(self, version: int | None = None) -> PlanTerms:
        """The terms of a version (latest by default)."""
        if version is None:
            return self.state.latest
        for terms in self.state.versions:
            if terms.version == version:
                return terms
        raise NotFound(f"plan {self.state.key} has no version {version}", field="plan_version")

    def terms_for_new_subscriber(self, tenant_id: str) -> PlanTerms:
        self._require_live()
        if self.state.custom_for_tenant not in (None, tenant_id):
            raise NotFound(f"plan {self.state.key} not found", field="plan_key")
        return self.state.latest

    def _require_live(self) -> None:
        if self.state.archived:
            raise PlanArchived(f"plan {self.state.key} is archived", field="plan_key")

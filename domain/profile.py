"""Billing profile of a tenant (the customer): who is billed, where, in which currency and
timezone, and how tax treats them. Tax, invoices, PDFs and Stripe read `ProfileTerms`.

The rules (country, email, timezone, currency, tax id) are checked when a profile is saved,
not when its events are read back: a country code ISO later withdraws, or a zone a newer
tzdata renames, must never make a recorded history unreadable.
"""

from __future__ import annotations

import re
import zoneinfo
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import InvalidValue
from domain.money import validate_currency

# ISO 3166-1 alpha-2, the 249 officially assigned codes (as in tzdata's iso3166.tab).
_COUNTRIES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES: frozenset[str] = frozenset(_COUNTRIES.split())

NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})  # files in tzdata, not places
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
MAX_EMAIL, MAX_NAME, MAX_TAX_ID = 254, 200, 64


class TaxStatus(StrEnum):
    TAXABLE = "taxable"
    EXEMPT = "exempt"  # no tax lines at all
    REVERSE_CHARGE = "reverse_charge"  # the customer accounts for the tax (EU B2B)


def billing_profile_id(app_id: str, tenant_id: str) -> UUID:
    return stable_id("billing_profile", app_id, tenant_id)


def validate_country(code: str) -> str:
    """An ISO 3166-1 alpha-2 code in upper case ("DE"), or InvalidValue naming country."""
    if code not in COUNTRY_CODES:
        raise InvalidValue(
            f"country must be an ISO 3166-1 alpha-2 code in upper case, got {code!r}",
            field="country",
        )
    return code


def validate_email(address: str) -> str:
    """One address of the shape local@domain.tld, at most 254 characters."""
    if len(address) > MAX_EMAIL or not EMAIL_PATTERN.match(address):
        raise InvalidValue(
            f"email must look like name@example.com (at most {MAX_EMAIL} characters)",
            field="email",
        )
    return address


@cache
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def validate_timezone(name: str) -> str:
    """An IANA timezone name ("Europe/Berlin", "UTC") known to this machine's tz database."""
    if name not in known_timezones():
        raise InvalidValue(
            f"timezone must be an IANA name such as Europe/Berlin, got {name!r}",
            field="timezone",
        )
    return name


def validate_name(name: str) -> str:
    stripped = name.strip()
    if not 1 <= len(stripped) <= MAX_NAME:
        raise InvalidValue(f"name must have 1 to {MAX_NAME} characters", field="name")
    return stripped


def validate_tax_id(tax_id: str | None) -> str | None:
    """Optional; 1 to 64 printable characters (the format is the tax authority's business)."""
    if tax_id is None:
        return None
    stripped = tax_id.strip()
    if not 1 <= len(stripped) <= MAX_TAX_ID or not stripped.isprintable():
        raise InvalidValue(
            f"tax_id must have 1 to {MAX_TAX_ID} printable characters", field="tax_id"
        )
    return stripped


def check_tax_status(tax_status: TaxStatus, tax_id: str | None) -> None:
    """Reverse charge needs the customer's tax id (EU VAT Directive, Article 226(4))."""
    if tax_status is TaxStatus.REVERSE_CHARGE and tax_id is None:
        raise InvalidValue("a reverse_charge tenant needs a tax_id", field="tax_id")


Country = Annotated[str, AfterValidator(validate_country)]
Email = Annotated[str, AfterValidator(validate_email)]
Timezone = Annotated[str, AfterValidator(validate_timezone)]
ProfileName = Annotated[str, AfterValidator(validate_name)]
TaxId = Annotated[str, AfterValidator(validate_tax_id)]


class ProfileTerms(BaseModel):
    """What the billing engine reads of a customer; build it with `ProfileTerms.checked`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "email",
        "country",
        "tax_id",
        "tax_status",
        "timezone",
        "currency",
    )

    name: str
    email: str
    country: str
    tax_id: str | None = None
    tax_status: TaxStatus
    timezone: str
    currency: str

    @classmethod
    def checked(cls, **fields: Any) -> ProfileTerms:
        """Terms that pass every rule (stripped name and tax id); InvalidValue names the field."""
        tax_id = validate_tax_id(fields.get("tax_id"))
        try:
            tax_status = TaxStatus(fields.get("tax_status", ""))
        except ValueError:
            raise InvalidValue(
                "tax_status is one of taxable, exempt, reverse_charge", field="tax_status"
            ) from None
        check_tax_status(tax_status, tax_id)
        return cls(
            name=validate_name(fields.get("name", "")),
            email=validate_email(fields.get("email", "")),
            country=validate_country(fields.get("country", "")),
            tax_id=tax_id,
            tax_status=tax_status,
            timezone=validate_timezone(fields.get("timezone", "")),
            currency=validate_currency(fields.get("currency", "")),
        )

    def changed_from(self, other: ProfileTerms | None) -> list[str]:
        """The fields whose value differs from `other` (all of them when there is none)."""
        if other is None:
            return list(self.FIELDS)
        return [name for name in self.FIELDS if getattr(self, name) != getattr(other, name)]

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class BillingProfileState(AggregateState):
    tenant_id: str
    name: str
    email: str
    country: str
    tax_id: str | None = None
    tax_status: TaxStatus
    timezone: str
    currency: str

    @property
    def terms(self) -> ProfileTerms:
        return ProfileTerms.model_validate(self.model_dump(include=set(ProfileTerms.FIELDS)))


class BillingProfileEvent(DomainEvent):
    """The whole profile after the change, and which fields the change touched."""

    AGGREGATE_TYPE: ClassVar[str] = "billing_profile"
    profile: ProfileTerms
    changed: list[str]

    def apply(self, aggregate: Any) -> None:
        aggregate.state = BillingProfileState(
            app_id=self.app_id, tenant_id=self.tenant_id or "", **self.profile.model_dump()
        )


class BillingProfileCreated(BillingProfileEvent, CreatedEvent):
    NAME: ClassVar[str] = "BillingProfileCreated"


class BillingProfileUpdated(BillingProfileEvent):
    NAME: ClassVar[str] = "BillingProfileUpdated"


class BillingProfile(Aggregate[BillingProfileState]):
    """The billing profile of one tenant of an app (at most one: its id is the tenant's)."""

    TYPE: ClassVar[str] = "billing_profile"
    State = BillingProfileState

    @classmethod
    def create(
        cls, app_id: str, tenant_id: str, terms: ProfileTerms, cause: Cause
    ) -> BillingProfile:
        terms = ProfileTerms.checked(**terms.model_dump())
        return cls._create(
            BillingProfileCreated,
            billing_profile_id(app_id, tenant_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            profile=terms,
            changed=terms.changed_from(None),
        )

    @property
    def terms(self) -> ProfileTerms:
        return self.state.terms

    def update(self, terms: ProfileTerms, cause: Cause) -> list[str]:
        """Replace the profile; returns the changed fields (none: nothing is recorded)."""
        terms = ProfileTerms.checked(**terms.model_dump())
        changed = terms.changed_from(self.terms)
        if changed:
            self._trigger(BillingProfileUpdated, cause, profile=terms, changed=changed)
        return changed

"""The tenant billing profile: its rules (each error names the field), its events (the whole
profile and the changed fields), and the set_billing_profile command on the embedded system."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain.base import Snapshot
from domain.errors import InvalidValue
from domain.profile import (
    COUNTRY_CODES,
    BillingProfile,
    BillingProfileCreated,
    BillingProfileUpdated,
    ProfileTerms,
    TaxStatus,
    billing_profile_id,
    known_timezones,
)
from tests.factories import T0, cause, embedded_system, ok

ACME_GMBH: dict[str, Any] = {
    "name": "ACME GmbH",
    "email": "billing@acme.example",
    "country": "DE",
    "tax_id": "DE123456789",
    "tax_status": "taxable",
    "timezone": "Europe/Berlin",
    "currency": "EUR",
}


def terms(**changes: Any) -> ProfileTerms:
    return ProfileTerms.checked(**{**ACME_GMBH, **changes})


def new_profile(**changes: Any) -> BillingProfile:
    return BillingProfile.create("acme", "t-1", terms(**changes), cause())


# --- the aggregate ---


def test_create_records_the_whole_profile_and_every_field_as_changed() -> None:
    profile = new_profile()
    [event] = profile.collect_events()
    assert isinstance(event, BillingProfileCreated)
    assert event.profile == terms()
    assert event.changed == list(ProfileTerms.FIELDS)
    assert event.tenant_id == "t-1" and event.app_id == "acme"
    assert profile.id == billing_profile_id("acme", "t-1")


def test_state_exposes_what_the_billing_engine_reads() -> None:
    state = new_profile().state
    assert (state.name, state.email, state.country, state.tax_id) == (
        "ACME GmbH",
        "billing@acme.example",
        "DE",
        "DE123456789",
    )
    assert state.tax_status is TaxStatus.TAXABLE
    assert (state.timezone, state.currency) == ("Europe/Berlin", "EUR")
    assert state.terms == terms()
    assert str(state.terms.zone) == "Europe/Berlin"


def test_update_records_the_new_profile_and_only_the_changed_fields() -> None:
    profile = new_profile()
    profile.collect_events()
    changed = profile.update(terms(email="ap@acme.example", currency="USD"), cause())
    [event] = profile.collect_events()
    assert changed == ["email", "currency"]
    assert isinstance(event, BillingProfileUpdated)
    assert event.changed == ["email", "currency"]
    assert event.profile == terms(email="ap@acme.example", currency="USD")
    assert profile.version == 2 and profile.state.currency == "USD"


def test_saving_an_unchanged_profile_records_nothing() -> None:
    profile = new_profile()
    profile.collect_events()
    assert profile.update(terms(), cause()) == []
    assert profile.collect_events() == [] and profile.version == 1


def test_events_replay_to_the_same_state() -> None:
    profile = new_profile()
    profile.update(terms(tax_status="exempt"), cause())
    first, second = profile.collect_events()
    rebuilt = second.mutate(first.mutate(None))
    assert rebuilt.state == profile.state and rebuilt.version == 2


def test_snapshot_round_trip() -> None:
    profile = new_profile(tax_id=None)
    restored = Snapshot.take(profile).mutate(None)
    assert isinstance(restored, BillingProfile)
    assert restored.state == profile.state and restored.state.tax_id is None


def test_ids_are_per_app_and_tenant() -> None:
    ids = {
        billing_profile_id("acme", "t-1"),
        billing_profile_id("acme", "t-2"),
        billing_profile_id("globex", "t-1"),
    }
    assert len(ids) == 3 and billing_profile_id("acme", "t-1") == billing_profile_id("acme", "t-1")


# --- the rules: every refusal names its field ---


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("country", "de"),  # upper case only
        ("country", "XX"),  # not assigned
        ("country", "DEU"),  # alpha-3
        ("country", "EL"),  # the EU's VAT prefix for Greece, not ISO 3166 (GR)
        ("email", "billing"),
        ("email", "billing@acme"),
        ("email", "bill ing@acme.example"),
        ("email", "a@@acme.example"),
        ("email", "x" * 250 + "@a.de"),
        ("timezone", "Europe/Berln"),
        ("timezone", "+01:00"),
        ("timezone", "localtime"),
        ("timezone", ""),
        ("currency", "EURO"),
        ("currency", "eur"),
        ("tax_id", "X" * 65),
        ("tax_id", "   "),
        ("tax_id", "DE12\n3"),
        ("name", ""),
        ("name", "   "),
        ("name", "n" * 201),
        ("tax_status", "vat"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        terms(**{field: value})
    assert refused.value.field == field


def test_reverse_charge_needs_a_tax_id() -> None:
    # EU VAT Directive 2006/112/EC, Article 226(4): a reverse-charge invoice shows the
    # customer's VAT identification number (https://eur-lex.europa.eu/eli/dir/2006/112/oj).
    with pytest.raises(InvalidValue) as refused:
        terms(tax_status="reverse_charge", tax_id=None)
    assert refused.value.field == "tax_id"
    assert terms(tax_status="reverse_charge").tax_status is TaxStatus.REVERSE_CHARGE


def test_the_aggregate_checks_terms_built_without_the_rules() -> None:
    unchecked = ProfileTerms.model_construct(
        **{**ACME_GMBH, "country": "ZZ", "tax_status": TaxStatus.TAXABLE}
    )
    with pytest.raises(InvalidValue) as refused:
        BillingProfile.create("acme", "t-1", unchecked, cause())
    assert refused.value.field == "country"


def test_name_and_tax_id_are_stripped() -> None:
    stripped = terms(name="  ACME GmbH ", tax_id=" DE123456789 ")
    assert (stripped.name, stripped.tax_id) == ("ACME GmbH", "DE123456789")


def test_valid_values_pass() -> None:
    for country, zone, currency in [
        ("US", "America/New_York", "USD"),
        ("JP", "Asia/Tokyo", "JPY"),
        ("GR", "Europe/Athens", "EUR"),
        ("KW", "Asia/Kuwait", "KWD"),
        ("GB", "UTC", "GBP"),
    ]:
        assert terms(country=country, timezone=zone, currency=currency).country == country


def test_the_country_list_has_the_249_assigned_codes() -> None:
    assert len(COUNTRY_CODES) == 249
    assert {"DE", "FR", "US", "GB", "JP", "SS", "XK"} & COUNTRY_CODES == {
        "DE",
        "FR",
        "US",
        "GB",
        "JP",
        "SS",
    }
    table = Path("/usr/share/zoneinfo/iso3166.tab")
    if table.exists():  # tzdata's copy of ISO 3166-1, when the machine has one
        rows = table.read_text(encoding="utf-8").splitlines()
        assert {row.split("\t")[0] for row in rows if row and not row.startswith("#")} == (
            COUNTRY_CODES
        )


def test_timezones_come_from_the_tz_database() -> None:
    zones = known_timezones()
    assert "Europe/Berlin" in zones and "America/Argentina/Buenos_Aires" in zones
    assert not {"localtime", "posixrules", "Factory"} & zones


# --- the command ---


@pytest.fixture
def system() -> Iterator[Any]:
    built = embedded_system()
    try:
        yield built
    finally:
        built.close()


def set_profile(system: Any, **changes: Any) -> dict[str, Any]:
    body = {"app_id": "acme", "tenant_id": "t-1", **ACME_GMBH, **changes}
    return dict(system.dispatch("set_billing_profile", body))


def test_the_command_creates_then_replaces(system: Any) -> None:
    first = ok(set_profile(system))
    assert first["version"] == 1 and first["country"] == "DE"
    assert first["billing_profile_id"] == str(billing_profile_id("acme", "t-1"))
    assert first["created_at"] == T0.isoformat()
    second = ok(set_profile(system, name="ACME AG"))
    assert second["version"] == 2 and second["name"] == "ACME AG"
    stored = system.aggregate(UUID(first["billing_profile_id"]))
    assert isinstance(stored, BillingProfile) and stored.state.name == "ACME AG"


def test_the_command_with_the_same_profile_records_nothing(system: Any) -> None:
    ok(set_profile(system))
    assert ok(set_profile(system))["version"] == 1
    assert system.aggregate(billing_profile_id("acme", "t-1")).version == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"country": "de"}, "country"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "nope"}, "email"),
        ({"currency": "XYZ"}, "currency"),
        ({"tax_status": "reverse_charge", "tax_id": None}, "tax_id"),
        ({"tax_status": "sometimes"}, "tax_status"),
    ],
)
def test_the_command_refuses_naming_the_field(
    system: Any, changes: dict[str, Any], field: str
) -> None:
    reply = set_profile(system, **changes)
    assert not reply["ok"] and reply["error"]["code"] == "validation_error"
    assert reply["error"]["details"][0]["field"] == field
    assert system.aggregate(billing_profile_id("acme", "t-1")) is None  # nothing written

"""HTTP routes of billing profiles and tax rates (FastAPI TestClient on the embedded system):
PUT/GET /v1/tenants/{tenant_id}/profile, PUT /v1/tax-rates/{country}, GET /v1/tax-rates."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.http.support import Api

PROFILE: dict[str, Any] = {
    "name": "ACME GmbH",
    "email": "billing@acme.example",
    "country": "DE",
    "tax_id": "DE123456789",
    "tax_status": "reverse_charge",
    "timezone": "Europe/Berlin",
    "currency": "EUR",
}


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error["details"][0]["field"] == field, error
        assert {"field", "rule", "message"} <= set(error["details"][0]), error


def put_profile(api: Api, scope: str = "write", tenant: str = "t-1", **changes: Any) -> Any:
    return api.call("PUT", f"/v1/tenants/{tenant}/profile", scope, json={**PROFILE, **changes})


def put_rate(api: Api, path_country: str = "DE", scope: str = "admin", **body: Any) -> Any:
    payload = {"rate_percent": "19.0", "behavior": "exclusive", **body}
    return api.call("PUT", f"/v1/tax-rates/{path_country}", scope, json=payload)


def countries(api: Api) -> list[str]:
    return [r["country"] for r in api.call("GET", "/v1/tax-rates", "read").json()["tax_rates"]]


# --- profiles ---


def test_put_then_get_a_profile(acme: Api) -> None:
    response = put_profile(acme)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {key: body[key] for key in PROFILE} == PROFILE
    assert body["tenant_id"] == "t-1" and body["version"] == 1
    got = acme.call("GET", "/v1/tenants/t-1/profile", "read")
    assert got.status_code == 200 and got.json() == body


def test_a_missing_profile_is_404(acme: Api) -> None:
    assert_error(acme.call("GET", "/v1/tenants/t-9/profile", "read"), 404, "not_found", None)
    error = acme.call("GET", "/v1/tenants/t-9/profile", "read").json()["error"]
    assert error["details"] == [{"field": "tenant_id"}]


def test_putting_the_same_profile_records_nothing_and_a_change_a_new_version(acme: Api) -> None:
    put_profile(acme)
    assert put_profile(acme).json()["version"] == 1
    changed = put_profile(acme, tax_status="taxable", tax_id=None)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["tax_id"] is None
    rows = acme.call("GET", "/v1/events?tenant_id=t-1", "read").json()["events"]
    kinds = [row["type"] for row in rows if row["type"].startswith("BillingProfile")]
    assert kinds == ["BillingProfileCreated", "BillingProfileUpdated"]
    assert rows[-1]["data"]["changed"] == ["tax_id", "tax_status"]
    assert rows[-1]["data"]["profile"]["tax_status"] == "taxable"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"country": "XX"}, "country"),
        ({"country": "de"}, "country"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"email": "not-an-email"}, "email"),
        ({"currency": "EURO"}, "currency"),
        ({"tax_status": "maybe"}, "tax_status"),
        ({"tax_id": None}, "tax_id"),  # reverse charge needs the customer's tax id
        ({"tax_id": "X" * 65}, "tax_id"),
        ({"app_id": "globex"}, "app_id"),  # the key decides the app
    ],
)
def test_a_bad_profile_is_422_naming_the_field(
    acme: Api, changes: dict[str, Any], field: str
) -> None:
    assert_error(put_profile(acme, **changes), 422, "validation_error", field)
    assert acme.call("GET", "/v1/tenants/t-1/profile", "read").status_code == 404


def test_a_missing_field_is_422_naming_it(acme: Api) -> None:
    body = {key: value for key, value in PROFILE.items() if key != "timezone"}
    response = acme.call("PUT", "/v1/tenants/t-1/profile", "write", json=body)
    assert_error(response, 422, "validation_error", "timezone")


def test_profiles_need_write_to_change_and_read_to_see(acme: Api) -> None:
    assert_error(put_profile(acme, scope="read"), 403, "forbidden")
    assert put_profile(acme, scope="write").status_code == 200
    assert_error(acme.client.get("/v1/tenants/t-1/profile"), 401, "unauthorized")


def test_profiles_are_per_app(acme: Api, globex: Api) -> None:
    put_profile(acme)
    assert globex.call("GET", "/v1/tenants/t-1/profile", "read").status_code == 404
    other = put_profile(globex, country="FR", timezone="Europe/Paris")
    assert other.json()["billing_profile_id"] != put_profile(acme).json()["billing_profile_id"]
    assert acme.call("GET", "/v1/tenants/t-1/profile", "read").json()["country"] == "DE"


def test_a_put_retried_with_an_idempotency_key_runs_once(acme: Api) -> None:
    headers = {"Idempotency-Key": "profile-1"}
    first = acme.call("PUT", "/v1/tenants/t-1/profile", "write", json=PROFILE, headers=headers)
    again = acme.call("PUT", "/v1/tenants/t-1/profile", "write", json=PROFILE, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()


# --- tax rates ---


def test_put_a_rate_and_list_the_rates_by_country(acme: Api) -> None:
    response = put_rate(acme, "DE", rate_percent="19")
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("country", "rate_percent", "behavior")} == {
        "country": "DE",
        "rate_percent": "19.0",
        "behavior": "exclusive",
    }
    put_rate(acme, "AT", rate_percent="20", behavior="inclusive")
    put_rate(acme, "DE", rate_percent="19.00")  # unchanged
    listed = acme.call("GET", "/v1/tax-rates", "read")
    assert listed.status_code == 200
    rates = listed.json()["tax_rates"]
    assert [(r["country"], r["rate_percent"], r["behavior"], r["version"]) for r in rates] == [
        ("AT", "20.0", "inclusive", 1),
        ("DE", "19.0", "exclusive", 1),
    ]


def test_changing_a_rate_keeps_one_entry(acme: Api) -> None:
    put_rate(acme, "DE")
    assert put_rate(acme, "DE", rate_percent="16").json()["version"] == 2
    rates = acme.call("GET", "/v1/tax-rates", "read").json()["tax_rates"]
    assert [(r["country"], r["rate_percent"]) for r in rates] == [("DE", "16.0")]


@pytest.mark.parametrize(
    ("country", "body", "field"),
    [
        ("DE", {"rate_percent": "100.5"}, "rate_percent"),
        ("DE", {"rate_percent": "-1"}, "rate_percent"),
        ("DE", {"rate_percent": "19.00001"}, "rate_percent"),
        ("DE", {"rate_percent": 19}, "rate_percent"),
        ("DE", {"behavior": "both"}, "behavior"),
        ("XX", {}, "country"),
        ("de", {}, "country"),
        ("DEU", {}, "country"),
        ("DE", {"country": "FR"}, "country"),  # the country is the path's
    ],
)
def test_a_bad_rate_is_422_naming_the_field(
    acme: Api, country: str, body: dict[str, Any], field: str
) -> None:
    assert_error(put_rate(acme, country, **body), 422, "validation_error", field)
    assert acme.call("GET", "/v1/tax-rates", "read").json()["tax_rates"] == []


def test_rates_need_admin_to_change_and_read_to_list(acme: Api) -> None:
    assert_error(put_rate(acme, scope="write"), 403, "forbidden")
    assert put_rate(acme, scope="admin").status_code == 200
    assert acme.call("GET", "/v1/tax-rates", "read").status_code == 200
    assert_error(acme.client.get("/v1/tax-rates"), 401, "unauthorized")


def test_rates_are_per_app(acme: Api, globex: Api) -> None:
    put_rate(acme, "DE")
    put_rate(globex, "FR", rate_percent="20")
    assert countries(acme) == ["DE"] and countries(globex) == ["FR"]


def test_the_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"put", "get"} <= set(paths["/v1/tenants/{tenant_id}/profile"])
    assert "put" in paths["/v1/tax-rates/{country}"] and "get" in paths["/v1/tax-rates"]

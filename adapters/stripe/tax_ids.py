"""Which Stripe tax ID type a tenant's tax id is (https://docs.stripe.com/api/tax_ids/object).

An EU VAT number is recognised by its country prefix (`DE123456789`, `EL...` for Greece, `XI`
for Northern Ireland) and is `eu_vat`; any other value takes its country's usual business tax
id type; for a country not listed there is no type, and the gateway sends none.
"""

from __future__ import annotations

import re

EU_VAT_PREFIXES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "EL",
        "ES",
        "FI",
        "FR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
        "XI",
    ]
)
EU_VAT = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}$")
BY_COUNTRY = {
    "AU": "au_abn",
    "BR": "br_cnpj",
    "CA": "ca_bn",
    "CH": "ch_vat",
    "GB": "gb_vat",
    "IN": "in_gst",
    "JP": "jp_cn",
    "MX": "mx_rfc",
    "NO": "no_vat",
    "NZ": "nz_gst",
    "SG": "sg_uen",
    "US": "us_ein",
    "ZA": "za_vat",
}


def compact(value: str) -> str:
    return re.sub(r"[\s.\-]", "", value).upper()


def tax_id_type(value: str, country: str) -> str | None:
    number = compact(value)
    if number[:2] in EU_VAT_PREFIXES and EU_VAT.match(number):
        return "eu_vat"
    return BY_COUNTRY.get(country.upper())

"""Templates and the filters they use: money in major units, times, charts as JSON specs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from domain.errors import DomainError
from domain.money import Money

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")

# No inline script and no asset from elsewhere: charts read their data from attributes.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def money(value: Mapping[str, Any] | None) -> str:
    """{"amount": minor units, "currency"} as "49.00 EUR" (Money.format); "" for none."""
    if not value:
        return ""
    return Money.model_validate(dict(value)).format()


def major(value: Mapping[str, Any] | None) -> float:
    """Minor units as a number in major units, for charts."""
    if not value:
        return 0.0
    return float(Money.model_validate(dict(value)).to_decimal())


def when(value: str | None) -> str:
    """An ISO time in UTC, shortened for a table: "2027-01-01 00:00:00"."""
    if not value:
        return ""
    text = str(value).replace("T", " ").removesuffix("Z").removesuffix("+00:00")
    return text.split(".")[0]


def chart(
    kind: str,
    labels: Sequence[Any],
    datasets: Sequence[Mapping[str, Any]],
    *,
    stacked: bool = False,
) -> dict[str, Any]:
    """A chart spec console.js turns into a Chart.js chart."""
    return {
        "type": kind,
        "labels": [str(label) for label in labels],
        "datasets": [
            {"label": str(d["label"]), "data": [_number(v) for v in d["data"]]} for d in datasets
        ],
        "stacked": stacked,
    }


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


def problem(error: Exception) -> str:
    """What a refused action says to the operator."""
    if isinstance(error, DomainError):
        return f"{error.code}: {error.message}"
    message = getattr(error, "message", None) or str(error)
    code = getattr(error, "code", None)
    return f"{code}: {message}" if code else str(message)


templates.env.filters.update(money=money, major=major, when=when)


def page(
    request: Request, name: str, context: Mapping[str, Any], status_code: int = 200
) -> Response:
    """A rendered template with the console's security headers."""
    response = templates.TemplateResponse(
        request, name, dict(context), status_code=status_code, headers=SECURITY_HEADERS
    )
    return response

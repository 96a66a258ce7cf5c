"""Prepaid credits: grant (write), list with what is left (read), void (write) (docs/credits.md).

A grant is `{"amount": Money, "priority": 0-100, "expires_at"?, "reason"}`; 0 is drawn first.
Finalizing an invoice draws the tenant's grants in its currency by priority, then earliest
expiry, then oldest; billing runs expire what is left at `expires_at`. The list comes from the
credits read model: the balance per currency and each grant with its movements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from adapters.http.auth import Reader, Writer
from adapters.http.common import body_model, fields_of, run_command, run_query
from adapters.http.errors import ERROR_RESPONSES
from commands.base import ID_PATTERN
from commands.credits.grant_credit import GrantCredit
from commands.credits.void_credit_grant import VoidCreditGrant
from domain.credit_grant import MAX_REASON

if TYPE_CHECKING:
    GrantBody = BaseModel
else:
    GrantBody = body_model(GrantCredit, "GrantCreditBody", exclude=frozenset({"tenant_id"}))


class VoidBody(BaseModel):
    """Why the grant is voided (optional)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(default="voided", min_length=1, max_length=MAX_REASON)


TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="the app's customer")]

router = APIRouter(prefix="/v1/tenants", tags=["credits"], responses=ERROR_RESPONSES)


@router.post("/{tenant_id}/credits", status_code=201, summary="Grant prepaid credits to a tenant")
def grant_credit(
    request: Request, principal: Writer, tenant_id: TenantId, body: GrantBody
) -> JSONResponse:
    fields = {**fields_of(body), "tenant_id": tenant_id}
    return run_command(request, principal, GrantCredit, fields, created=True)


@router.get(
    "/{tenant_id}/credits", summary="A tenant's credit balance and each grant with what is left"
)
def list_credits(request: Request, principal: Reader, tenant_id: TenantId) -> dict[str, Any]:
    found: dict[str, Any] = run_query(
        request, "credits", app_id=principal.app_id, tenant_id=tenant_id
    )
    return found


@router.post(
    "/{tenant_id}/credits/{grant_id}/void", summary="Void a credit grant: what is left lapses"
)
def void_credit_grant(
    request: Request,
    principal: Writer,
    tenant_id: TenantId,
    grant_id: UUID,
    body: VoidBody | None = None,
) -> JSONResponse:
    fields = {**fields_of(body), "tenant_id": tenant_id, "grant_id": str(grant_id)}
    return run_command(request, principal, VoidCreditGrant, fields)

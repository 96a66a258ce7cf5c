"""Tamper evidence over HTTP: `GET /v1/audit/verify` recomputes the caller's app's hash chain
from the stored events (ADR 0016) and answers where it first breaks, if anywhere.

Only the key's app's chain is read: other apps' events count nowhere in the answer. A break
answers 200 too (`intact: false`, `first_break`): the verification itself succeeded."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from adapters.eventstore.seal import SealStore, verify_app
from adapters.http.auth import Admin
from adapters.http.common import system_of
from adapters.http.errors import ERROR_RESPONSES

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)


@router.get("/v1/audit/verify", summary="Verify the app's hash chain over its events")
def verify(request: Request, principal: Admin) -> dict[str, Any]:
    """`{app_id, intact, checked, head_hash, sealed_through, not_yet_sealed, first_break}`;
    `first_break` is `{position, event_id, reason, detail}` with reason `edited`, `missing`,
    `reordered` or `unsealed`, or null."""
    store = SealStore(system_of(request).ledger.recorder)
    return verify_app(store, principal.app_id).as_json()

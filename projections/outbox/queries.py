"""Queries over the outbox.

- `outbox`: the app's mails, oldest first (by log position), each with where it stands:
  `skipped` (with the reason), `pending` (not sent yet), `retrying` (the SMTP server refused
  for now or could not be reached; `next_attempt_at`), `sent` (`sent_at`) or `failed` (the
  server refused for good); `tenant_id` and `status` narrow it, `limit` caps it.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.errors import InvalidValue
from projections.outbox.projector import DELIVERIES, OUTBOX
from projections.queries import QueryContext, query

STATUSES = frozenset({"skipped", "pending", "retrying", "sent", "failed"})
_STATUS = "CASE WHEN o.status = 'skipped' THEN 'skipped' ELSE COALESCE(d.status, 'pending') END"


@query("outbox")
def outbox(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    where, params = "o.app_id = :app_id", dict[str, Any](app_id=_text(app_id, "app_id"))
    if tenant_id is not None:
        where += " AND o.tenant_id = :tenant_id"
        params["tenant_id"] = _text(tenant_id, "tenant_id")
    if status is not None:
        if status not in STATUSES:
            raise InvalidValue(f"status is one of {', '.join(sorted(STATUSES))}", field="status")
        where += f" AND {_STATUS} = :status"
        params["status"] = status
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidValue("limit must be an integer from 1 to 1000", field="limit")
    rows = ctx.views.query(
        f"SELECT o.*, {_STATUS} AS state, d.attempts, d.last_error, d.next_attempt_at, "
        f"d.sent_at FROM {{{OUTBOX}}} o LEFT JOIN {{{DELIVERIES}}} d "
        f"ON d.message_id = o.message_id WHERE {where} ORDER BY o.position LIMIT {limit}",
        params,
    )
    return [_mail(row) for row in rows]


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{field} must be a non-empty text", field=field)
    return value


def _mail(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": row["message_id"],
        "tenant_id": row["tenant_id"],
        "kind": row["kind"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "position": int(row["position"]),
        "document_id": row["aggregate_id"],
        "number_text": row["number_text"],
        "recipient": row["recipient"],
        "subject": row["subject"],
        "details": orjson.loads(row["details"]),
        "status": row["state"],
        "reason": row["reason"] if row["state"] == "skipped" else row["last_error"],
        "attempts": int(row["attempts"] or 0),
        "next_attempt_at": row["next_attempt_at"] if row["state"] == "retrying" else None,
        "sent_at": row["sent_at"],
        "occurred_at": row["occurred_at"],
    }

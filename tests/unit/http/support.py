"""What the in-process HTTP tests share: an app's API client and the error-shape check."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from adapters.bootstrap import System


class Api:
    """A TestClient with one app's keys."""

    def __init__(self, client: TestClient, system: System, app_id: str) -> None:
        self.client, self.app_id = client, app_id
        self.keys = {
            scope: system.dispatch("create_api_key", {"app_id": app_id, "scope": scope})["result"][
                "api_key"
            ]
            for scope in ("read", "write", "admin")
        }

    def call(self, method: str, path: str, scope: str = "admin", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[scope]}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    if field is not None:
        assert body["error"]["details"][0]["field"] == field, body

"""A short, bounded schemathesis run over a real server's /openapi.json with a valid admin key:
every operation gets a few generated requests, valid (positive) and invalid (negative); none
may answer 5xx (TARGETS.md R6). A 501 (announced, not built yet) is not a server error.

Bounded: MAX_EXAMPLES per operation and mode, no shrinking, and a time budget after which
the remaining operations are not run (the test then fails, saying how far it got)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.conftest import Server

pytestmark = pytest.mark.postgres
WITH_STRIPE = True  # the Stripe routes answer for real (tests/stripe_server.py), not 503

MAX_EXAMPLES = 8
BUDGET_SECONDS = 50.0


class Fuzz:
    def __init__(self, server: Server) -> None:
        self.base_url = server.base_url
        self.headers = {"Authorization": f"Bearer {server.key('fuzz', 'admin')}"}
        self.failures: list[str] = []
        self.calls = 0
        self.client_errors = 0

    def runner(self, operation: Any, mode: GenerationMode) -> Callable[[], None]:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=self.base_url, headers=self.headers, timeout=30)
            self.calls += 1
            self.client_errors += 400 <= response.status_code < 500
            if response.status_code >= 500 and response.status_code != 501:
                self.failures.append(
                    f"{case.method} {case.formatted_path} ({mode.value}) -> "
                    f"{response.status_code}: {response.text[:300]}\n"
                    f"  body={getattr(case, 'body', None)!r} query={case.query!r}"
                )

        return run  # type: ignore[no-any-return]


def test_no_server_errors(server: Server) -> None:
    fuzz = Fuzz(server)
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    started = time.monotonic()
    ran = 0
    for operation in operations:
        if time.monotonic() - started > BUDGET_SECONDS:
            break
        ran += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with contextlib.suppress(Unsatisfiable):  # nothing (negative) to generate
                fuzz.runner(operation, mode)()
    assert not fuzz.failures, "\n".join(fuzz.failures[:10])
    assert ran == len(operations), f"time budget spent after {ran}/{len(operations)} operations"
    assert fuzz.calls > len(operations) and fuzz.client_errors > 0

"""R6: schemathesis over the running server's /openapi.json (valid and invalid requests for
every operation) and a hypothesis fuzz of every command of the bus on
`POST /v1/commands/{name}` (bodies of the command's own field names with any JSON value):
zero 5xx (a 501, announced and not built, is not a server error), and every 422 names the
field it refuses. The Stripe routes run against the test Stripe server, for real."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chaos.result import Result
from chaos.stack import NATS_URL, PG_URL, REDIS_URL, Stack, answers, running_stack

TITLE = "schemathesis over /openapi.json and a fuzz of every command"
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@contextlib.contextmanager
def stripe_env() -> Any:
    """The test Stripe server (tests/stripe_server.py) and the settings that use it."""
    from tests.stripe_server import stripe_server
    from tests.stripe_signing import SECRET

    with stripe_server() as base:
        yield {
            "TALLY_STRIPE_API_KEY": "sk_test_tally",
            "TALLY_STRIPE_API_BASE": base,
            "TALLY_STRIPE_WEBHOOK_SECRET": SECRET,
            "TALLY_STRIPE_POLL_SECONDS": "0.5",
        }


class Tally:
    """Counts of the calls made and the answers that break R6."""

    def __init__(self) -> None:
        self.calls = 0
        self.client_errors = 0
        self.server_errors: list[str] = []
        self.unnamed: list[str] = []

    def note(self, what: str, status: int, body: Any) -> None:
        self.calls += 1
        self.client_errors += 400 <= status < 500
        if status >= 500 and status != 501:
            self.server_errors.append(f"{what} -> {status}: {str(body)[:200]}")
        if status == 422 and not names_a_field(body):
            self.unnamed.append(f"{what} -> 422 naming no field: {str(body)[:200]}")


def names_a_field(body: Any) -> bool:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    details = error.get("details") or []
    return bool(error.get("field") or any(d.get("field") for d in details))


def run(examples: int = 10, budget: float = 150.0, command_examples: int = 25) -> Result:
    began = time.monotonic()
    result = Result("R6", TITLE)
    tally = Tally()
    nats = NATS_URL if answers(NATS_URL) else None
    redis = REDIS_URL if answers(REDIS_URL) else None
    with (
        stripe_env() as env,
        running_stack(PG_URL, nats_url=nats, redis_url=redis, extra_env=env) as stack,
    ):
        key = stack.key("chaos-r6")
        ran, total = schemathesis_run(stack, key, tally, examples, began + budget)
        commands = fuzz_commands(stack, key, tally, command_examples)
        if tally.server_errors:  # the server's own account of them, before its log goes
            result.problems.append("api log: " + error_lines(stack.log_tail("api", 10**6)))
    result.figures = {"operations": f"{ran}/{total}", "commands": commands, "calls": tally.calls}
    result.figures |= {"4xx": tally.client_errors, "5xx": len(tally.server_errors)}
    result.figures["422_naming_no_field"] = len(tally.unnamed)
    result.check(ran == total, f"time budget spent after {ran}/{total} operations")
    result.check(not tally.server_errors, "; ".join(tally.server_errors[:5]))
    result.check(not tally.unnamed, "; ".join(tally.unnamed[:5]))
    result.seconds = time.monotonic() - began
    return result


def error_lines(log: str, most: int = 40) -> str:
    """The log's lines about errors (tracebacks included), the last `most` of them."""
    lines = [line for line in log.splitlines() if "error" in line.lower() or "  " in line[:4]]
    return "\n".join(lines[-most:])


def schemathesis_run(
    stack: Stack, key: str, tally: Tally, examples: int, deadline: float
) -> tuple[int, int]:
    """Every operation, positive and negative; (operations run, operations in the schema)."""
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {key}"}
    ran = 0
    for operation in operations:
        if time.monotonic() > deadline:
            break
        ran += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with contextlib.suppress(Unsatisfiable):
                operation_runner(stack, headers, tally, operation, mode, examples)()
    return ran, len(operations)


def operation_runner(
    stack: Stack, headers: dict[str, str], tally: Tally, operation: Any, mode: Any, n: int
) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        response = case.call(base_url=stack.base_url, headers=headers, timeout=30)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        sent = f"body={getattr(case, 'body', None)!r:.200} query={case.query!r:.100}"
        what = f"{case.method} {case.formatted_path} ({mode.value}) {sent}"
        tally.note(what, response.status_code, body)

    return call


def command_fields() -> dict[str, list[str]]:
    """Every command of the bus and its field names (from an embedded system)."""
    from adapters.bootstrap import bootstrap
    from adapters.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'fields.db'}"
        system = bootstrap(
            Settings(database_url=url, plugins_discover=False), deliver_in_process=False
        )
        try:
            bus = system.bus
            return {name: sorted(bus.command_type(name).model_fields) for name in bus.command_names}
        finally:
            system.close()


def fuzz_commands(stack: Stack, key: str, tally: Tally, examples: int) -> int:
    """Random bodies for every command; the number of commands fuzzed."""
    fields = command_fields()
    with stack.client(key) as client:
        for name, names in fields.items():
            fuzz_one(client, tally, name, names, examples)()
    return len(fields)


def fuzz_one(
    client: httpx.Client, tally: Tally, name: str, names: list[str], n: int
) -> Callable[[], None]:
    keys = st.sampled_from([*names, "unknown_field"])

    @given(body=st.dictionaries(keys, JSON, max_size=len(names) + 1))
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def call(body: dict[str, Any]) -> None:
        response = client.post(f"/v1/commands/{name}", json=body)
        try:
            reply = response.json()
        except ValueError:
            reply = response.text
        tally.note(f"command {name} {body!r:.120}", response.status_code, reply)

    return call

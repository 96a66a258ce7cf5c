"""The chaos suite's scenario runners (chaos/, `tally chaos stack`), each at a tiny size on
the machine's services: a real `tally serve` and its workers, private NATS / PostgreSQL
where one is stopped. The full sizes run only in `make chaos`."""

from __future__ import annotations

import pytest

from chaos import (
    r1_quota,
    r2_triple,
    r3_kills,
    r4_nats,
    r5_postgres,
    r6_fuzz,
    r7_isolation,
    r8_stateful,
    r10_scale_out,
)
from chaos.result import Result

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.timeout(600)]


def passed(result: Result) -> Result:
    assert result.passed, "\n".join(result.problems)
    return result


def test_r1_two_clients_fifty_attempts() -> None:
    figures = passed(r1_quota.run(clients=2, attempts=50, limit=20)).figures
    assert (figures["accepted"], figures["refused"], figures["used"]) == (20, 30, 20)


def test_r2_each_delivery_three_times() -> None:
    figures = passed(r2_triple.run(events=10, commands=10, clients=4)).figures
    assert (figures["counted"], figures["duplicates"]) == (20, 40)


def test_r3_two_kills() -> None:
    figures = passed(r3_kills.run(kills=2, gap=(1.0, 1.5))).figures
    assert figures["kills"] == 2 and figures["events"] > 0
    assert figures["missing"] == 0 and figures["messages"] >= figures["events"]


def test_r4_a_short_nats_outage() -> None:
    figures = passed(r4_nats.run(outage=3.0, before=1.0, after=1.0)).figures
    assert figures["committed_in_outage"] > 0 and figures["missing"] == 0


def test_r5_a_short_postgres_outage() -> None:
    figures = passed(r5_postgres.run(outage=3.0, before=1.0, after=1.0)).figures
    assert figures["in_outage"] > 0 and figures["partly_recorded"] == 0


def test_r6_one_example_each() -> None:
    figures = passed(r6_fuzz.run(examples=1, command_examples=1)).figures
    assert figures["5xx"] == 0 and figures["commands"] > 30


def test_r7_keys_apps_and_webhooks() -> None:
    figures = passed(r7_isolation.run()).figures
    assert figures["operations"] > 30 and figures["webhooks_stored_when_refused"] == 0


def test_r8_a_few_examples() -> None:
    figures = passed(r8_stateful.run(billing=2, quota=5, steps=5)).figures
    assert figures["billing_examples"] >= 2 and figures["quota_examples"] >= 5


def test_r10_a_node_and_the_active_relay_killed() -> None:
    figures = passed(r10_scale_out.run(before=4.0, after=4.0)).figures
    assert figures["standby_took_over"] is True and figures["missing"] == 0

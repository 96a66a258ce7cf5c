"""The stored JSON of an event (adapters/eventstore/mapper.py): `encode_event_json` writes in
one pass exactly what `encode_event_state` gives as a dict, for every kind of event a
simulated run of the whole system records, and it loads back as the same event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from adapters.eventstore import mapper
from adapters.simulation.scenario import simulate

UNSTAMPED = (mapper.RECORDED_KEY,)  # the clock's time of the write differs between the two


def _without_time(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in UNSTAMPED}


def test_every_event_of_a_simulated_run_encodes_as_its_dict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, int] = {}
    encode = mapper.encode_event_json

    def checked(event: Any) -> bytes:
        data = encode(event)
        state = orjson.loads(data)
        assert _without_time(state) == _without_time(mapper.encode_event_state(event))
        assert mapper.RECORDED_KEY in state
        decoded = mapper.decode_event(
            getattr(type(event), "NAME", ""), event.originator_id, event.originator_version, state
        )
        assert decoded == event
        seen[type(event).__name__] = seen.get(type(event).__name__, 0) + 1
        return data

    monkeypatch.setattr(mapper, "encode_event_json", checked)
    report = simulate(22, steps=300, months=8)
    assert report.passed, [c.line() for c in report.checks if not c.passed]
    assert len(seen) >= 30, sorted(seen)  # many kinds of events, snapshots among them
    assert "InvoiceFinalized" in seen and "SubscriptionRenewed" in seen

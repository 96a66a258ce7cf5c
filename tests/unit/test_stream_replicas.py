"""TALLY_NATS_STREAM_REPLICAS: the copies of the event stream on a JetStream cluster, given to
the stream when it is created (1 by default; R10 runs 3 on a 3-node cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.nats.stream import StreamSettings
from adapters.settings import Settings


def test_the_stream_is_created_with_the_replicas_set() -> None:
    assert StreamSettings.from_settings(Settings()).config().num_replicas == 1
    three = Settings(nats_stream_replicas=3)
    assert StreamSettings.from_settings(three).config().num_replicas == 3


def test_the_env_variable_sets_them_and_nonsense_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TALLY_NATS_STREAM_REPLICAS", "3")
    assert Settings().nats_stream_replicas == 3
    for bad in ("0", "6"):
        monkeypatch.setenv("TALLY_NATS_STREAM_REPLICAS", bad)
        with pytest.raises(ValidationError, match="nats_stream_replicas"):
            Settings()

"""adapters/billing/collector.py: a billing run holds automatic garbage collection off and
gives it back as it found it, however many runs hold it at once."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from adapters.billing.collector import young_collections_only


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_collection_is_off_inside_and_back_on_after() -> None:
    gc.enable()
    with young_collections_only():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_last_of_nested_holders_gives_it_back() -> None:
    gc.enable()
    first, second = young_collections_only(), young_collections_only()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second run still holds it
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_collection_off_before_stays_off_and_an_error_still_releases() -> None:
    gc.disable()
    with young_collections_only():
        pass
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError), young_collections_only():
        raise RuntimeError("the run failed")
    assert gc.isenabled()

"""SharedCommits: requests that arrive while a group runs are run together next, each
answered; a group's error reaches its own requests only, unless it is one the requests waiting
meanwhile share (the store is down); max_size bounds a group."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from commands.usage.shared_commits import SharedCommits


def _wait_for(condition: object) -> None:
    deadline = time.monotonic() + 5
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.001)


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def run(self, items: Sequence[str]) -> None:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.release.wait(5)  # the first group is slow: the others queue up meanwhile
        if self.fail_on in items:
            raise RuntimeError(f"failed with {self.fail_on}")


def submit_all(shared: SharedCommits[str], recorder: Recorder, names: list[str]) -> dict[str, str]:
    outcomes: dict[str, str] = {}

    def send(name: str) -> None:
        try:
            shared.submit(name)
            outcomes[name] = "ok"
        except RuntimeError as error:
            outcomes[name] = str(error)

    first = threading.Thread(target=send, args=(names[0],))
    first.start()
    _wait_for(lambda: recorder.groups)
    others = [threading.Thread(target=send, args=(name,)) for name in names[1:]]
    for thread in others:
        thread.start()
    _wait_for(lambda: len(shared._queue) == len(names) - 1)
    recorder.release.set()
    for thread in [first, *others]:
        thread.join(5)
    return outcomes


def test_requests_arriving_during_a_group_share_the_next_one() -> None:
    recorder = Recorder()
    shared: SharedCommits[str] = SharedCommits(recorder.run)
    outcomes = submit_all(shared, recorder, ["a", "b", "c", "d", "e"])
    assert outcomes == dict.fromkeys("abcde", "ok")
    assert recorder.groups[0] == ["a"]
    assert len(recorder.groups) == 2 and sorted(recorder.groups[1]) == ["b", "c", "d", "e"]


def test_an_error_reaches_the_requests_of_its_group_only() -> None:
    recorder = Recorder(fail_on="c")
    shared: SharedCommits[str] = SharedCommits(recorder.run)
    outcomes = submit_all(shared, recorder, ["a", "b", "c", "d"])
    assert outcomes["a"] == "ok"
    assert {outcomes[n] for n in "bcd"} == {"failed with c"}
    shared.submit("z")  # the queue works on after a failed group
    assert recorder.groups[-1] == ["z"]


@pytest.mark.parametrize(("max_size", "groups"), [(2, 3), (10, 2)])
def test_max_size_bounds_a_group(max_size: int, groups: int) -> None:
    recorder = Recorder()
    shared: SharedCommits[str] = SharedCommits(recorder.run, max_size=max_size)
    submit_all(shared, recorder, ["a", "b", "c", "d", "e"])
    assert len(recorder.groups) == groups
    assert all(len(group) <= max_size for group in recorder.groups)
    assert sorted(name for group in recorder.groups for name in group) == list("abcde")


def test_a_shared_failure_answers_the_requests_waiting_meanwhile() -> None:
    recorder = Recorder(fail_on="a")  # the first group fails (the store is down)
    shared: SharedCommits[str] = SharedCommits(
        recorder.run, shares_failure=lambda error: isinstance(error, RuntimeError)
    )
    outcomes = submit_all(shared, recorder, ["a", "b", "c", "d"])
    assert outcomes == dict.fromkeys("abcd", "failed with a")
    assert recorder.groups == [["a"]]  # the waiting ones did not run a group of their own
    shared.submit("z")  # the queue works on after a shared failure
    assert recorder.groups[-1] == ["z"]
